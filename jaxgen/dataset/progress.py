"""Cheap progress figures for a running job: images to do, shards and images done."""

from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.manifest import iter_rows, match_manifest
from jaxgen.dataset.safe_io import read_bytes
from jaxgen.dataset.shard import stats_name
from jaxgen.dataset.writers import join


def count_images(config: JobConfig) -> int:
    """Images the manifest asks for: each row's num_images, else the job's default, else 1.

    An estimate for a progress bar, not a plan: a row with a bad num_images counts none,
    a row rejected for another reason counts its images.
    """
    default = config.defaults.get("num_images") or 1
    total = 0
    for file in match_manifest(config.manifest_patterns, config.manifest_format):
        for row in iter_rows(file, config.max_line_bytes):
            total += _num_images((row.fields or {}).get("num_images"), default)
    return total


def _num_images(value: object, default: int) -> int:
    try:
        n = int(value) if value not in (None, "") else default  # CSV cells are strings
    except (TypeError, ValueError):
        return 0
    return max(n, 0)


def completed_shards(output: str, seen: dict[str, int] | None = None) -> tuple[int, int]:
    """(shards complete, images in them), from the stats files written last per shard.
    `seen` caches the image count of stats files already read (they never change)."""
    seen = {} if seen is None else seen
    for meta in FileSystems.match([join(output, stats_name("*"))])[0].metadata_list:
        if meta.path not in seen:
            try:
                stats = json.loads((read_bytes(output, meta.path) or b"").decode())
                seen[meta.path] = int(stats.get("images", 0))
            except (ValueError, AttributeError):
                continue  # unreadable (the run's start names it and regenerates that shard)
    return len(seen), sum(seen.values())
