"""Drive the worker processes: start them, send ops, read replies, keep their logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness.worker import REPLY

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "benchmarks" / "harness" / "worker.py"


class WorkerError(RuntimeError):
    pass


class Worker:
    """A system in its own process; `call(op, **args)` blocks until it replies."""

    def __init__(self, system: str, config: dict[str, Any], log_dir: Path,
                 name: str | None = None):
        self.system = system
        self.log = log_dir / f"{name or system}.log"  # `name`: several workers of one system
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), system, json.dumps({**config, "repo": str(REPO)})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "w"),
            text=True, env=env, cwd=REPO)
        self.ready = self._read()

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        self.proc.wait()
        tail = self.log.read_text()[-3000:]
        raise WorkerError(f"{self.system} worker exited ({self.proc.returncode}):\n{tail}")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


def run_once(system: str, config: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """A one-shot worker (the warm start): its reply, and the process's whole wall time."""
    import time

    t = time.perf_counter()
    worker = Worker(system, config, log_dir)
    worker.proc.wait(timeout=600)
    return {**worker.ready, "process_wall_s": time.perf_counter() - t}
