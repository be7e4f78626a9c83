"""Shard writers: WebDataset tar + audit parquet, parquet with image bytes, imagefolder.

Every file of a shard is first written under `OUTPUT/_tmp/<attempt>/...` and renamed into
place only when the whole shard is written and fsynced, its stats file last: a shard whose
`NAME_stats.json` exists (and whose files match the sha256s it records) is complete, and a
crashed or retried attempt leaves nothing but temp files (removed when the job completes).
Temp files are created exclusively and never through a link (jaxgen.dataset.safe_io).
Each attempt has its own temp directory, so two attempts of one shard (a retry racing a
straggler) never write the same temp file; whichever renames last wins, and both wrote the
same bytes.

Bytes are deterministic: tar members have mtime 0, uid/gid 0, no user names, a fixed
order; parquet files are written with fixed settings and no timestamps.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable
from typing import Any, BinaryIO

from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.plan import PlannedRow, Reject
from jaxgen.dataset.records import (
    IMAGE_EXTENSIONS,
    IMAGE_INPUT_KEYS,
    LABEL_KEYS,
    ImageRecord,
    dumps_stable,
)
from jaxgen.dataset.safe_io import create_new, make_dirs, publish
from jaxgen.requests import MICRO_CONDITIONING

TMP_DIR = "_tmp"
REJECTS_DIR = "_rejects"
DROPPED_DIR = "_dropped"  # images the job's filter kept out of the dataset, with the reason
IMAGEFOLDER_PARTS_DIR = "_metadata"
_PARQUET_ROW_GROUP = 256  # images per row group: bounds the writer's memory


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


class _CountingWriter:
    """A write-only stream that also measures what went through it (size + sha256)."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.size = 0
        self._hash = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self._raw.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
            self.closed = True

    def __enter__(self) -> _CountingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def digest(self) -> dict[str, Any]:
        return {"bytes": self.size, "sha256": self._hash.hexdigest()}


class ShardFiles:
    """Files of one shard attempt: written under a temp dir, renamed into place by commit().

    Files written with listed=False (imagefolder images) are summed up in `bulk`: their
    count, bytes, folder and one sha256 over their sorted (name, sha256) pairs, which is
    what resume checks them against (bulk_digest).
    """

    def __init__(self, output: str, attempt: str):
        self.output = output
        self._tmp = join(output, TMP_DIR, attempt)
        self._order: list[str] = []
        self._streams: dict[str, _CountingWriter] = {}
        self._bulk: dict[str, str] = {}  # relpath -> sha256, for files not listed one by one
        self._bulk_bytes = 0

    def create(self, relpath: str) -> _CountingWriter:
        stream = _CountingWriter(create_new(self.output, join(self._tmp, relpath)))
        self._order.append(relpath)
        self._streams[relpath] = stream
        return stream

    def write(self, relpath: str, data: bytes, *, listed: bool = True) -> None:
        with self.create(relpath) as f:
            f.write(data)
        if not listed:
            self._bulk[relpath] = self._streams.pop(relpath).digest()["sha256"]
            self._bulk_bytes += len(data)

    @property
    def bulk(self) -> dict[str, Any]:
        """{} or {"count", "bytes", "dir", "sha256"} of the files not listed one by one."""
        if not self._bulk:
            return {}
        folders = {p.rsplit("/", 1)[0] for p in self._bulk}
        if len(folders) != 1:
            raise ValueError(f"bulk files of one shard must share one folder, got {folders}")
        return {"count": len(self._bulk), "bytes": self._bulk_bytes, "dir": folders.pop(),
                "sha256": bulk_digest(self._bulk)}

    def digests(self) -> dict[str, dict[str, Any]]:
        return {path: s.digest() for path, s in sorted(self._streams.items())}

    def commit(self) -> None:
        """Rename every file into place, in the order they were created (stats last)."""
        for stream in self._streams.values():
            stream.close()
        parents = sorted({p.rsplit("/", 1)[0] for p in self._order if "/" in p})
        for parent in parents:
            make_dirs(self.output, join(self.output, parent))
        publish(self.output, [join(self._tmp, p) for p in self._order],
                [join(self.output, p) for p in self._order])


def bulk_digest(sha256_by_name: dict[str, str]) -> str:
    """One sha256 over a folder's files: their sorted names and each one's sha256."""
    h = hashlib.sha256()
    for name in sorted(sha256_by_name):
        h.update(f"{name.rsplit('/', 1)[-1]}\0{sha256_by_name[name]}\n".encode())
    return h.hexdigest()


def rejects_jsonl(rejects: Iterable[Reject]) -> bytes:
    lines = [dumps_stable(r.to_json()) for r in sorted(rejects, key=lambda r: r.index)]
    return "".join(line + "\n" for line in lines).encode()


