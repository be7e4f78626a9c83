"""Faults in a finished or running output: resume trusts hashes, the job record, the lock,
ownership of the directory, links, and manifests read to their verified end."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zstandard

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset import resume
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.lock import OutputLock, OutputLocked, lock_path
from jaxgen.dataset.manifest import ManifestError, iter_rows, match_manifest
from jaxgen.dataset.output_dir import OutputNotOurs, check_output_is_ours, remove_job_files
from jaxgen.dataset.resume import JobMismatch
from jaxgen.dataset.safe_io import UnsafeOutputPath, create_new, write_file
from jaxgen.engine.spec import directory_sha256
from tests.fake_generator import FakeSpec
from tests.other_run import lock_held_elsewhere

ROWS = 6  # shard_size 2: shards 00000, 00001, 00002


def _manifest(path: Path, word: str = "shape") -> Path:
    path.write_text("".join(json.dumps({"prompt": f"{word} {i}"}) + "\n" for i in range(ROWS)))
    return path


def _job(manifest: Path, output: Path, fmt: str = "webdataset") -> JobConfig:
    return JobConfig(manifest=str(manifest), output=str(output), shard_size=2,
                     output_format=fmt, defaults={"height": 16, "width": 16, "steps": 2})


def _bytes(out: Path) -> dict[str, bytes]:
    """Every file that must be byte-identical (stats and summary hold timestamps)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.endswith(".json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, JobConfig]:
    """One finished job per format that the faults below damage (in copies)."""
    root = tmp_path_factory.mktemp("finished")
    manifest = _manifest(root / "m.jsonl")
    jobs = {fmt: _job(manifest, root / fmt, fmt) for fmt in ("webdataset", "imagefolder")}
    for cfg in jobs.values():
        run_pipeline(cfg, FakeSpec())
    return jobs


def _copy(cfg: JobConfig, dest: Path) -> JobConfig:
    shutil.copytree(cfg.output, dest, symlinks=True)
    return JobConfig(**{**cfg.to_dict(), "output": str(dest)})


def test_flipped_byte_in_a_finished_shard_is_regenerated_and_reported(finished, tmp_path):
    cfg = _copy(finished["webdataset"], tmp_path / "out")
    out = Path(cfg.output)
    data = bytearray((out / "00001.tar").read_bytes())
    data[600] ^= 0x01  # same size: a check of sizes would call it complete
    (out / "00001.tar").write_bytes(bytes(data))
    summary = run_pipeline(cfg, FakeSpec())
    repaired = summary["this_run"]["repaired_shards"]
    assert repaired.keys() == {"00001"} and "00001.tar" in repaired["00001"]
    assert summary["counts"]["shards_repaired"] == 1
    assert summary["metrics"]["shards_written"] == 1
    assert _bytes(out) == _bytes(Path(finished["webdataset"].output))


def test_summary_records_each_manifest_files_sha256_and_rows(finished):
    cfg = finished["webdataset"]
    summary = json.loads((Path(cfg.output) / "_dataset.json").read_text())
    data = Path(cfg.manifest).read_bytes()
    assert summary["manifest"]["files"] == [{
        "path": cfg.manifest, "rows": ROWS, "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest()}]


@pytest.mark.parametrize("damage", ["deleted", "replaced", "added"])
def test_a_damaged_imagefolder_folder_makes_its_shard_incomplete(finished, tmp_path, damage):
    cfg = _copy(finished["imagefolder"], tmp_path / "out")
    folder = Path(cfg.output) / "00002"
    image = sorted(folder.iterdir())[0]
    if damage == "deleted":
        image.unlink()
    elif damage == "replaced":
        image.write_bytes(sorted(folder.iterdir())[1].read_bytes())
    else:
        shutil.copy(image, folder / "extra.png")
    damaged = resume.verify_shards(cfg)
    assert damaged.keys() == {"00002"} and str(folder) in damaged["00002"]
    assert not (Path(cfg.output) / "00002_stats.json").exists()  # generated again next


def test_an_empty_stats_file_is_named_and_its_shard_regenerated(finished, tmp_path):
    cfg = _copy(finished["webdataset"], tmp_path / "out")
    stats = Path(cfg.output) / "00000_stats.json"
    stats.write_bytes(b"")  # what a power cut before fsync could leave
    damaged = resume.verify_shards(cfg)
    assert damaged.keys() == {"00000"}
    assert str(stats) in damaged["00000"] and "unreadable" in damaged["00000"]


@pytest.mark.parametrize(("spec", "named"), [
    (FakeSpec(model_hash="another-model"), "model model_sha256 'another-model'"),
    (FakeSpec(dtype="bfloat16"), "model dtype 'bfloat16'"),
])
def test_resume_with_another_model_or_dtype_stops_naming_it(finished, tmp_path, spec, named):
    cfg = _copy(finished["webdataset"], tmp_path / "out")
    with pytest.raises(JobMismatch, match=named) as err:
        run_pipeline(cfg, spec)
    assert "--restart" in str(err.value) and "\n" not in str(err.value)


def test_resume_with_a_same_size_edited_manifest_stops(tmp_path):
    cfg = _job(_manifest(tmp_path / "m.jsonl"), tmp_path / "out")
    run_pipeline(cfg, FakeSpec())
    size = Path(cfg.manifest).stat().st_size
    _manifest(Path(cfg.manifest), "shapf")  # same size, other prompts
    assert Path(cfg.manifest).stat().st_size == size
    with pytest.raises(JobMismatch, match=f"manifest file {cfg.manifest}: its content changed"):
        run_pipeline(cfg, FakeSpec())


def test_an_empty_job_file_with_shards_is_named(finished, tmp_path):
    cfg = _copy(finished["webdataset"], tmp_path / "out")
    (Path(cfg.output) / "_job.json").write_bytes(b"")
    with pytest.raises(JobMismatch, match=r"_job.json: unreadable .*--restart"):
        run_pipeline(cfg, FakeSpec())


def test_restart_removes_what_jaxgen_wrote_and_nothing_else(finished, tmp_path):
    cfg = _copy(finished["imagefolder"], tmp_path / "out")
    out = Path(cfg.output)
    (out / "notes.txt").write_text("mine")
    (out / "notes.tmp").write_text("mine")
    (out / "_job.json.0123456789ab.tmp").write_text("{")  # a crashed write of jaxgen's
    (out / "1234").mkdir()
    (out / "1234" / "keep.txt").write_text("mine too")
    remove_job_files(cfg.output)
    assert sorted(p.name for p in out.iterdir()) == ["1234", "notes.tmp", "notes.txt"]


def test_a_second_run_on_a_held_output_stops_naming_the_holder(finished, tmp_path):
    cfg = _copy(finished["webdataset"], tmp_path / "out")
    with lock_held_elsewhere(cfg.output):
        with pytest.raises(OutputLocked, match=f"host {socket.gethostname()}, pid {os.getpid()}"):
            run_pipeline(cfg, FakeSpec())
        with OutputLock(cfg.output, host_index=1):  # other host indexes share the output
            pass
    assert not Path(lock_path(cfg.output, 0)).exists()


def test_the_holder_may_take_the_lock_again_and_the_file_goes_with_the_last_release(tmp_path):
    path = Path(lock_path(str(tmp_path), 0))
    with OutputLock(str(tmp_path)):
        with OutputLock(str(tmp_path / ".." / tmp_path.name)):  # the same output, spelt apart
            assert path.exists()
        assert path.exists()
        errors = []

        def other_thread():
            try:
                OutputLock(str(tmp_path)).acquire()
            except OutputLocked as e:
                errors.append(e)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1  # another thread of the same process is another run
    assert not path.exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = Path(lock_path(str(tmp_path), 0))
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                                "started": "2026-01-01T00:00:00+00:00"}))
    with OutputLock(str(tmp_path)) as lock:
        assert json.loads(path.read_text())["pid"] == os.getpid() == lock.holder["pid"]
    assert "stale lock" in caplog.text


