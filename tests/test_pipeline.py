"""The Beam pipeline: runner-independent bytes, resume, rerun, dry run, profiles, RunInference."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.beam.profiles import profile_flags, profile_names, read_profile
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.resume import JobMismatch
from pipelines.generate_dataset import run
from tests.fake_generator import FakeSpec

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 23  # shard_size 5: 5 shards, the last one short
BAD_LINES = (4, 17)  # 1-based lines that are rejected


def write_manifest(path: Path) -> Path:
    lines = []
    for i in range(N_ROWS):
        row = {"prompt": f"shape {i}", "id": f"id-{i}", "num_images": 1 + (i % 3 == 0)}
        if i + 1 in BAD_LINES:
            row["height"] = 12  # not a multiple of 8
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One manifest for all runs: its path is part of the output (the audit log's source).
    return write_manifest(tmp_path_factory.mktemp("manifest") / "m.jsonl")


def job(manifest: Path, output: Path, **kw: object) -> JobConfig:
    return JobConfig(
        manifest=str(manifest), output=str(output), shard_size=5, job_seed=3,
        defaults={"height": 16, "width": 16, "steps": 2}, **kw,
    )


def shard_digests(out: Path) -> dict[str, str]:
    """sha256 of every file that must be byte-identical (stats/summary hold timestamps)."""
    files = [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".json")]
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def all_keys(out: Path) -> list[str]:
    keys = []
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as t:
            keys += [m.name.split(".")[0] for m in t if m.name.endswith(".json")]
    return keys


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, manifest: Path) -> tuple[Path, dict]:
    """An uninterrupted in-memory run: what every other run must reproduce byte for byte."""
    cfg = job(manifest, tmp_path_factory.mktemp("reference") / "out")
    return Path(cfg.output), run_pipeline(cfg, FakeSpec())


def test_reference_run_accounts_for_every_row(reference: tuple[Path, dict]) -> None:
    out, summary = reference
    c = summary["counts"]
    assert (c["rows_read"], c["rows_generated"], c["rows_rejected"]) == (N_ROWS, 21, 2)
    doubles = sum(1 for i in range(N_ROWS) if i % 3 == 0 and i + 1 not in BAD_LINES)
    assert c["images"] == 21 + doubles
    assert c["shards"] == 5 and summary["model"] == {"name": "fake-model", "hash": "0123abcd"}
    assert summary["devices"] == [{"device_count": 1, "device_kind": "fake-cpu"}]
    assert summary["metrics"]["images_generated"] == c["images"]
    keys = all_keys(out)
    assert len(keys) == len(set(keys)) == c["images"]
    assert json.loads((out / "_dataset.json").read_text())["counts"] == c
    assert not (out / "_tmp").exists()


def test_multi_processing_gives_byte_identical_shards(
    reference: tuple[Path, dict], manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Worker processes are fresh interpreters: they must find jaxgen and tests.*.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cfg = job(manifest, tmp_path / "mp")
    options = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
               "--direct_num_workers=2"]
    summary = run_pipeline(cfg, FakeSpec(), options)
    assert summary["counts"] == reference[1]["counts"]
    expected = shard_digests(reference[0])
    assert len(expected) == 5 * 2 + 2  # tar + parquet per shard, two rejects files
    assert shard_digests(Path(cfg.output)) == expected


def test_crash_then_rerun_finishes_with_identical_bytes(
    reference: tuple[Path, dict], manifest: Path, tmp_path: Path
) -> None:
    cfg = job(manifest, tmp_path / "crash")
    with pytest.raises(Exception, match="simulated crash"):
        run_pipeline(cfg, FakeSpec(fail_after_calls=2))
    out = Path(cfg.output)
    assert len(list(out.glob("*_stats.json"))) == 2 and not (out / "_dataset.json").exists()
    summary = run_pipeline(cfg, FakeSpec())
    assert summary["counts"]["shards_written"] == 3 and summary["counts"]["shards_skipped"] == 2
    assert summary["counts"]["rows_read"] == N_ROWS
    keys = all_keys(out)
    assert len(keys) == len(set(keys)) == reference[1]["counts"]["images"]
    assert shard_digests(out) == shard_digests(reference[0])
    assert not (out / "_tmp").exists()  # the crashed attempt's temp files are gone


def test_deleted_stats_regenerates_that_shard_only_and_finished_job_does_nothing(
    reference: tuple[Path, dict], manifest: Path, tmp_path: Path
) -> None:
    cfg = job(manifest, tmp_path / "resume")
    run_pipeline(cfg, FakeSpec())
    out = Path(cfg.output)
    (out / "00002_stats.json").unlink()
    (out / "00002.tar").write_bytes(b"half a tar")  # what a crash mid-write could leave
    (out / "00004.parquet").unlink()  # stats kept, a listed file gone: not complete either
    builds = tmp_path / "builds"
    builds.mkdir()
    summary = run_pipeline(cfg, FakeSpec(builds_dir=str(builds)))
    assert summary["metrics"]["shards_written"] == 2
    assert summary["metrics"]["images_generated"] == 6 + 4  # row 12 and row 21 make two
    assert shard_digests(out) == shard_digests(reference[0])
    # A finished job: nothing generated, the generator not even built.
    builds_before = len(list(builds.iterdir()))
    summary = run_pipeline(cfg, FakeSpec(builds_dir=str(builds)))
    assert summary["metrics"].get("images_generated", 0) == 0
    assert summary["metrics"].get("shards_written", 0) == 0
    assert summary["counts"]["shards_skipped"] == 5
    assert len(list(builds.iterdir())) == builds_before


def test_rerun_with_other_settings_is_refused(manifest: Path, tmp_path: Path) -> None:
    cfg = job(manifest, tmp_path / "out")
    run_pipeline(cfg, FakeSpec())
    other = JobConfig(**{**cfg.to_dict(), "shard_size": 7})
    with pytest.raises(JobMismatch, match="shard_size 7"):
        run_pipeline(other, FakeSpec())


def test_dry_run_writes_no_shards_but_reports_the_plan(manifest: Path, tmp_path: Path) -> None:
    cfg = job(manifest, tmp_path / "dry", dry_run=True)
    report = run_pipeline(cfg)
    out = Path(cfg.output)
    assert not list(out.glob("*.tar")) and not list(out.glob("*_stats.json"))
    c = report["counts"]
    assert (c["rows_read"], c["rows_valid"], c["rows_rejected"]) == (N_ROWS, 21, 2)
    assert c["rejects_by_field"] == {"height": 2}
    assert (c["shards"], c["shards_complete"], c["shards_to_generate"]) == (5, 0, 5)
    assert report["shards_to_generate"] == ["00000", "00001", "00002", "00003", "00004"]
    assert json.loads((out / "_plan.json").read_text())["counts"] == c
    assert sorted(p.name for p in (out / "_rejects").iterdir()) == ["00000.jsonl", "00003.jsonl"]


def test_dry_run_after_a_partial_run_counts_complete_shards(manifest: Path, tmp_path: Path) -> None:
    cfg = job(manifest, tmp_path / "partial")
    with pytest.raises(Exception, match="simulated crash"):
        run_pipeline(cfg, FakeSpec(fail_after_calls=3))
    report = run_pipeline(JobConfig(**{**cfg.to_dict(), "dry_run": True}))
    assert (report["counts"]["shards_complete"], report["counts"]["shards_to_generate"]) == (3, 2)


def test_cli_runs_a_dry_run_and_a_job(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl")
    common = ["--manifest", str(manifest), "--shard_size", "5", "--height", "16",
              "--width", "16", "--steps", "2", "--runner_profile", "local"]
    report = run([*common, "--output", str(tmp_path / "dry"), "--dry-run"])
    assert report["counts"]["rows_valid"] == 21
    summary = run([*common, "--output", str(tmp_path / "out"), "--generator",
                   "tests.fake_generator:FakeSpec", "--generator_args", '{"model_name": "cli"}'])
    assert summary["model"]["name"] == "cli" and summary["counts"]["rows_read"] == N_ROWS


def test_runner_profiles_are_valid_beam_options() -> None:
    profiles = profile_names()
    assert profiles == ["dask", "dataflow_gpu", "dataflow_tpu", "flink", "local", "spark"]
    # Beam's DaskOptions keeps its flags under other names (address, npartitions).
    for name in [p for p in profiles if p != "dask"]:
        known = PipelineOptions(profile_flags(name)).get_all_options()
        values = read_profile(name)
        unknown = set(values) - set(known)
        assert not unknown, (name, unknown)
    gpu = PipelineOptions(profile_flags("dataflow_gpu")).get_all_options()
    assert "no_use_multiple_sdk_containers" in gpu["experiments"]
    assert "worker_accelerator" in gpu["dataflow_service_options"][0]
    flink = PipelineOptions(profile_flags("flink")).get_all_options()
    assert int(flink["sdk_worker_parallelism"]) == 1 and flink["environment_type"] == "EXTERNAL"
    dask = PipelineOptions(profile_flags("dask")).get_all_options()
    assert dask["runner"] == "DaskRunner" and dask["npartitions"] == 8
    assert dask["address"] == "tcp://127.0.0.1:8786"


def test_run_inference_model_handler_yields_every_image() -> None:
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.util import assert_that, equal_to

    from jaxgen.beam import GenerationModelHandler
    from jaxgen.requests import GenerationRequest

    requests = [GenerationRequest("a", seed=1, height=16, width=8, num_images=2),
                GenerationRequest("b", seed=2, height=8, width=8)]
    with beam.Pipeline(runner="FnApiRunner") as p:
        shapes = (
            p
            | beam.Create(requests)
            | RunInference(GenerationModelHandler(FakeSpec(), max_batch_size=4))
            | beam.Map(lambda g: (g.request.prompt, g.index, g.image.shape))
        )
        assert_that(shapes, equal_to([("a", 0, (16, 8, 3)), ("a", 1, (16, 8, 3)),
                                      ("b", 0, (8, 8, 3))]))
