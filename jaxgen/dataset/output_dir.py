"""Whose directory is the output, and `--restart`: remove what jaxgen wrote, nothing else.

A directory is jaxgen's when it holds a file only jaxgen writes (`_job.json`, `_plan.json`,
`_dataset.json` or a lock file). A non-empty directory without one is someone else's:
jaxgen refuses to write into it (it would mix its files with the user's, and clean up its
own `_tmp/` there) unless told `--force`.
"""

from __future__ import annotations

import logging
import os
import re

from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.lock import LOCK_PREFIX
from jaxgen.dataset.resume import JOB_FILE, PLAN_FILE, SUMMARY_FILE
from jaxgen.dataset.safe_io import check_no_link, is_local
from jaxgen.dataset.writers import DROPPED_DIR, IMAGEFOLDER_PARTS_DIR, REJECTS_DIR, TMP_DIR, join
from jaxgen.requests import ConfigError

log = logging.getLogger("jaxgen.dataset")
_MARKERS = (JOB_FILE, PLAN_FILE, SUMMARY_FILE)
# Top-level files and folders jaxgen writes (the report's included); shard files by pattern.
_OWN_FILES = (JOB_FILE, PLAN_FILE, SUMMARY_FILE, "metadata.jsonl", "report.html")
_OWN_DIRS = (TMP_DIR, REJECTS_DIR, DROPPED_DIR, IMAGEFOLDER_PARTS_DIR, "_report")
_SHARD_FILE = re.compile(r"^\d+(\.tar|\.parquet|_stats\.json)$")
_SHARD_DIR = re.compile(r"^\d+$")
_IMAGE_FILE = re.compile(r"^[^.]+\.(png|webp|jpg|jpeg)$")
_OWN_TEMP = re.compile(r"^(_job|_dataset|_plan)\.json\.[0-9a-f]{12}\.tmp$|^report\.html\.tmp$")


class OutputNotOurs(ConfigError):
    """The output is a non-empty directory jaxgen did not create."""


def _entries(output: str) -> list[str]:
    """Names directly in the output (none when it does not exist)."""
    if is_local(output):
        return sorted(os.listdir(output)) if os.path.isdir(output) else []
    found = FileSystems.match([join(output, "*")])[0].metadata_list
    return sorted({m.path[len(output.rstrip("/")) + 1:].split("/", 1)[0] for m in found})


def is_jaxgen_output(names: list[str]) -> bool:
    return any(n in _MARKERS or n.startswith(LOCK_PREFIX) for n in names)


def check_output_is_ours(output: str, force: bool = False) -> None:
    """Raise OutputNotOurs for a non-empty directory jaxgen did not create (unless force)."""
    names = _entries(output)
    if names and not is_jaxgen_output(names) and not force:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise OutputNotOurs(
            f"output {output}: a non-empty directory jaxgen did not create ({shown}); choose "
            "an empty or new directory, or pass --force to write into it")


def remove_job_files(output: str) -> list[str]:
    """`--restart`: delete what jaxgen wrote in the output (not the lock, nothing of the
    user's); returns the names removed."""
    removed = []
    for name in _entries(output):
        path = join(output, name)
        check_no_link(output, path)
        if name in _OWN_FILES or _SHARD_FILE.match(name) or _OWN_TEMP.match(name):
            FileSystems.delete([path])
        elif name in _OWN_DIRS:
            _delete_own_dir(output, path, name)
        elif _SHARD_DIR.match(name) and _only_images(path):
            FileSystems.delete([path])
        else:
            continue
        removed.append(name)
    log.warning("--restart: removed %d entries jaxgen wrote in %s", len(removed), output)
    return removed


def _delete_own_dir(output: str, path: str, name: str) -> None:
    if name in (TMP_DIR, "_report") or not is_local(path):
        FileSystems.delete([path])
        return
    for entry in os.listdir(path):  # _rejects/, _dropped/, _metadata/: only the shard parts
        if _SHARD_DIR.match(entry.split(".", 1)[0]) and entry.endswith(".jsonl"):
            os.remove(os.path.join(path, entry))
    if not os.listdir(path):
        os.rmdir(path)


def _only_images(path: str) -> bool:
    if not is_local(path):
        return True
    return os.path.isdir(path) and all(
        _IMAGE_FILE.match(e.name) and e.is_file(follow_symlinks=False) for e in os.scandir(path))
