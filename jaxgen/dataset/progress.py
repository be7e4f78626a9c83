"""Cheap progress figures for a running job: rows to do, shards and images done."""

from __future__ import annotations

import json

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.manifest import match_manifest
from jaxgen.dataset.shard import stats_name
from jaxgen.dataset.writers import join


def count_rows(config: JobConfig) -> int:
    """Rows in the manifest, counted by lines (parquet: its metadata), without parsing."""
    total = 0
    for file in match_manifest(config.manifest_patterns, config.manifest_format):
        with FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            if file.format == "parquet":
                import pyarrow.parquet as pq

                total += pq.ParquetFile(f).metadata.num_rows
                continue
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            total += lines - (1 if file.format in ("csv", "tsv") else 0)
    return total


def completed_shards(output: str, seen: dict[str, int] | None = None) -> tuple[int, int]:
    """(shards complete, images in them), from the stats files written last per shard.
    `seen` caches the image count of stats files already read (they never change)."""
    seen = {} if seen is None else seen
    for meta in FileSystems.match([join(output, stats_name("*"))])[0].metadata_list:
        if meta.path not in seen:
            with FileSystems.open(meta.path,
                                  compression_type=CompressionTypes.UNCOMPRESSED) as f:
                seen[meta.path] = int(json.loads(f.read().decode()).get("images", 0))
    return len(seen), sum(seen.values())
