"""The gallery's thumbnails: every shard streamed once, in shard order, up to a limit.

Each format is read the way it is laid out (see jaxgen.dataset.writers): a WebDataset tar
as a stream of KEY.ext / KEY.json members, a parquet shard by row batches of its `image`
column, an imagefolder shard through its metadata part. Only one image is decoded at a
time, so memory stays flat however big the dataset is.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
import tarfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jaxgen.dataset.records import IMAGE_EXTENSIONS
from jaxgen.dataset.writers import IMAGEFOLDER_PARTS_DIR

THUMBS_DIR = "_report/thumbs"
_PARQUET_BATCH = 32  # rows of image bytes held at once
_IMAGE_SUFFIXES = {"." + ext for ext in IMAGE_EXTENSIONS.values()}


@dataclasses.dataclass(frozen=True)
class Thumbnail:
    key: str
    prompt: str
    seed: int | None
    path: str  # relative to the output directory, "/"-separated (a URL path)


def _webdataset(out_dir: Path, shard: str) -> Iterator[tuple[dict[str, Any], bytes]]:
    image: tuple[str, bytes] | None = None
    with tarfile.open(out_dir / f"{shard}.tar", mode="r|") as tar:
        for member in tar:
            stem, dot, suffix = member.name.rpartition(".")
            f = tar.extractfile(member)
            if f is None or not dot:
                continue
            if "." + suffix in _IMAGE_SUFFIXES:
                image = (stem, f.read())  # the writer puts KEY.ext just before KEY.json
            elif suffix == "json" and image is not None and image[0] == stem:
                yield json.loads(f.read()), image[1]
                image = None


def _parquet(out_dir: Path, shard: str) -> Iterator[tuple[dict[str, Any], bytes]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(out_dir / f"{shard}.parquet")
    for batch in parquet.iter_batches(
        batch_size=_PARQUET_BATCH, columns=["key", "prompt", "seed", "image"]
    ):
        for row in batch.to_pylist():
            yield row, row["image"]["bytes"]


def _imagefolder(out_dir: Path, shard: str) -> Iterator[tuple[dict[str, Any], bytes]]:
    with (out_dir / IMAGEFOLDER_PARTS_DIR / f"{shard}.jsonl").open() as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                yield row, (out_dir / row["file_name"]).read_bytes()


READERS = {"webdataset": _webdataset, "parquet": _parquet, "imagefolder": _imagefolder}


def images(out_dir: Path, output_format: str, shards: list[str]) -> Iterator[tuple[dict, bytes]]:
    """(record, image bytes) of every image of `shards`, in order."""
    if output_format not in READERS:
        raise ValueError(
            f"output_format {output_format!r}: the report reads {', '.join(sorted(READERS))}"
        )
    for shard in shards:
        yield from READERS[output_format](out_dir, shard)


def make_thumbnail(data: bytes, size: int) -> bytes:
    """A JPEG at most `size` pixels on its long side (never enlarged).

    JPEG because it encodes ~20x faster than WebP here; no chroma subsampling, so the
    edges of small flat-coloured images stay clean.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (size, size))  # JPEG decodes at a reduced scale: much cheaper
        thumb = image.convert("RGB")
    thumb.thumbnail((size, size))
    out = io.BytesIO()
    thumb.save(out, "JPEG", quality=90, subsampling=0)
    return out.getvalue()


def _write_thumbnail(path: Path, data: bytes, size: int) -> None:
    path.write_bytes(make_thumbnail(data, size))


def write_thumbnails(
    out_dir: Path, output_format: str, shards: list[str], *, size: int, limit: int
) -> list[Thumbnail]:
    """Thumbnails of the first `limit` images under OUT/_report/thumbs/; stops reading there.

    Pillow decodes and encodes outside the GIL, so a few threads share the work; at most
    `2 * threads` images wait in memory.
    """
    thumbs_dir = out_dir / THUMBS_DIR
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    made: list[Thumbnail] = []
    if limit <= 0:
        return made
    threads = min(8, os.cpu_count() or 1)
    pending: collections.deque[Future[None]] = collections.deque()
    with ThreadPoolExecutor(threads) as pool:
        for record, data in images(out_dir, output_format, shards):
            key = str(record["key"])
            pending.append(pool.submit(_write_thumbnail, thumbs_dir / f"{key}.jpg", data, size))
            made.append(Thumbnail(key, str(record.get("prompt", "")), record.get("seed"),
                                  f"{THUMBS_DIR}/{key}.jpg"))
            if len(pending) >= 2 * threads:
                pending.popleft().result()
            if len(made) >= limit:
                break
        for future in pending:
            future.result()  # raises the first error, if any
    return made
