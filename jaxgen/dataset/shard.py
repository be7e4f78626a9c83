"""Generate and write one shard: the unit of work, independent of Beam.

`generate_shard` takes every planned input of one shard (valid rows and rejects), runs the
generator over the valid ones, streams the encoded images into the shard writer, then
writes the rejects (those of planning, and rows that failed later, each with its stage), the
stats file last, and renames everything into place.
"""

from __future__ import annotations

import collections
import datetime
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.filter import dropped_entry, judge
from jaxgen.dataset.flags import ImageFlag, check_result, count_flags, flagged_reject, mark
from jaxgen.dataset.plan import PlannedRow, Reject, ShardItem
from jaxgen.dataset.records import ImageRecord, dumps_stable, encode_image, runtime_versions
from jaxgen.dataset.writers import (
    WRITERS,
    ShardFiles,
    dropped_path,
    join,
    rejects_jsonl,
    rejects_path,
)
from jaxgen.engine.grouping import SamplingSpec
from jaxgen.images import ImageInputError
from jaxgen.requests import RequestError

if TYPE_CHECKING:
    from jaxgen.engine.types import GeneratedImage

log = logging.getLogger("jaxgen.dataset")
# After a batch fails, the rows from the first not yet made are retried one by one, this many
# batches' worth (more than a generator keeps in flight), then batching resumes after them.
ISOLATION_WINDOW = 8


def stats_name(shard_name: str) -> str:
    return f"{shard_name}_stats.json"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class GeneratorContractError(RuntimeError):
    """The generator broke its contract (order, count, shape): the job's fault, not a row's."""


def _check_result(row: PlannedRow, index: int, result: GeneratedImage) -> None:
    got, want = result.request, row.request
    if result.index != index or got.prompt != want.prompt or got.seed != want.seed:
        raise GeneratorContractError(
            f"generator result for key {row.key}: got image {result.index} of prompt "
            f"{got.prompt[:40]!r} seed {got.seed}, expected image {index} of prompt "
            f"{want.prompt[:40]!r} seed {want.seed}; generate() must yield num_images results "
            "per request, in request order"
        )
    shape = getattr(result.image, "shape", None)
    size = (want.height or got.height, want.width or got.width)  # None: the init image's own
    if shape != (*size, 3):
        raise GeneratorContractError(
            f"generator result for key {row.key}: image shape {shape}, expected "
            f"({size[0]}, {size[1]}, 3)"
        )


def _generation_order(row: PlannedRow) -> tuple[Any, ...]:
    """By program, then key, so a batching generator fills whole batches. Image-to-image
    rows come after text-to-image ones: their size may be known only once read."""
    r = row.request
    if r.init_image is None:
        return (0, SamplingSpec.of(r), row.index)
    return (1, r.mode, r.steps, r.sampler, row.index)


