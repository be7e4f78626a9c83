"""Reading manifests: match files, then stream each file's rows, one at a time.

Formats: JSONL (one JSON object a line), CSV/TSV (a header row, then one record a row),
Parquet (one table row a row) and TXT (one prompt a line). Files are opened through Beam's
`FileSystems`, so any filesystem Beam has (local, gs://, s3://, ...) works, and so does any
compression it detects from the extension (.gz, .bz2, .deflate, .zst, .xz, .lzma).

Input is read to its verified end: a compressed stream that ends early, fails its
checksum or is not what its extension says stops the job with a ManifestError naming the
file (Beam's own reader would stop quietly and pass for a shorter manifest), and so does
a file that is not, when read, the size (and sha256, when known) it had when the job began.

What counts as a row, and its number, is decided here and only here: the counting pass
and the reading pass both iterate `iter_rows`/`scan_ids`, so they always agree. Blank lines
of JSONL and TXT files are not rows (a trailing newline must not make a reject).

A row that cannot be decoded (bad bytes, bad JSON, a CSV record that does not fit the
header, an over-long line) is still a row: it comes out with `error` set, so it can be
rejected with its line number, and rows read = generated + rejected holds.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import hashlib
import json
import lzma
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.rows import normalize_id
from jaxgen.requests import RequestError

# How much of a bad row is kept in its reject record.
RAW_CHARS = 2000
_READ_CHUNK = 1 << 16
_HASH_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}


class ManifestError(ValueError):
    """A manifest file as a whole cannot be read (not a per-row problem)."""


@dataclasses.dataclass(frozen=True)
class ManifestFile:
    """One matched manifest file; `index` is its place in the sorted list of all files."""

    index: int
    path: str
    size: int
    format: str
    sha256: str | None = None  # of the file's bytes as stored (compressed or not)


@dataclasses.dataclass(frozen=True)
class RawRow:
    """One row as read, before it becomes a request.

    row_index: 0-based among the rows of its file (what the plan counts).
    line: 1-based line where the row starts (JSONL/TXT/CSV), or 1-based row number (Parquet).
    fields: the decoded fields, or None when the row could not be decoded.
    text_values: True when every value is a string to be parsed (CSV/TSV cells).
    error: (field, message) when the row could not be decoded.
    """

    row_index: int
    line: int
    fields: dict[str, Any] | None
    raw: str
    text_values: bool = False
    error: tuple[str, str] | None = None


def match_manifest(patterns: Iterable[str], manifest_format: str = "auto") -> list[ManifestFile]:
    """All files matching the patterns, sorted by path (the order the plan numbers rows in)."""
    found: dict[str, int] = {}
    for pattern in patterns:
        result = FileSystems.match([pattern])[0]
        if not result.metadata_list:
            raise ManifestError(f"manifest {pattern!r}: matched no files")
        for meta in result.metadata_list:
            found[meta.path] = meta.size_in_bytes
    return [
        ManifestFile(i, path, found[path], detect_format(path, manifest_format))
        for i, path in enumerate(sorted(found))
    ]


def with_content_hashes(files: Iterable[ManifestFile]) -> list[ManifestFile]:
    """The files with their sha256 (one read of each), which every later read checks."""
    out = []
    for file in files:
        with FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            h = hashlib.sha256()
            size = 0
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
                size += len(chunk)
        if size != file.size:
            raise ManifestError(f"manifest file {file.path!r}: listed with {file.size} bytes, "
                                f"read {size}; it changed while the job started")
        out.append(dataclasses.replace(file, sha256=h.hexdigest()))
    return out


def detect_format(path: str, manifest_format: str = "auto") -> str:
    if manifest_format != "auto":
        return manifest_format
    name = path.lower()
    for suffix in (".gz", ".bz2", ".zst", ".deflate", ".xz", ".lzma", ".snappy"):
        if name.endswith(suffix) and not name.endswith(".parquet" + suffix):
            name = name[: -len(suffix)]
            break
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    raise ManifestError(
        f"manifest file {path!r}: cannot tell its format from the extension; "
        f"valid: {', '.join(sorted(_EXTENSIONS))} (optionally compressed), or set manifest_format"
    )


def iter_rows(file: ManifestFile, max_line_bytes: int) -> Iterator[RawRow]:
    """Stream the rows of one manifest file."""
    with _open(file) as f:
        if file.format == "jsonl":
            yield from _jsonl_rows(f, max_line_bytes)
        elif file.format == "txt":
            yield from _txt_rows(f, max_line_bytes)
        elif file.format in ("csv", "tsv"):
            yield from _csv_rows(f, max_line_bytes, "\t" if file.format == "tsv" else ",")
        elif file.format == "parquet":
            yield from _parquet_rows(f, max_line_bytes)
        else:
            raise ManifestError(f"manifest file {file.path!r}: unknown format {file.format!r}")


def scan_ids(file: ManifestFile, max_line_bytes: int) -> Iterator[tuple[int, int, str | None]]:
    """(row_index, line, id or None) for every row: the cheap first pass (counts + ids).

    Cheaper than `iter_rows` where it can be: Parquet reads only the `id` column, JSONL
    parses only lines that can hold an "id" key, TXT has no ids.
    """
    if file.format == "parquet":
        yield from _parquet_ids(file)
        return
    if file.format == "jsonl":
        with _open(file) as f:
            index = 0
            for line_no, data, length in _lines(f, max_line_bytes):
                if not data.strip():
                    continue
                row_id = None
                # A key spelled with escapes (\u0069d) has a backslash-u: parse those too.
                if length <= max_line_bytes and (b"id" in data or b"\\u" in data):
                    row = _decode_jsonl(index, line_no, data, length, max_line_bytes)
                    if row.fields is not None:
                        row_id = normalize_id(row.fields.get("id"))
                yield index, line_no, row_id
                index += 1
        return
    for row in iter_rows(file, max_line_bytes):
        row_id = normalize_id(row.fields.get("id")) if row.fields is not None else None
        yield row.row_index, row.line, row_id


def _open(file: ManifestFile) -> BinaryIO:
    raw = FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED)
    if file.format == "parquet":
        # pyarrow needs to seek; Beam's auto-decompression would hide the real file.
        return raw
    return _VerifiedStream(raw, file)  # type: ignore[return-value]


def _decompressor(path: str) -> Any:
    kind = CompressionTypes.detect_compression_type(path)
    if kind == CompressionTypes.UNCOMPRESSED:
        return None
    if kind == CompressionTypes.GZIP:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == CompressionTypes.DEFLATE:
        return zlib.decompressobj()
    if kind == CompressionTypes.BZIP2:
        return bz2.BZ2Decompressor()
    if kind == CompressionTypes.LZMA:
        return lzma.LZMADecompressor()
    import zstandard

    return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()


class _VerifiedStream:
    """A file's decompressed bytes; at its end, checks that every stream ended whole and
    that the stored bytes have the size (and sha256) the job started with."""

    def __init__(self, raw: BinaryIO, file: ManifestFile):
        self._raw, self._file = raw, file
        self._d = _decompressor(file.path)
        self._hash = hashlib.sha256() if file.sha256 else None
        self._size = 0
        self._done = False

    def read(self, n: int) -> bytes:
        while not self._done:
            chunk = self._raw.read(n)
            if not chunk:
                self._finish()
                return b""
            self._size += len(chunk)
            if self._hash is not None:
                self._hash.update(chunk)
            out = self._decompress(chunk) if self._d is not None else chunk
            if out:
                return out
        return b""

    def _decompress(self, data: bytes) -> bytes:
        out = []
        try:
            while data:
                if self._d.eof:  # a concatenated stream (gzip members, bz2 streams, frames)
                    self._d = _decompressor(self._file.path)
                out.append(self._d.decompress(data))
                data = self._d.unused_data if self._d.eof else b""
        except Exception as e:  # zlib.error, OSError, EOFError, zstd.ZstdError, ...
            reason = f"is not a valid compressed stream ({type(e).__name__}: {e})"
            raise self._error(reason) from None
        return b"".join(out)

    def _finish(self) -> None:
        self._done = True
        if self._d is not None and not self._d.eof:
            raise self._error("ends before its compressed stream does (truncated)")
        if self._size != self._file.size:
            raise self._error(f"read {self._size} bytes, listed with {self._file.size}; it "
                              "changed while the job ran")
        if self._hash is not None and self._hash.hexdigest() != self._file.sha256:
            raise self._error("its sha256 changed while the job ran")

    def _error(self, reason: str) -> ManifestError:
        return ManifestError(f"manifest file {self._file.path!r}: {reason}; the job stops "
                             "rather than make a dataset of part of it")

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _VerifiedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lines(f: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes, int]]:
    """(1-based line number, line bytes without the line ending, full length) per line.

    Reads fixed chunks rather than readline(): not every Beam file object takes a size
    limit, and a single 2 GB line must not be held in memory. Past `max_bytes` only a
    prefix is kept (for the reject record) while the length is still counted.
    """
    buf = bytearray()
    length = 0
    line_no = 0
    first = True
    while True:
        chunk = f.read(_READ_CHUNK)
        if not chunk:
            break
        parts = chunk.split(b"\n")
        for i, part in enumerate(parts):
            if length <= max_bytes:
                buf += part[: max_bytes + 2 - len(buf)]
            length += len(part)
            if i == len(parts) - 1:
                break  # no newline after this part yet
            line_no += 1
            yield line_no, _finish_line(buf, first), length
            first = False
            buf.clear()
            length = 0
    if buf or length:
        yield line_no + 1, _finish_line(buf, first), length


def _finish_line(buf: bytearray, first: bool) -> bytes:
    data = bytes(buf)
    if first and data.startswith(_BOM):
        data = data[len(_BOM) :]
    return data[:-1] if data.endswith(b"\r") else data


def _raw(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= RAW_CHARS else text[:RAW_CHARS] + "..."


def _error(row_index: int, line: int, raw: Any, exc: RequestError) -> RawRow:
    return RawRow(row_index, line, None, _raw(raw), error=(exc.field, str(exc)))


def _check_line(data: bytes, length: int, max_bytes: int) -> str:
    """The line as text, or RequestError for an over-long or non-UTF-8 line."""
    if length > max_bytes:
        raise _too_long("line", f"{length} bytes", max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(data, e) from None


def _too_long(field: str, size: str, max_bytes: int) -> RequestError:
    return RequestError(field, size, f"is longer than max_line_bytes={max_bytes}")


def _not_utf8(data: bytes, e: UnicodeDecodeError) -> RequestError:
    return RequestError("line", data[e.start : e.end], f"is not valid UTF-8 (at byte {e.start})")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RequestError(key, value, "appears twice in the same JSON object")
        out[key] = value
    return out


_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)  # built once, not per line


def _decode_jsonl(index: int, line_no: int, data: bytes, length: int, max_bytes: int) -> RawRow:
    try:
        text = _check_line(data, length, max_bytes)
        try:
            value = _JSON.decode(text)
        except json.JSONDecodeError as e:
            raise RequestError(
                "line", text[max(0, e.pos - 20) : e.pos + 20], f"is not valid JSON: {e.msg} "
                f"at column {e.colno}"
            ) from None
        except RequestError:
            raise  # a key twice: the hook names it
        except (RecursionError, ValueError) as e:  # too deep; an integer of too many digits
            raise RequestError("line", text[:40], "is JSON Python cannot read "
                               f"({type(e).__name__}: {e})") from None
        if not isinstance(value, dict):
            raise RequestError("row", value, "must be a JSON object with at least a prompt")
    except RequestError as e:
        return _error(index, line_no, data, e)
    return RawRow(index, line_no, value, _raw(text))


def _jsonl_rows(f: BinaryIO, max_bytes: int) -> Iterator[RawRow]:
    index = 0
    for line_no, data, length in _lines(f, max_bytes):
        if not data.strip():
            continue
        yield _decode_jsonl(index, line_no, data, length, max_bytes)
        index += 1


def _txt_rows(f: BinaryIO, max_bytes: int) -> Iterator[RawRow]:
    index = 0
    for line_no, data, length in _lines(f, max_bytes):
        if not data.strip():
            continue
        try:
            text = _check_line(data, length, max_bytes)
        except RequestError as e:
            yield _error(index, line_no, data, e)
        else:
            yield RawRow(index, line_no, {"prompt": text.strip()}, _raw(text))
        index += 1


class _CsvLines:
    """Feeds decoded lines to csv.reader and remembers those of the current record.

    Undecodable bytes are smuggled through as surrogates (so one bad byte does not stop
    the reader) and turned into a reject afterwards; so are over-long lines.
    """

    def __init__(self, f: BinaryIO, max_bytes: int):
        self._lines = _lines(f, max_bytes)
        self._max = max_bytes
        self.pending: list[str] = []
        self.too_long: int = 0  # longest line length of the current record, if over the limit

    def __iter__(self) -> Iterator[str]:
        for _, data, length in self._lines:
            if length > self._max:
                self.too_long = max(self.too_long, length)
            text = data.decode("utf-8", "surrogateescape")
            self.pending.append(text)
            yield text + "\n"

    def take(self) -> tuple[str, int]:
        raw, too_long = "\n".join(self.pending), self.too_long
        self.pending, self.too_long = [], 0
        return raw, too_long


def _csv_rows(f: BinaryIO, max_bytes: int, delimiter: str) -> Iterator[RawRow]:
    lines = _CsvLines(f, max_bytes)
    reader = csv.reader(iter(lines), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_error: RequestError | None = None
    index = 0
    last_line = 0
    while True:
        error: RequestError | None = None
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            record, error = None, RequestError("line", "", f"is not valid CSV: {e}")
        start, last_line = last_line + 1, reader.line_num
        raw, too_long = lines.take()
        if record == []:
            continue  # a blank line: not a row
        if too_long:
            error = _too_long("line", f"{too_long} bytes", max_bytes)
        elif record is not None and any(_has_surrogates(cell) for cell in record):
            bad = raw.encode("utf-8", "surrogateescape")
            error = _utf8_error(bad)
        if header is None and header_error is None:
            header, header_error = _parse_header(record, error)
            continue
        if error is None:
            error = header_error
        if error is None and record is not None and header is not None:
            if len(record) != len(header):
                error = RequestError(
                    "row", f"{len(record)} fields", f"has {len(record)} fields; the header has "
                    f"{len(header)} ({', '.join(header)})"
                )
        if error is not None:
            yield _error(index, start, raw, error)
        else:
            # An empty cell means "not given" (the job default applies).
            fields = {k: v for k, v in zip(header or [], record or [], strict=True) if v != ""}
            yield RawRow(index, start, fields, _raw(raw), text_values=True)
        index += 1


def _parse_header(
    record: list[str] | None, error: RequestError | None
) -> tuple[list[str] | None, RequestError | None]:
    if error is not None or record is None:
        reason = error.reason if error else "cannot be read"
        return None, RequestError("header", "", f"{reason}; every row of this file is rejected")
    names = [name.strip() for name in record]
    for name in names:
        if names.count(name) > 1 or not name:
            return None, RequestError("header", name, "is empty or appears twice in the header")
    return names, None


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _utf8_error(data: bytes) -> RequestError:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return _not_utf8(data, e)
    return RequestError("line", "", "is not valid UTF-8")


def _parquet_file(f: BinaryIO) -> Any:
    import pyarrow.parquet as pq

    return pq.ParquetFile(f)


def _parquet_rows(f: BinaryIO, max_bytes: int) -> Iterator[RawRow]:
    index = 0
    for batch in _parquet_file(f).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            raw = json.dumps(row, ensure_ascii=False, default=repr)
            # Parquet nulls mean "not given"; NaN is a value (and rejected where invalid).
            fields = {k: v for k, v in row.items() if v is not None}
            if len(raw.encode()) > max_bytes:
                err = _too_long("row", f"{len(raw)} chars", max_bytes)
                yield _error(index, index + 1, raw, err)
            else:
                yield RawRow(index, index + 1, fields, _raw(raw))
            index += 1


def _parquet_ids(file: ManifestFile) -> Iterator[tuple[int, int, str | None]]:
    with _open(file) as f:
        pf = _parquet_file(f)
        if "id" not in pf.schema_arrow.names:
            for i in range(pf.metadata.num_rows):
                yield i, i + 1, None
            return
        index = 0
        for batch in pf.iter_batches(batch_size=8192, columns=["id"]):
            for value in batch.column(0).to_pylist():
                yield index, index + 1, normalize_id(value)
                index += 1
