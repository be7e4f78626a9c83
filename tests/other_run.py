"""Another run on the same output: one killed with SIGKILL mid-run, one holding its lock."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from jaxgen.dataset.lock import OutputLock


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


@contextlib.contextmanager
def lock_held_elsewhere(output: str) -> Iterator[None]:
    """A run in progress on `output`: its lock held by another thread of this (alive)
    process for the block. Another thread, because the lock is re-entrant for its holder."""
    held, finish = threading.Event(), threading.Event()

    def run_in_progress() -> None:
        with OutputLock(output):
            held.set()
            finish.wait(60)

    holder = threading.Thread(target=run_in_progress)
    holder.start()
    try:
        assert held.wait(60), "the other thread did not take the lock"
        yield
    finally:
        finish.set()
        holder.join()
