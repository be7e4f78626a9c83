"""Nothing a user types is silently ignored: flags, Beam options, manifest columns, job YAML
keys. Each mistake stops with the name that was wrong and the nearest right one."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.cli import main
from jaxgen.cli.progress import EXIT_NONE_GENERATED, EXIT_OK
from jaxgen.dataset.config import JobConfig, load_job_config
from jaxgen.requests import ConfigError
from tests.fake_generator import FakeSpec


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"prompt": "a red circle"}) + "\n")
    return path


def _stops(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("typo, meant", [(["--step", "10"], "--steps"),
                                         (["--fromat", "parquet"], "--format"),
                                         (["--runer", "DataflowRunner"], "--runner")])
def test_a_mistyped_flag_stops_before_any_work(manifest, tmp_path, capsys, typo, meant):
    out = tmp_path / "out"
    err = _stops(["generate", "--manifest", str(manifest), "--out", str(out), *typo], capsys)
    assert f"unrecognised argument {typo[0]}; did you mean {meant}?" in err
    assert not out.exists()


def test_a_bad_choice_stops(manifest, tmp_path, capsys):
    err = _stops(["generate", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                  "--sampler", "dpm++"], capsys)
    assert "invalid choice: 'dpm++'" in err


@pytest.mark.parametrize("channel", [["--", "--direct_runing_mode=in_memory"],
                                     ["--beam-option", "direct_runing_mode=in_memory"]])
def test_a_mistyped_beam_option_stops_with_the_nearest_beam_option(manifest, tmp_path, capsys,
                                                                   channel):
    err = _stops(["generate", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                  "--dry-run", *channel], capsys)
    assert "--direct_runing_mode is not a Beam pipeline option; did you mean " \
           "--direct_running_mode?" in err


def test_a_runner_profile_with_an_unknown_beam_option_stops(manifest, tmp_path, capsys):
    profile = tmp_path / "mine.yaml"
    profile.write_text("runner: FnApiRunner\ndirect_num_worker: 2\n")
    err = _stops(["generate", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                  "--runner-profile", str(profile), "--dry-run"], capsys)
    assert "--direct_num_worker is not a Beam pipeline option; did you mean " \
           "--direct_num_workers?" in err


@pytest.mark.parametrize("channel", [["--runner", "FnApiRunner"],
                                     ["--beam-option", "direct_running_mode=in_memory"],
                                     ["--", "--direct_num_workers=1"]])
def test_beam_options_pass_through_their_explicit_channels(manifest, tmp_path, capsys, channel):
    assert main(["generate", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                 "--dry-run", *channel]) == 0
    assert "rows read 1 = valid 1 + rejected 0" in capsys.readouterr().out


def test_other_commands_take_no_beam_options(capsys):
    assert "only `jaxgen generate` takes Beam options" in _stops(
        ["info", "--", "--runner=FnApiRunner"], capsys)


def _dry_run(manifest: Path, out: Path, *flags: str) -> list[dict]:
    """The rejects of a dry run over a one-row manifest (exit 4 when its row is rejected)."""
    code = main(["generate", "--manifest", str(manifest), "--out", str(out), "--dry-run",
                 *flags])
    rejects = [json.loads(line) for f in sorted((out / "_rejects").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert code == (EXIT_NONE_GENERATED if rejects else EXIT_OK)
    return rejects


def test_a_misspelt_column_rejects_the_row_naming_the_nearest_field(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"prompt": "a red circle", "negative_promt": "blue"}) + "\n")
    (reject,) = _dry_run(manifest, tmp_path / "out")
    assert reject["field"] == "negative_promt"
    assert "is not a known field; did you mean negative_prompt?" in reject["reason"]
    assert "--metadata-columns negative_promt" in reject["reason"]


def test_an_unknown_column_is_metadata_only_when_the_user_says_so(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,label\na red circle,7\n")
    assert _dry_run(manifest, tmp_path / "strict")[0]["field"] == "label"
    assert _dry_run(manifest, tmp_path / "named", "--metadata-columns", "label") == []
    assert _dry_run(manifest, tmp_path / "policy", "--unknown-columns", "metadata") == []


def test_diffusers_column_names_are_read_as_jaxgen_fields(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"prompt": "a red circle", "seed": 1,
                                    "num_inference_steps": 3, "guidance_scale": 1.5,
                                    "num_images_per_prompt": 2}) + "\n")
    config = JobConfig(manifest=str(manifest), output=str(tmp_path / "o"),
                       output_format="parquet", defaults={"height": 16, "width": 16})
    summary = run_pipeline(config, FakeSpec())
    assert summary["counts"]["rows_rejected"] == 0
    rows = pq.read_table(tmp_path / "o" / "00000.parquet").to_pylist()
    assert [(r["steps"], r["guidance"], r["num_images"], r["metadata"]) for r in rows] == \
        [(3, 1.5, 2, "{}")] * 2


def test_a_field_given_under_both_names_is_rejected(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"prompt": "p", "steps": 3, "num_inference_steps": 4}) + "\n")
    (reject,) = _dry_run(manifest, tmp_path / "out")
    assert reject["field"] == "steps" and "given twice" in reject["reason"]


@pytest.mark.parametrize("yaml_text, message", [
    ("shard_sise: 5\n", "job setting 'shard_sise': unknown; did you mean shard_size?"),
    ("defaults:\n  step: 5\n", "defaults.step: not a defaultable field; did you mean steps?"),
])
def test_an_unknown_job_yaml_key_names_the_nearest_one(tmp_path, yaml_text, message):
    job = tmp_path / "job.yaml"
    job.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        load_job_config(str(job), {"manifest": "m.jsonl", "output": "o"})


def test_an_unknown_job_yaml_key_stops_the_command(manifest, tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text("defaults:\n  guidence: 3\n")
    assert main(["generate", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                 "--job-config", str(job), "--dry-run"]) == 2
    assert "did you mean guidance?" in capsys.readouterr().err


def test_job_yaml_defaults_take_diffusers_names(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("defaults:\n  num_inference_steps: 7\n  guidance_scale: 3.0\n")
    config = load_job_config(str(job), {"manifest": "m.jsonl", "output": "o"})
    assert (config.defaults["steps"], config.defaults["guidance"]) == (7, 3.0)
