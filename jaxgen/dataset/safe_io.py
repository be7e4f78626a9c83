"""Files inside the output directory: never through a link, created exclusively, durable.

On a local filesystem every path jaxgen writes, renames or reads under the output is
checked component by component (lstat, not stat): a symbolic link that jaxgen did not
make (jaxgen makes none) stops the job with a message naming it, so a planted link never
sends a write or a read outside the output. Temporary files are created with O_EXCL and
O_NOFOLLOW, written, fsynced, and only then renamed into place (the directory fsynced
after), so a power cut leaves either the old file, the new one, or a temp file: never an
empty file under a published name.

Object stores (gs://, s3://, ...) have neither links nor partial objects: their paths go
through Beam's FileSystems unchanged.
"""

from __future__ import annotations

import os
import stat
import uuid
from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from jaxgen.requests import ConfigError

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)


class UnsafeOutputPath(ConfigError):
    """A path inside the output is a symbolic link (or not the kind of file expected)."""


def is_local(path: str) -> bool:
    return "://" not in path


def _components(root: str, path: str) -> list[str]:
    """Every path from just below `root` down to `path`, outermost first."""
    rel = os.path.relpath(path, root)
    if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        return []
    parts, out = rel.split(os.sep), []
    for i in range(len(parts)):
        out.append(os.path.join(root, *parts[: i + 1]))
    return out


def check_no_link(root: str, path: str) -> None:
    """Raise UnsafeOutputPath if `path`, or a directory between `root` and it, is a link."""
    if not is_local(path):
        return
    for part in _components(root, path):
        try:
            mode = os.lstat(part).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise UnsafeOutputPath(
                f"{part}: a symbolic link inside the output {root}, which jaxgen did not "
                "create; it never follows one. Remove it, or choose another output"
            )


def make_dirs(root: str, path: str) -> None:
    """Create `path` and its parents under `root`, refusing any link on the way."""
    if not is_local(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:
            pass  # object stores have no directories
        return
    os.makedirs(root, exist_ok=True)
    for part in _components(root, path):
        try:
            os.mkdir(part)
        except FileExistsError:
            mode = os.lstat(part).st_mode
            if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
                check_no_link(root, part)
                raise UnsafeOutputPath(f"{part}: exists inside the output and is not a "
                                       "directory; jaxgen needs a directory there") from None


class _DurableFile:
    """A local file opened O_EXCL; close() fsyncs it before closing."""

    def __init__(self, fd: int):
        self._f = os.fdopen(fd, "wb")
        self.closed = False

    def write(self, data: bytes) -> int:
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self.closed = True

    def __enter__(self) -> _DurableFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_new(root: str, path: str) -> BinaryIO:
    """Open a new file for writing: exclusively, never through a link, fsynced on close."""
    if not is_local(path):
        return FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
    make_dirs(root, os.path.dirname(path))
    try:
        fd = os.open(path, _NEW_FILE, 0o644)
    except FileExistsError:
        check_no_link(root, path)
        raise UnsafeOutputPath(f"{path}: a temporary file of that name exists already; "
                               "jaxgen creates its temporary files exclusively") from None
    return _DurableFile(fd)  # type: ignore[return-value]


def publish(root: str, sources: list[str], targets: list[str]) -> None:
    """Rename written temp files into place, in order; then fsync the directories."""
    if not sources:
        return
    if not is_local(root):
        FileSystems.rename(sources, targets)
        return
    for source, target in zip(sources, targets, strict=True):
        check_no_link(root, os.path.dirname(target))
        os.replace(source, target)  # replaces a link itself, never writes through it
    for parent in sorted({os.path.dirname(t) for t in targets}):
        _fsync_dir(parent)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(root: str, path: str, data: bytes) -> None:
    """Write `path` whole: a fresh temp file, fsynced, renamed into place."""
    tmp = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
    with create_new(root, tmp) as f:
        f.write(data)
    publish(root, [tmp], [path])


def open_read(root: str, path: str) -> BinaryIO:
    """Open a file under the output for reading, refusing a link (FileNotFoundError if absent)."""
    if not is_local(path):
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    check_no_link(root, path)
    try:
        fd = os.open(path, _READ)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise UnsafeOutputPath(f"{path}: cannot be opened inside the output ({e})") from None
    return os.fdopen(fd, "rb")


def read_bytes(root: str, path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    if not is_local(path) and not FileSystems.exists(path):
        return None
    try:
        with open_read(root, path) as f:
            return f.read()
    except FileNotFoundError:
        return None
