"""Runner profiles ship inside the package and are found by name from any directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jaxgen.beam.profiles import profile_flags, profile_names
from jaxgen.cli import main
from jaxgen.requests import ConfigError


def test_profiles_are_found_by_name_from_another_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert profile_names() == ["dask", "dataflow_gpu", "dataflow_tpu", "flink", "local", "spark"]
    assert "--runner=FnApiRunner" in profile_flags("local")


def test_cli_dry_run_with_a_profile_by_name_from_another_directory(tmp_path: Path, monkeypatch,
                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    Path("m.jsonl").write_text(json.dumps({"prompt": "a red circle"}) + "\n")
    assert main(["generate", "--manifest", "m.jsonl", "--out", "out", "--runner-profile",
                 "local", "--dry-run"]) == 0
    assert "rows read 1 = valid 1 + rejected 0" in capsys.readouterr().out


def test_a_profile_given_as_a_path_is_read_from_there(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("runner: FnApiRunner\nexperiments: [a, b]\nsave_main_session: true\n")
    assert profile_flags(str(path)) == ["--runner=FnApiRunner", "--experiments=a",
                                        "--experiments=b", "--save_main_session"]


def test_an_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="runner profile 'nope': no such file; known "
                       "profiles: dask, dataflow_gpu, dataflow_tpu, flink, local, spark"):
        profile_flags("nope")


def test_the_dask_profile_names_beams_dask_options():
    assert profile_flags("dask") == ["--runner=DaskRunner",
                                     "--dask_client_address=tcp://127.0.0.1:8786",
                                     "--dask_npartitions=8"]


def test_dask_runner_means_jaxgens_dask_runner():
    from apache_beam.options.pipeline_options import StandardOptions

    from jaxgen.beam.pipeline import pipeline_options

    options = pipeline_options(["--runner=DaskRunner"]).view_as(StandardOptions)
    assert options.runner == "jaxgen.beam.dask_runner.DaskRunner"
