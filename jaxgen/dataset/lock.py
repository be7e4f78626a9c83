"""One run per output (per host index): an advisory lock file in the output directory.

`_lock.host<N>.json` holds the holder's host name, pid and start time. It is created
exclusively, so of two runs started on one output the second stops at once, naming the
first. Hosts of a multi-host job (`--host-index`) share one output by design: each takes
the lock of its own index. A lock left by a run that died (its pid gone, on this host) is
stale: it is taken over, with a message. A lock held from another host cannot be checked
from here; the message says so and names the file to remove if that run is gone.

A thread that holds the lock may take it again (`jaxgen augment` holds it while it writes
its plan, then runs the generate pipeline, which takes it too); the file goes with the
outermost release.

On object stores (gs://, s3://) there is no exclusive create: the check is best effort.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import threading
from typing import Any

from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.safe_io import create_new, is_local, make_dirs, read_bytes
from jaxgen.dataset.writers import join
from jaxgen.requests import ConfigError

LOCK_PREFIX = "_lock.host"
log = logging.getLogger("jaxgen.dataset")
_held: dict[tuple[str, int], int] = {}  # (lock path, thread): how many acquire()s are open


class OutputLocked(ConfigError):
    """Another run holds the output (for this host index)."""


def lock_path(output: str, host_index: int) -> str:
    return join(output, f"{LOCK_PREFIX}{host_index}.json")


class OutputLock:
    """Held from acquire() to release(); a context manager."""

    def __init__(self, output: str, host_index: int = 0):
        self.output = output
        self.path = lock_path(output, host_index)
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(),
                       "host_index": host_index,
                       "started": datetime.datetime.now(datetime.UTC).isoformat(
                           timespec="seconds")}
        self._held = False

    def acquire(self) -> OutputLock:
        path = os.path.abspath(self.path) if is_local(self.path) else self.path
        key = self._key = (path, threading.get_ident())
        if key in _held:
            _held[key] += 1
            self._held = True
            return self
        make_dirs(self.output, self.output)
        for _ in range(2):  # a second try after taking over a stale lock
            if self._try_create():
                _held[key] = 1
                self._held = True
                return self
            other = self._read_holder()
            if other is None:
                continue  # released between our try and our read
            if not _is_stale(other):
                raise OutputLocked(
                    f"{self.path}: the output is in use by another run (host "
                    f"{other.get('host')}, pid {other.get('pid')}, started "
                    f"{other.get('started')}); wait for it, or choose another output"
                    + ("" if other.get("host") == self.holder["host"] else
                       "; if that run is gone, remove the lock file"))
            log.warning("%s: taking over a stale lock (pid %s on %s is gone, started %s)",
                        self.path, other.get("pid"), other.get("host"), other.get("started"))
            FileSystems.delete([self.path])
        raise OutputLocked(f"{self.path}: could not take the lock; another run is starting")

    def _try_create(self) -> bool:
        data = (json.dumps(self.holder, sort_keys=True) + "\n").encode()
        if not is_local(self.path):
            if FileSystems.exists(self.path):
                return False
        try:
            with create_new(self.output, self.path) as f:
                f.write(data)
        except FileExistsError:
            return False
        except ConfigError:
            if is_local(self.path) and os.path.lexists(self.path):
                if os.path.islink(self.path):
                    raise
                return False
            raise
        return True

    def _read_holder(self) -> dict[str, Any] | None:
        data = read_bytes(self.output, self.path)
        if data is None:
            return None
        try:
            holder = json.loads(data.decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            # Empty or cut short: a holder that died while writing it (written in one go).
            return {"host": self.holder["host"], "pid": None, "started": "unknown"}
        return holder if isinstance(holder, dict) else {}

    def release(self) -> None:
        if self._held:
            self._held = False
            key = self._key
            _held[key] -= 1
            if _held[key]:
                return
            del _held[key]
            if FileSystems.exists(self.path):
                FileSystems.delete([self.path])

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_stale(holder: dict[str, Any]) -> bool:
    """True when the holder ran on this host and its process is gone."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False
