"""The job on Beam's DaskRunner over a real dask.distributed cluster (a scheduler and two
worker processes): the same shards as the in-process runner, even with a worker killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from jaxgen.beam.dask_cluster import start_local_cluster
from jaxgen.cli import main

# Slow: each worker process starts, builds the model and compiles it for each job.
pytestmark = pytest.mark.slow
ROWS = 8
SHARDS = [f"{i:05d}" for i in range(ROWS)]


def _args(model, manifest, out) -> list[str]:
    return ["generate", "--manifest", str(manifest), "--out", str(out), "--model", str(model),
            "--steps", "2", "--height", "16", "--width", "16", "--shard-size", "1",
            "--no-progress"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"a blue square {i}"}) + "\n"
                            for i in range(ROWS)))
    return path


@pytest.fixture(scope="module")
def in_process(tiny_sd1_dir, manifest):
    out = manifest.parent / "in_process"
    assert main(_args(tiny_sd1_dir, manifest, out)) == 0
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with start_local_cluster(workers=2, port=0,
                             directory=tmp_path_factory.mktemp("cluster")) as running:
        yield running


def _dask(cluster) -> list[str]:
    return ["--runner", "DaskRunner", "--dask-address", cluster.address,
            "--beam-option", "dask_npartitions=4"]


def _assert_same_dataset(out, reference):
    for name in SHARDS:
        for part in (f"{name}.tar", f"{name}.parquet"):
            assert (out / part).read_bytes() == (reference / part).read_bytes(), part
    keys = []
    for name in SHARDS:
        with tarfile.open(out / f"{name}.tar") as tar:
            keys += sorted({m.name.split(".")[0] for m in tar.getmembers()})
    assert len(keys) == len(set(keys)) == ROWS
    summary = json.loads((out / "_dataset.json").read_text())
    assert summary["counts"]["rows_read"] == ROWS == summary["counts"]["rows_generated"]
    assert not [p for p in out.rglob("*") if "tmp" in p.name.lower()]


def test_a_job_on_a_dask_cluster_writes_the_in_process_runners_shards(
        tiny_sd1_dir, manifest, in_process, cluster, tmp_path):
    out = tmp_path / "dask"
    assert main([*_args(tiny_sd1_dir, manifest, out), *_dask(cluster)]) == 0
    _assert_same_dataset(out, in_process)


def test_a_worker_killed_mid_job_has_its_shards_written_by_the_other(
        tiny_sd1_dir, manifest, in_process, cluster, tmp_path):
    from distributed import Client

    out = tmp_path / "killed"
    job = subprocess.Popen([sys.executable, "-m", "jaxgen.cli",
                            *_args(tiny_sd1_dir, manifest, out), *_dask(cluster)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with Client(cluster.address) as client:
        deadline = time.time() + 300
        while not list(out.glob("*_stats.json")) and time.time() < deadline:
            time.sleep(0.05)
        busy = [w for w, keys in client.processing().items() if keys]
        assert busy, "the kill must land while a worker runs a task"
        pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
        os.kill(pid, signal.SIGKILL)
    done_at_kill = len(list(out.glob("*_stats.json")))
    assert done_at_kill < ROWS, "the kill must land mid-job"
    log, _ = job.communicate(timeout=300)
    assert job.returncode == 0, log.decode()[-3000:]
    assert pid in [w.pid for w in cluster.workers if w.poll() is not None]
    _assert_same_dataset(out, in_process)
