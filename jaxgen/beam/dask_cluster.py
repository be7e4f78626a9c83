"""A dask.distributed cluster on this machine: one scheduler and N worker processes.

    python -m jaxgen.beam.dask_cluster --workers 2      # prints the address, Ctrl-C stops it
    jaxgen generate ... --runner DaskRunner --dask-address tcp://127.0.0.1:PORT

Each worker is its own process (no nanny, one thread): it builds the model once and
generates one shard at a time, and a worker killed mid-job is gone for good, so the
scheduler must move its tasks to the others. Workers inherit this process's environment
(PYTHONPATH, JAX_PLATFORMS, XLA_FLAGS), so they import the same jaxgen as the client.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


@dataclasses.dataclass
class LocalDaskCluster:
    """A running scheduler and its workers; `stop()` (or `with`) ends every process."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    directory: Path

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> LocalDaskCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_cluster(workers: int = 2, host: str = "127.0.0.1", port: int = 0,
                        directory: str | Path | None = None,
                        timeout_s: float = 120.0) -> LocalDaskCluster:
    """Start a scheduler on host:port (0: any free port) and `workers` worker processes;
    return once every worker has registered. Logs go to DIRECTORY/{scheduler,worker-N}.log."""
    if workers < 1:
        raise ValueError(f"workers {workers}: a cluster needs at least one worker")
    where = Path(directory or tempfile.mkdtemp(prefix="jaxgen-dask-"))
    where.mkdir(parents=True, exist_ok=True)
    info = where / "scheduler.json"
    info.unlink(missing_ok=True)
    scheduler = _spawn(where / "scheduler.log", "distributed.cli.dask_scheduler",
                       "--host", host, "--port", str(port), "--no-dashboard",
                       "--scheduler-file", str(info))
    procs: list[subprocess.Popen] = []
    cluster = LocalDaskCluster("", scheduler, procs, where)
    try:
        address = _wait_for_address(info, scheduler, timeout_s)
        cluster.address = address
        for i in range(workers):
            procs.append(_spawn(
                where / f"worker-{i}.log", "distributed.cli.dask_worker", address,
                "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"worker-{i}",
                "--local-directory", str(where / f"worker-{i}")))
        _wait_for_workers(address, workers, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _spawn(log: Path, module: str, *args: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", module, *args], stdout=out,
                                stderr=subprocess.STDOUT, env=os.environ.copy())


def _wait_for_address(info: Path, scheduler: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {scheduler.returncode}; "
                               f"see {info.parent / 'scheduler.log'}")
        try:
            return json.loads(info.read_text())["address"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.1)
    raise TimeoutError(f"dask scheduler: no address in {info} after {timeout_s:.0f}s")


def _wait_for_workers(address: str, n: int, timeout_s: float) -> None:
    from distributed import Client

    with Client(address, timeout=timeout_s) as client:
        client.wait_for_workers(n, timeout=timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxgen.beam.dask_cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--host", default="127.0.0.1", help="the scheduler's address to listen on")
    p.add_argument("--port", type=int, default=8786, help="the scheduler's port (0: any)")
    p.add_argument("--dir", help="logs and worker scratch space (default: a new temp dir)")
    args = p.parse_args(argv)
    cluster = start_local_cluster(args.workers, args.host, args.port, args.dir)
    print(f"dask cluster at {cluster.address}: scheduler pid {cluster.scheduler.pid}, worker "
          f"pids {' '.join(str(w.pid) for w in cluster.workers)}; logs in {cluster.directory}",
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while all(proc.poll() is None for proc in [cluster.scheduler, *cluster.workers]):
            time.sleep(1)
        print("a cluster process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