def test_a_non_empty_directory_jaxgen_did_not_create_is_refused_unless_forced(tmp_path):
    (tmp_path / "_tmp").mkdir()  # a user's folder that jaxgen's cleanup would delete
    cfg = _job(_manifest(tmp_path / "m.jsonl"), tmp_path)
    with pytest.raises(OutputNotOurs, match=f"output {tmp_path}: a non-empty directory.*--force"):
        run_pipeline(cfg, FakeSpec())
    check_output_is_ours(str(tmp_path), force=True)


def test_a_link_planted_in_the_output_is_never_followed(finished, tmp_path):
    cfg = _copy(finished["webdataset"], tmp_path / "out")
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    job = Path(cfg.output) / "_job.json"
    job.unlink()
    job.symlink_to(outside)
    with pytest.raises(UnsafeOutputPath, match=f"{job}: a symbolic link"):
        run_pipeline(cfg, FakeSpec())
    (tmp_path / "elsewhere").mkdir()
    (Path(cfg.output) / "_tmp").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeOutputPath, match="_tmp: a symbolic link"):
        create_new(cfg.output, str(Path(cfg.output) / "_tmp" / "a" / "00000.tar"))
    assert outside.read_text() == "{}" and not list((tmp_path / "elsewhere").iterdir())


def test_temporary_files_are_created_exclusively(tmp_path):
    target = tmp_path / "victim"
    target.write_text("keep")
    (tmp_path / "x.tmp").symlink_to(target)
    with pytest.raises(UnsafeOutputPath):
        create_new(str(tmp_path), str(tmp_path / "x.tmp"))
    write_file(str(tmp_path), str(tmp_path / "x.json"), b"new")
    assert target.read_text() == "keep" and (tmp_path / "x.json").read_bytes() == b"new"


