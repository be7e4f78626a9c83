"""Reading a dataset jaxgen wrote back: (record, image bytes) of every image, shard by shard.

Each format is read the way it is laid out (see jaxgen.dataset.writers): a WebDataset tar
as a stream of KEY.ext / KEY.json members, a parquet shard by row batches, an imagefolder
shard through its metadata part. One image at a time, so memory stays flat however big the
dataset is. The report's gallery and `jaxgen eval --dataset` read through here.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jaxgen.dataset.records import IMAGE_EXTENSIONS
from jaxgen.dataset.writers import IMAGEFOLDER_PARTS_DIR

STATS_SUFFIX = "_stats.json"
_PARQUET_BATCH = 32  # rows of image bytes held at once
_IMAGE_SUFFIXES = {"." + ext for ext in IMAGE_EXTENSIONS.values()}


def shard_stats(out_dir: Path) -> list[dict[str, Any]]:
    """Stats of every complete shard (the stats file is written last), in shard order."""
    paths = sorted(
        p for p in out_dir.glob("*" + STATS_SUFFIX) if p.name[: -len(STATS_SUFFIX)].isdigit()
    )
    return [json.loads(p.read_text()) for p in paths]


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
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH):
        for row in batch.to_pylist():
            data = row.pop("image")["bytes"]
            yield row, data


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
            f"output_format {output_format!r}: jaxgen reads {', '.join(sorted(READERS))}"
        )
    for shard in shards:
        yield from READERS[output_format](out_dir, shard)


def dataset_images(out_dir: str | Path) -> Iterator[tuple[dict, bytes]]:
    """(record, image bytes) of every image in the complete shards of a `jaxgen generate`
    output, in shard order; FileNotFoundError if `out_dir` holds no complete shard."""
    out_dir = Path(out_dir)
    stats = shard_stats(out_dir)
    if not stats:
        raise FileNotFoundError(f"{out_dir}: no complete shard (no NNNNN{STATS_SUFFIX}); is "
                                "this the --out of a `jaxgen generate` run?")
    yield from images(out_dir, stats[0]["output_format"], [s["name"] for s in stats])
