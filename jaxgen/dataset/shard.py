"""Generate and write one shard: the unit of work, independent of Beam.

`generate_shard` takes every planned input of one shard (valid rows and rejects), runs the
generator over the valid ones, streams the encoded images into the shard writer, then
writes the rejects, the stats file last, and renames everything into place.
"""

from __future__ import annotations

import collections
import datetime
import logging
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.flags import ImageFlag, check_result, count_flags, flagged_reject, mark
from jaxgen.dataset.plan import PlannedRow, Reject, ShardItem
from jaxgen.dataset.records import ImageRecord, dumps_stable, encode_image, runtime_versions
from jaxgen.dataset.writers import WRITERS, ShardFiles, join, rejects_jsonl, rejects_path
from jaxgen.engine.grouping import SamplingSpec

if TYPE_CHECKING:
    from jaxgen.engine.types import GeneratedImage

log = logging.getLogger("jaxgen.dataset")


def stats_name(shard_name: str) -> str:
    return f"{shard_name}_stats.json"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _check_result(row: PlannedRow, index: int, result: GeneratedImage) -> None:
    got, want = result.request, row.request
    if result.index != index or got.prompt != want.prompt or got.seed != want.seed:
        raise RuntimeError(
            f"generator result for key {row.key}: got image {result.index} of prompt "
            f"{got.prompt[:40]!r} seed {got.seed}, expected image {index} of prompt "
            f"{want.prompt[:40]!r} seed {want.seed}; generate() must yield num_images results "
            "per request, in request order"
        )
    shape = getattr(result.image, "shape", None)
    if shape != (want.height, want.width, 3):
        raise RuntimeError(
            f"generator result for key {row.key}: image shape {shape}, expected "
            f"({want.height}, {want.width}, 3)"
        )


def generate_shard(
    items: Iterable[ShardItem],
    *,
    shard: int,
    shard_name: str,
    config: JobConfig,
    generator: Any,
    device_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write shard `shard_name` of the dataset and return its stats (also written, last).

    `generator` is a GeneratorLike: model_name, model_hash and generate(requests).
    """
    started, t0 = _now(), time.perf_counter()
    ordered = sorted(items, key=lambda item: item.index)
    planned = [item for item in ordered if isinstance(item, PlannedRow)]
    rejects = [item for item in ordered if isinstance(item, Reject)]
    files = ShardFiles(config.output, uuid.uuid4().hex)
    writer = WRITERS[config.output_format](files, shard_name, config.image_format)
    # Generation order: by program (SamplingSpec), then key, so a batching generator fills
    # whole batches. Deterministic either way; images are streamed to the writer, never held
    # beyond one row's (its images are checked together).
    order = sorted(planned, key=lambda r: (SamplingSpec.of(r.request), r.index))
    expected = [(row, i) for row in order for i in range(row.request.num_images)]
    images, seen = 0, 0
    row_results: list[GeneratedImage] = []  # one row's images, checked together (flags.py)
    flagged: list[ImageFlag] = []
    checked: dict[str, Reject] = {}  # rows rejected by the image checks, by key
    if order:
        results = iter(generator.generate([row.request for row in order]))
        for row, i in expected:
            result = next(results, None)
            if result is None:
                raise RuntimeError(
                    f"generator stopped after {seen} of {len(expected)} images in shard "
                    f"{shard_name}; it must yield num_images results per request"
                )
            _check_result(row, i, result)
            seen += 1
            row_results.append(result)
            if i + 1 < row.request.num_images:
                continue
            row_images, row_results = row_results, []
            flags = {r.index: f for r in row_images if (f := check_result(r)) is not None}
            flagged += flags.values()
            if flags and not config.keep_flagged:
                checked[row.key] = flagged_reject(row, flags)
                continue
            for result in row_images:
                record = ImageRecord.build(row, result.index, generator.model_name,
                                           generator.model_hash)
                record = mark(record, flags.get(result.index))
                data = encode_image(
                    result.image, config.image_format, config.image_quality, record.parameters()
                )
                writer.add_image(record, data)
                images += 1
        if next(results, None) is not None:
            raise RuntimeError(f"generator yielded more than {len(expected)} images")
    if checked:
        ordered = [checked.get(item.key, item) for item in ordered]
        planned = [item for item in ordered if isinstance(item, PlannedRow)]
        rejects = [item for item in ordered if isinstance(item, Reject)]
    writer.close(ordered)
    _write_rejects(files, shard_name, rejects)
    seconds = time.perf_counter() - t0
    stats = {
        "shard": shard,
        "name": shard_name,
        "count": len(ordered),
        "successes": len(planned),
        "failures": len(rejects),
        "failures_by_field": dict(sorted(collections.Counter(r.field for r in rejects).items())),
        "images": images,
        "images_flagged": len(flagged),
        "flagged_by_check": count_flags(flagged),
        "first_key": ordered[0].key if ordered else None,
        "last_key": ordered[-1].key if ordered else None,
        "model_name": generator.model_name,
        "model_hash": generator.model_hash,
        "device_info": device_info,
        "versions": runtime_versions(),
        "output_format": config.output_format,
        "image_format": config.image_format,
        "files": files.digests(),
        "bulk_files": dict(files.bulk),
        "start_time": started,
        "end_time": _now(),
        "duration_s": round(seconds, 3),
        "images_per_s": round(images / seconds, 3) if seconds > 0 else None,
    }
    files.write(stats_name(shard_name), (dumps_stable(stats) + "\n").encode())
    files.commit()
    log.info(
        "shard %s: %d rows, %d images, %d rejected, %.1f s (%.2f img/s)",
        shard_name, len(ordered), images, len(rejects), seconds, images / max(seconds, 1e-9),
    )
    return stats


def _write_rejects(files: ShardFiles, shard_name: str, rejects: list[Reject]) -> None:
    if rejects:
        files.write(rejects_path(shard_name), rejects_jsonl(rejects))
        return
    # A rejects file left by an earlier dry run over another manifest version: remove it
    # before the stats make the shard complete.
    stale = join(files.output, rejects_path(shard_name))
    if FileSystems.exists(stale):
        FileSystems.delete([stale])


def write_rejects_only(output: str, shard_name: str, rejects: Iterable[Reject]) -> None:
    """What a dry run writes for a shard: its rejects file, same bytes as a real run's."""
    files = ShardFiles(output, uuid.uuid4().hex)
    files.write(rejects_path(shard_name), rejects_jsonl(rejects))
    files.commit()
