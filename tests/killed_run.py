"""A job killed with SIGKILL once its first shard is done: what a crash mid-run leaves."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def kill_after_first_shard(command: list[str], out: Path, timeout_s: float = 300) -> int:
    """Run `command` (a job writing to `out`), SIGKILL it as soon as a shard's stats file
    appears; return how many shards were done at the kill."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while not list(out.glob("*_stats.json")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(list(out.glob("*_stats.json")))