def _stage_of(error: RequestError) -> str:
    if isinstance(error, ImageInputError):
        return "image"
    return "tokenize" if error.field in ("prompt", "negative_prompt") else "generate"


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

    `generator` is a GeneratorLike: model_name, model_hash and generate(requests, on_reject=).
    A row that fails on its way to an image (rejected by the generator, its batch failing on
    the device and again alone, its record or image not encodable) becomes a reject with its
    stage; the shard goes on.
    """
    started, t0 = _now(), time.perf_counter()
    ordered = sorted(items, key=lambda item: item.index)
    planned = [item for item in ordered if isinstance(item, PlannedRow)]
    files = ShardFiles(config.output, uuid.uuid4().hex)
    writer = WRITERS[config.output_format](files, shard_name, config.image_format,
                                           config.labels)
    late: dict[int, Reject] = {}  # rows rejected after planning, by index

    def reject(row: PlannedRow, field: str, reason: str, stage: str) -> None:
        late[row.index] = Reject.of(row, field, reason, stage)

    # Images are streamed to the writer a row at a time, never held for the whole shard; a
    # row's images are checked together (flags.py) before any is written.
    images = 0
    flagged: list[ImageFlag] = []
    dropped: list[dict[str, Any]] = []
    for row, results in _generate_rows(generator, sorted(planned, key=_generation_order),
                                       reject):
        flags = {r.index: f for r in results if (f := check_result(r)) is not None}
        flagged += flags.values()
        if flags and not config.keep_flagged:
            late[row.index] = flagged_reject(row, flags)
            continue
        try:
            encoded = [_encode(row, result, generator, config, flags.get(result.index))
                       for result in results]
        except Exception as e:  # the row's own text, metadata or pixels: deterministic
            reject(row, "image", f"cannot be encoded ({type(e).__name__}: {e})", "encode")
            continue
        for result, (record, data) in zip(results, encoded, strict=True):
            verdict = judge(config.filter, result.image, record) if config.filter else None
            if verdict is not None and not verdict.keep:
                dropped.append(dropped_entry(record, verdict))
                continue
            writer.add_image(record, data)
            images += 1
    final = [late.get(item.index, item) for item in ordered]
    rejects = [item for item in final if isinstance(item, Reject)]
    writer.close(final)
    _write_rejects(files, shard_name, rejects)
    if config.filter:  # written even when empty: the filter ran over every image
        files.write(dropped_path(shard_name),
                    "".join(dumps_stable(d) + "\n" for d in dropped).encode())
    seconds = time.perf_counter() - t0
    stats = {
        "shard": shard,
        "name": shard_name,
        "count": len(final),
        "successes": len(final) - len(rejects),
        "failures": len(rejects),
        "failures_by_field": dict(sorted(collections.Counter(r.field for r in rejects).items())),
        "failures_by_stage": dict(sorted(collections.Counter(r.stage for r in rejects).items())),
        "images": images,
        "images_flagged": len(flagged),
        "flagged_by_check": count_flags(flagged),
        **({"images_dropped": len(dropped)} if config.filter else {}),
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


def _encode(row: PlannedRow, result: GeneratedImage, generator: Any, config: JobConfig,
            flag: ImageFlag | None = None) -> tuple[ImageRecord, bytes]:
    """One image's record (carrying its flag, if kept flagged) and file bytes; raises on what
    the row itself makes unwritable."""
    inputs = getattr(result, "inputs", None)
    record = mark(ImageRecord.build(
        row, result.index, generator.model_name, generator.model_hash,
        generated=result.request, inputs=inputs,
        resize=config.resize if inputs is not None else None,
        watermark=getattr(result, "watermark", None),
    ), flag)
    if config.labels:
        record = record.with_label(config.labels)
    record.json_bytes()  # what every writer stores: fail here, for this row, not in the writer
    record.prompt.encode()
    data = encode_image(
        result.image, config.image_format, config.image_quality, record.parameters()
    )
    return record, data


RowReject = Callable[[PlannedRow, str, str, str], None]


def _generate_rows(generator: Any, rows: list[PlannedRow],
                   reject: RowReject) -> Iterator[tuple[PlannedRow, list[GeneratedImage]]]:
    """Yield (row, its images) in order. A failure of the generator is retried row by row
    over the rows it may have come from (ISOLATION_WINDOW batches); a row that fails alone is
    rejected. A failure that no row, or every one of several rows, reproduces alone is raised:
    the device's, not a row's, so the runner retries the shard. Each failure either raises or
    moves past its window, so the retries are bounded by the shard's rows."""
    window = ISOLATION_WINDOW * max(1, int(getattr(generator, "batch_size", 1) or 1))
    start = 0
    while start < len(rows):
        done = start
        try:
            for position, results in _rows_of(generator, rows[start:], reject):
                yield rows[start + position], results
                done = start + position + 1
            return
        except GeneratorContractError:
            raise
        except Exception as error:
            log.warning("a batch failed (%s: %s); retrying its rows one by one",
                        type(error).__name__, error)
            suspects = rows[done:done + window]
            failed: list[tuple[PlannedRow, Exception]] = []
            for row in suspects:
                try:
                    yield from ((row, res) for _, res in _rows_of(generator, [row], reject))
                except GeneratorContractError:
                    raise
                except Exception as alone:
                    failed.append((row, alone))
            # None failing alone, or all of several: the device's failure, not a row's.
            if not failed or (len(failed) == len(suspects) > 1):
                raise error
            for row, alone in failed:
                reject(row, "request", f"failed to generate ({type(alone).__name__}: {alone})",
                       "generate")
            start = done + window


def _rows_of(generator: Any, rows: list[PlannedRow],
             reject: RowReject) -> Iterator[tuple[int, list[GeneratedImage]]]:
    """One generate() call over `rows`: (position, images) for each row it makes; the rows it
    rejects (on_reject, called before any later row's image) go to `reject`."""
    rejected: set[int] = set()

    def on_reject(position: int, request: Any, error: RequestError) -> None:
        rejected.add(position)
        reject(rows[position], error.field, str(error), _stage_of(error))

    results = generator.generate([row.request for row in rows], on_reject=on_reject)
    position, images = 0, []
    for result in results:
        while position in rejected:
            position += 1
        if position >= len(rows):
            raise GeneratorContractError(f"generator yielded more images than the "
                                         f"{len(rows)} requests ask for")
        row = rows[position]
        _check_result(row, len(images), result)
        images.append(result)
        if len(images) == row.request.num_images:
            yield position, images
            position, images = position + 1, []
    while position in rejected:
        position += 1
    if position < len(rows):
        raise GeneratorContractError(
            f"generator stopped at request {position} of {len(rows)} (key {rows[position].key})"
            "; it must yield num_images results per request, or report it through on_reject"
        )


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