def rejects_path(shard_name: str) -> str:
    return f"{REJECTS_DIR}/{shard_name}.jsonl"


def dropped_path(shard_name: str) -> str:
    return f"{DROPPED_DIR}/{shard_name}.jsonl"


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _parquet_write(stream: Any, table: Any) -> None:
    import pyarrow.parquet as pq

    # Fixed settings so the bytes depend only on the data (and the pyarrow version).
    pq.write_table(
        table, stream, compression="zstd", compression_level=3, row_group_size=_PARQUET_ROW_GROUP,
        use_dictionary=False, write_statistics=True,
    )


def _audit_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("key", pa.string()), ("status", pa.string()), ("error", pa.string()),
        ("source", pa.string()), ("line", pa.int64()), ("id", pa.string()),
        ("prompt", pa.string()), ("negative_prompt", pa.string()), ("seed", pa.int64()),
        ("steps", pa.int64()), ("guidance", pa.float64()), ("sampler", pa.string()),
        ("width", pa.int64()), ("height", pa.int64()), ("num_images", pa.int64()),
        ("metadata", pa.string()), ("image_keys", pa.list_(pa.string())),
    ])


def audit_row(item: PlannedRow | Reject) -> dict[str, Any]:
    """One row of the per-shard audit parquet: every input, generated or rejected."""
    if isinstance(item, Reject):
        return {"key": item.key, "status": "rejected", "error": item.reason,
                "source": item.source, "line": item.line, "image_keys": []}
    r = item.request
    return {
        "key": item.key, "status": "success", "error": None, "source": item.source,
        "line": item.line, "id": r.id if r.id is not None else item.key, "prompt": r.prompt,
        "negative_prompt": r.negative_prompt, "seed": r.seed, "steps": r.steps,
        "guidance": float(r.guidance), "sampler": r.sampler, "width": r.width,
        "height": r.height, "num_images": r.num_images,
        "metadata": dumps_stable(r.metadata or {}), "image_keys": item.image_keys,
    }


_RECORD_COLUMNS = (
    ("key", "string"), ("id", "string"), ("prompt", "string"), ("negative_prompt", "string"),
    ("seed", "int64"), ("image_index", "int64"), ("num_images", "int64"), ("steps", "int64"),
    ("guidance", "float64"), ("sampler", "string"), ("width", "int64"), ("height", "int64"),
    ("model_name", "string"), ("model_hash", "string"), ("jaxgen_version", "string"),
    ("metadata", "string"),
    ("prompt_2", "string"),  # SDXL's second prompt (null where the row gives none)
    # SDXL's micro-conditioning pairs (null where the row gives none).
    *((name, "pair") for name in MICRO_CONDITIONING),
    # An SDXL refiner's aesthetic scores (null where the row gives none).
    ("aesthetic_score", "float64"), ("negative_aesthetic_score", "float64"),
    ("watermark", "string"),  # the invisible watermark (null where off)
    # Image-to-image and inpainting (null for text-to-image).
    ("init_image", "string"), ("init_image_sha256", "string"), ("mask_image", "string"),
    ("mask_image_sha256", "string"), ("strength", "float64"), ("resize", "string"),
)
_LABEL_COLUMNS = (("label", "string"), ("cls", "int64"))  # a labelled dataset's only


def _flat_record(record: ImageRecord) -> dict[str, Any]:
    # Parquet and imagefolder need one schema for all rows: ImageRecord.to_json already
    # stores user metadata (free-form keys) as a JSON string, as in WebDataset's KEY.json.
    return record.to_json()


class ShardWriter:
    """Base: collects a shard's images; `close()` writes what is left and lists the files.
    `labels`: a labelled dataset's class names (records carry label and cls), else ()."""

    def __init__(self, files: ShardFiles, shard_name: str, image_format: str,
                 labels: tuple[str, ...] = ()):
        self.files = files
        self.name = shard_name
        self.ext = IMAGE_EXTENSIONS[image_format]
        self.labels = labels

    def add_image(self, record: ImageRecord, data: bytes) -> None:
        raise NotImplementedError

    def close(self, items: list[PlannedRow | Reject]) -> None:
        """`items`: every input of the shard in key order (for the audit log)."""