def _compressed(tmp_path: Path, opener, suffix: str, cut: int) -> Path:
    path = tmp_path / f"m.jsonl{suffix}"
    with opener(path, "wb") as f:
        f.write(_manifest(tmp_path / "plain.jsonl").read_bytes() * 50)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut < 0 else data[:-8] + bytes([data[-8] ^ 1]) + data[-7:])
    return path


@pytest.mark.parametrize(("opener", "suffix", "cut", "reason"), [
    (gzip.open, ".gz", -20, "truncated"),
    (gzip.open, ".gz", 0, "not a valid compressed stream"),  # CRC flipped
    (bz2.open, ".bz2", -20, "truncated"),
    (lzma.open, ".xz", -20, "truncated"),
    (lambda path, mode: zstandard.open(path, mode), ".zst", -5, "truncated"),
])
def test_a_damaged_compressed_manifest_is_an_error_naming_it(tmp_path, opener, suffix, cut,
                                                             reason):
    path = _compressed(tmp_path, opener, suffix, cut)
    (file,) = match_manifest([str(path)])
    with pytest.raises(ManifestError, match=f"manifest file '{path}': .*{reason}"):
        sum(1 for _ in iter_rows(file, 1 << 20))


def test_a_truncated_gzip_manifest_stops_the_job(tmp_path):
    path = _compressed(tmp_path, gzip.open, ".gz", -20)
    with pytest.raises(Exception, match=f"{path}.*truncated"):
        run_pipeline(_job(path, tmp_path / "out"), FakeSpec())
    assert not (tmp_path / "out" / "_dataset.json").exists()


def test_the_beam_launcher_takes_force_and_restart(tmp_path):
    from pipelines.generate_dataset import run

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    common = ["--manifest", str(_manifest(tmp_path / "m.jsonl")), "--output", str(out),
              "--shard_size", "2", "--height", "16", "--width", "16", "--dry-run"]
    with pytest.raises(OutputNotOurs):
        run(common)
    assert run([*common, "--force"])["counts"]["rows_read"] == ROWS
    (out / "_rejects").mkdir(exist_ok=True)
    (out / "_rejects" / "00009.jsonl").write_text("{}\n")  # a reject of an earlier job
    assert run([*common, "--restart"])["counts"]["rows_read"] == ROWS
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "_rejects" / "00009.jsonl").exists()


def test_the_model_content_hash_covers_every_file_of_the_model_directory(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"sample_size": 64}')
    (tmp_path / "model_index.json").write_text("{}")
    before = directory_sha256(tmp_path)
    (tmp_path / "unet" / "config.json").write_text('{"sample_size": 32}')  # same size
    assert directory_sha256(tmp_path) != before