class WebDatasetWriter(ShardWriter):
    """NAME.tar (KEY.ext + KEY.json + KEY.txt) and NAME.parquet, a row for every input."""

    def __init__(self, files: ShardFiles, shard_name: str, image_format: str,
                 labels: tuple[str, ...] = ()):
        super().__init__(files, shard_name, image_format, labels)
        self._stream = files.create(f"{shard_name}.tar")
        self._tar = tarfile.open(fileobj=self._stream, mode="w|", format=tarfile.GNU_FORMAT)

    def add_image(self, record: ImageRecord, data: bytes) -> None:
        _tar_add(self._tar, f"{record.key}.{self.ext}", data)
        _tar_add(self._tar, f"{record.key}.json", record.json_bytes())
        _tar_add(self._tar, f"{record.key}.txt", record.prompt.encode())
        if record.cls is not None:  # webdataset's class-index member, as loaders expect
            _tar_add(self._tar, f"{record.key}.cls", str(record.cls).encode())

    def close(self, items: list[PlannedRow | Reject]) -> None:
        import pyarrow as pa

        self._tar.close()
        self._stream.close()
        table = pa.Table.from_pylist([audit_row(i) for i in items], schema=_audit_schema())
        with self.files.create(f"{self.name}.parquet") as f:
            _parquet_write(f, table)


class ParquetImageWriter(ShardWriter):
    """NAME.parquet: a row per image, image as {bytes, path} (HF `datasets` Image feature)."""

    def __init__(self, files: ShardFiles, shard_name: str, image_format: str,
                 labels: tuple[str, ...] = ()):
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(files, shard_name, image_format, labels)
        columns = _RECORD_COLUMNS + (_LABEL_COLUMNS if labels else ())
        fields = [(name, pa.list_(pa.int64()) if kind == "pair" else getattr(pa, kind)())
                  for name, kind in columns]
        image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        self._schema = pa.schema(fields + [("image", image)],
                                 metadata=_hf_features_metadata(labels))
        self._stream = files.create(f"{shard_name}.parquet")
        self._writer = pq.ParquetWriter(
            self._stream, self._schema, compression="zstd", compression_level=3,
            use_dictionary=False,
        )
        self._rows: list[dict[str, Any]] = []

    def add_image(self, record: ImageRecord, data: bytes) -> None:
        # The image-to-image keys a text-to-image record leaves out are null columns here.
        row = {**dict.fromkeys(IMAGE_INPUT_KEYS), **_flat_record(record)}
        if not self.labels:
            for name in LABEL_KEYS:
                row.pop(name, None)
        # pyarrow drops a key the schema lacks without a word: a record field with no column
        # is this writer's bug, so it stops here rather than vanishing from the dataset.
        if extra := row.keys() - set(self._schema.names):
            raise ValueError(f"parquet has no column for record field(s) {sorted(extra)}")
        row["image"] = {"bytes": data, "path": f"{record.key}.{self.ext}"}
        self._rows.append(row)
        if len(self._rows) >= _PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def close(self, items: list[PlannedRow | Reject]) -> None:
        self._flush()
        self._writer.close()
        self._stream.close()


def _hf_features_metadata(labels: tuple[str, ...] = ()) -> dict[bytes, bytes]:
    """Schema metadata that makes HF `datasets` decode the `image` column as images (and a
    labelled dataset's `cls` as a ClassLabel of its names)."""
    value = {"string": "string", "int64": "int64", "float64": "float64"}
    features: dict[str, Any] = {
        # A pair: list<int64> as written (a fixed length would make HF cast the column).
        name: {"feature": {"dtype": "int64", "_type": "Value"}, "_type": "Sequence"}
        if kind == "pair" else
        {"dtype": value[kind], "_type": "Value"} for name, kind in _RECORD_COLUMNS
    }
    if labels:
        features["label"] = {"dtype": "string", "_type": "Value"}
        features["cls"] = {"names": list(labels), "_type": "ClassLabel"}
    features["image"] = {"_type": "Image"}
    return {b"huggingface": dumps_stable({"info": {"features": features}}).encode()}


class ImageFolderWriter(ShardWriter):
    """NAME/KEY.ext images and a metadata part _metadata/NAME.jsonl (file_name + record).

    HF `datasets` wants one metadata schema per split, so the parts are concatenated into
    the root `metadata.jsonl` when the job completes (resume.write_imagefolder_metadata).
    """

    def __init__(self, files: ShardFiles, shard_name: str, image_format: str,
                 labels: tuple[str, ...] = ()):
        super().__init__(files, shard_name, image_format, labels)
        self._lines: list[str] = []

    def add_image(self, record: ImageRecord, data: bytes) -> None:
        file_name = f"{self.name}/{record.key}.{self.ext}"
        self.files.write(file_name, data, listed=False)
        self._lines.append(dumps_stable({"file_name": file_name, **_flat_record(record)}))

    def close(self, items: list[PlannedRow | Reject]) -> None:
        body = "".join(line + "\n" for line in self._lines).encode()
        self.files.write(f"{IMAGEFOLDER_PARTS_DIR}/{self.name}.jsonl", body)


WRITERS: dict[str, type[ShardWriter]] = {
    "webdataset": WebDatasetWriter,
    "parquet": ParquetImageWriter,
    "imagefolder": ImageFolderWriter,
}
