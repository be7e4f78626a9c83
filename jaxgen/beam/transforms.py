"""Composite PTransforms: ReadManifest -> PlanShards -> GenerateShards -> WriteSummary.

    manifest = p | ReadManifest(config)           # {"files", "plan", "duplicates"}
    planned = manifest | PlanShards(config)       # {"items": (shard, PlannedRow|Reject), "plan"}
    stats = planned | GenerateShards(spec, config)
    {"stats": stats, "plan": planned["plan"]} | WriteSummary(config)
    # or, for a dry run:  planned | ReportPlan(config)

Memory: rows are streamed file by file; the counting pass and the duplicate-id pass read
the files themselves (not the rows of the main pass), so the main pass never waits on a
side input computed from its own output, which would make the runner buffer every row.
Only keys + requests cross the shuffle that groups rows into shards; images are made and
written inside the one DoFn call that owns a shard.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from jaxgen.dataset import resume
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.manifest import ManifestError, ManifestFile, iter_rows, match_manifest, scan_ids
from jaxgen.dataset.plan import Plan, PlannedRow, Reject
from jaxgen.dataset.rows import row_to_request
from jaxgen.dataset.shard import generate_shard, stats_name, write_rejects_only
from jaxgen.dataset.writers import join
from jaxgen.images import DEFAULT_RESIZE, ImageInputError, load_image_inputs
from jaxgen.requests import ConfigError, GenerationRequest, RequestError, stable_seed
from jaxgen.weights.tokenizer import tokenize

NAMESPACE = "jaxgen"
_Position = tuple[int, int, int]  # (file index, row index, line)
_ID_BUCKETS = 256
_ID_PENDING = 65536


def _counter(name: str) -> Any:
    return Metrics.counter(NAMESPACE, name)


class _ScanFileFn(beam.DoFn):
    """The cheap first pass over one file: ("counts", its row count), ("ids", chunks of ids).

    Ids leave in chunks per hash bucket rather than one element per id: a million tiny
    elements cost the runner a million buffered objects (~400 MB in FnApiRunner), a few
    hundred chunks cost only their bytes.
    """

    def __init__(self, max_line_bytes: int):
        self._max = max_line_bytes

    def process(self, file: ManifestFile) -> Iterator[Any]:
        chunks: dict[int, list[tuple[str, int, int, int]]] = {}
        rows = pending = 0
        for row_index, line, row_id in scan_ids(file, self._max):
            rows += 1
            if row_id is None or not _storable(row_id):
                continue  # an id UTF-8 cannot hold rejects its row when it is parsed
            bucket = zlib.crc32(row_id.encode()) % _ID_BUCKETS
            chunks.setdefault(bucket, []).append((row_id, file.index, row_index, line))
            pending += 1
            if pending >= _ID_PENDING:  # bounds this DoFn's memory, whatever the file size
                yield from self._flush(chunks)
                pending = 0
        yield from self._flush(chunks)
        yield "counts", (file.index, file.path, rows)

    @staticmethod
    def _flush(chunks: dict[int, list[Any]]) -> Iterator[Any]:
        for bucket in sorted(chunks):
            yield "ids", (bucket, chunks[bucket])
        chunks.clear()


def _storable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _of_kind(element: tuple[str, Any], kind: str) -> list[Any]:
    return [element[1]] if element[0] == kind else []


def _later_duplicates(kv: tuple[int, Iterable[list[Any]]]) -> Iterator[tuple[tuple[int, int], Any]]:
    """For one id bucket: every position of an id except the first, with that first one."""
    first: dict[str, _Position] = {}
    later: list[tuple[str, _Position]] = []
    for chunk in kv[1]:
        for row_id, *pos in chunk:
            position = tuple(pos)
            seen = first.get(row_id)
            if seen is None:
                first[row_id] = position
            else:
                first[row_id], loser = min(seen, position), max(seen, position)
                later.append((row_id, loser))
    for row_id, (file_index, row_index, _) in later:
        yield (file_index, row_index), (row_id, first[row_id])


class ReadManifest(beam.PTransform):
    """PBegin -> {"files": ManifestFile, "plan": singleton Plan, "duplicates": later dups}.

    Files are matched when the pipeline is built (like Beam's own file sources), so a
    pattern that matches nothing fails before any worker starts.
    """

    def __init__(self, config: JobConfig, files: list[ManifestFile] | None = None):
        super().__init__()
        self._config = config
        self._files = files

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        cfg = self._config
        listed = self._files or match_manifest(cfg.manifest_patterns, cfg.manifest_format)
        # Reshuffle: spread the files over workers instead of reading them all in the
        # bundle that created the list.
        files = pbegin | "Files" >> beam.Create(listed) | "Spread" >> beam.Reshuffle()
        # One output of (kind, value) pairs split by two Maps, not tagged outputs: Beam's
        # DaskRunner hands every tagged output of a ParDo to each of its consumers.
        scanned = files | "Scan" >> beam.ParDo(_ScanFileFn(cfg.max_line_bytes))
        plan = (
            scanned
            | "Counts" >> beam.FlatMap(_of_kind, "counts")
            | "AllCounts" >> beam.combiners.ToList()
            | "Plan" >> beam.Map(Plan.from_counts, cfg.shard_size)
        )
        duplicates = (
            scanned
            | "Ids" >> beam.FlatMap(_of_kind, "ids")
            | "IdsByBucket" >> beam.GroupByKey()
            | "LaterDuplicates" >> beam.FlatMap(_later_duplicates)
        )
        return {"files": files, "plan": plan, "duplicates": duplicates}


def _image_error(request: GenerationRequest, config: JobConfig) -> tuple[str, str, str] | None:
    """A dry run reads each init image and mask as the generator will (then drops them)."""
    size = None if request.height is None else (request.height, request.width)
    try:
        load_image_inputs(request.init_image, request.mask_image, size=size,
                          size_multiple=config.required_multiple, resize=config.resize)
    except ImageInputError as e:
        return e.field, str(e), "image"
    return None


class _PlanFileFn(beam.DoFn):
    """The main pass over one file: each row -> (shard, PlannedRow | Reject).

    A dry run also does here what a real run's generator does and reports through on_reject:
    it tokenizes each valid row's prompts (given the model's tokenizer folder) and reads its
    init image and mask, so it finds the rejects a real run would.
    """

    def __init__(self, config: JobConfig, tokenizer_dir: str | None = None):
        self._config = config
        self._tokenizer_dir = tokenizer_dir
        self._tokenizer: Any = None
        self._read = _counter("rows_read")
        self._valid = _counter("rows_valid")
        self._rejected = _counter("rows_rejected")

    def setup(self) -> None:
        if self._tokenizer_dir is not None:
            from jaxgen.weights.model_dir import load_tokenizer  # imports JAX: only when used

            self._tokenizer = load_tokenizer(Path(self._tokenizer_dir))

    def _tokenize_error(self, request: GenerationRequest) -> tuple[str, str, str] | None:
        for field in ("prompt", "negative_prompt"):
            try:
                tokenize(self._tokenizer, [getattr(request, field)])
            except Exception as e:  # the tokenizer's failure on this row's text
                reason = f"cannot be tokenized ({type(e).__name__}: {e})"
                return field, str(RequestError(field, getattr(request, field), reason)), \
                    "tokenize"
        return None

    def process(self, file: ManifestFile, plan: Plan, duplicates: dict) -> Iterator[Any]:
        cfg, layout = self._config, plan.layout
        offset, n = plan.offset(file.index), 0
        for raw in iter_rows(file, cfg.max_line_bytes):
            n += 1
            index = offset + raw.row_index
            key, shard = layout.key(index), layout.shard_of(index)
            error = raw.error
            if error is None:
                try:
                    request = row_to_request(
                        raw.fields or {}, cfg, text_values=raw.text_values,
                        fallback_seed=functools.partial(stable_seed, cfg.job_seed, place=index),
                        source=file.path,
                    )
                    dup = duplicates.get((file.index, raw.row_index))
                    if dup is not None:
                        row_id, (first_file, _, first_line) = dup
                        raise RequestError(
                            "id", row_id, f"duplicates the id of line {first_line} of "
                            f"{plan.path(first_file)} (the first row with an id keeps it)"
                        )
                except RequestError as e:
                    error = (e.field, str(e))
                except (TypeError, ValueError, OverflowError, RecursionError) as e:
                    # Unforeseen, but this row's alone: it must not stop the job.
                    error = ("row", f"cannot be read ({type(e).__name__}: {e})")
            if error is None and self._tokenizer is not None:
                error = self._tokenize_error(request)
            if error is None and cfg.dry_run and request.init_image is not None:
                error = _image_error(request, cfg)
            if error is None:
                item: PlannedRow | Reject = PlannedRow(
                    key, index, shard, file.path, raw.line, request
                )
                self._valid.inc()
            else:
                item = Reject(key, index, shard, file.path, raw.line, raw.raw, *error)
                self._rejected.inc()
            yield shard, item
        self._read.inc(n)
        if n != plan.rows(file.index):
            raise ManifestError(
                f"manifest file {file.path!r}: counted {plan.rows(file.index)} rows, then read "
                f"{n}; it changed while the job ran"
            )


def tokenizer_dir(spec: Any) -> str | None:
    """The tokenizer folder of a spec's model directory (`model_path`), if it has one: an
    SDXL refiner's only one is tokenizer_2."""
    root = getattr(spec, "model_path", None)
    if root is None:
        return None
    folder = Path(root) / "tokenizer"
    return str(folder if folder.is_dir() else Path(root) / "tokenizer_2")


class PlanShards(beam.PTransform):
    """ReadManifest's output -> {"items": (shard, PlannedRow | Reject), "plan": Plan}.

    A dry run given the generator spec also tokenizes every row's prompts with the model's
    tokenizer (no weights are loaded), so it finds every reject a real run's plan would.
    """

    def __init__(self, config: JobConfig, spec: Any = None):
        super().__init__()
        self._config = config
        self._tokenizer_dir = tokenizer_dir(spec) if config.dry_run else None

    def expand(self, manifest: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        items = manifest["files"] | "PlanRows" >> beam.ParDo(
            _PlanFileFn(self._config, self._tokenizer_dir),
            plan=beam.pvalue.AsSingleton(manifest["plan"]),
            duplicates=beam.pvalue.AsDict(manifest["duplicates"]),
        )
        return {"items": items, "plan": manifest["plan"]}


@dataclasses.dataclass
class _Loaded:
    """What one worker process keeps: the generator and the device info of its spec.

    A plain class so `shared.Shared` can hold a weak reference to it.
    """

    generator: Any
    device_info: dict[str, Any] | None


class _NoModel:
    """The generator of a shard whose every row was rejected: no model is loaded for it."""

    model_name = None
    model_hash = None


_NOTHING_TO_GENERATE = _Loaded(_NoModel(), None)


class _GenerateShardFn(beam.DoFn):
    """One call = one whole shard. The generator is built once per worker process."""

    def __init__(self, spec: Any, config: JobConfig):
        self._spec = spec
        self._config = config
        self._shared = shared.Shared()
        self._loaded: _Loaded | None = None
        self._written = _counter("shards_written")
        self._skipped = _counter("shards_skipped")
        self._images = _counter("images_generated")

    def _load(self) -> _Loaded:
        generator = self._spec.build()
        # The spec may know its devices; else the built generator (which has them) may.
        info = getattr(self._spec, "device_info", None) or getattr(generator, "device_info", None)
        return _Loaded(generator, info() if callable(info) else None)

    def process(self, element: tuple[int, Any], plan: Plan) -> Iterator[dict[str, Any]]:
        shard, items = element
        name = plan.layout.shard_name(shard)
        output = self._config.output
        if resume.shard_is_complete(output, join(output, stats_name(name))):
            # A retried bundle, or another attempt finished this shard meanwhile.
            self._skipped.inc()
            return
        if not any(isinstance(item, PlannedRow) for item in items):
            loaded = _NOTHING_TO_GENERATE  # rejects and stats only: a job of rejects loads none
        else:
            if self._loaded is None:
                # Lazily, not in setup(): a rerun of a finished job must not load the model.
                self._loaded = self._shared.acquire(self._load)
            loaded = self._loaded
        stats = generate_shard(
            items, shard=shard, shard_name=name, config=self._config,
            generator=loaded.generator, device_info=loaded.device_info,
        )
        self._written.inc()
        self._images.inc(stats["images"])
        yield stats


class _CompleteShardsFn(beam.DoFn):
    def __init__(self, output: str):
        self._output = output
        self._skipped = _counter("shards_skipped")

    def process(self, plan: Plan) -> Iterator[frozenset[int]]:
        done = resume.complete_shards(self._output, plan.layout.num_shards)
        self._skipped.inc(len(done))
        yield frozenset(done)


def with_resize(spec: Any, resize: str) -> Any:
    """The spec whose generator fits init images by the job's `resize` policy: the generator
    takes the policy when it is built (a `resize` field of the spec)."""
    if dataclasses.is_dataclass(spec) and any(f.name == "resize"
                                              for f in dataclasses.fields(spec)):
        return dataclasses.replace(spec, resize=resize)
    if resize != DEFAULT_RESIZE:
        raise ConfigError(f"resize {resize!r}: the generator spec {type(spec).__name__} has no "
                          "resize setting, so it would fit init images its own way")
    return spec


class GenerateShards(beam.PTransform):
    """PlanShards' output -> one stats dict per shard written by this run.

    Complete shards are dropped before the shuffle; the rest are grouped by shard (keys
    and requests only) and each group is generated and written by one DoFn call.
    """

    def __init__(self, spec: Any, config: JobConfig):
        super().__init__()
        self._spec = with_resize(spec, config.resize)
        self._config = config

    def expand(self, planned: dict[str, beam.PCollection]) -> beam.PCollection:
        plan = planned["plan"]
        complete = plan | "CompleteShards" >> beam.ParDo(_CompleteShardsFn(self._config.output))
        hosts, me = self._config.host_count, self._config.host_index
        return (
            planned["items"]
            | "DropCompleteAndOtherHosts" >> beam.Filter(
                lambda kv, done: kv[0] not in done and kv[0] % hosts == me,
                done=beam.pvalue.AsSingleton(complete),
            )
            | "GroupByShard" >> beam.GroupByKey()
            | "Generate" >> beam.ParDo(
                _GenerateShardFn(self._spec, self._config), plan=beam.pvalue.AsSingleton(plan)
            )
        )


class _SummaryFn(beam.DoFn):
    def __init__(self, config: JobConfig, repaired: dict[str, str] | None = None):
        self._config = config
        self._repaired = dict(repaired or {})

    def process(self, plan: Plan, written: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        num = plan.layout.num_shards
        # With several hosts, only the one that finds every shard complete summarises.
        if self._config.host_count == 1 or len(resume.complete_shards(
                self._config.output, num)) == num:
            yield resume.write_summary(self._config, plan.layout, plan.file_rows, written,
                                       self._repaired)


class WriteSummary(beam.PTransform):
    """{"stats", "plan"} -> the `_dataset.json` summary, written once every shard is done.

    repaired: {shard name: what was wrong} for shards found damaged when the run began."""

    def __init__(self, config: JobConfig, repaired: dict[str, str] | None = None):
        super().__init__()
        self._config = config
        self._repaired = repaired

    def expand(self, inputs: dict[str, beam.PCollection]) -> beam.PCollection:
        return inputs["plan"] | "Summary" >> beam.ParDo(
            _SummaryFn(self._config, self._repaired), written=beam.pvalue.AsList(inputs["stats"])
        )


class _ShardCounts(beam.CombineFn):
    """Per shard: rows, valid, rejected, images planned, rejects by field."""

    def create_accumulator(self) -> list[Any]:
        return [0, 0, 0, 0, Counter()]

    def add_input(self, acc: list[Any], item: PlannedRow | Reject) -> list[Any]:
        acc[0] += 1
        if isinstance(item, PlannedRow):
            acc[1] += 1
            acc[3] += item.request.num_images
        else:
            acc[2] += 1
            acc[4][item.field] += 1
        return acc

    def merge_accumulators(self, accs: Any) -> list[Any]:
        out = self.create_accumulator()
        for acc in accs:
            for i in range(4):
                out[i] += acc[i]
            out[4].update(acc[4])
        return out

    def extract_output(self, acc: list[Any]) -> dict[str, Any]:
        keys = ("rows", "valid", "rejected", "images")
        return {**dict(zip(keys, acc[:4], strict=True)), "rejects_by_field": dict(acc[4])}


class _WriteRejectsFn(beam.DoFn):
    def __init__(self, output: str):
        self._output = output

    def process(self, element: tuple[int, Any], plan: Plan) -> Iterator[int]:
        shard, rejects = element
        write_rejects_only(self._output, plan.layout.shard_name(shard), rejects)
        yield shard


class _ReportFn(beam.DoFn):
    def __init__(self, config: JobConfig):
        self._config = config

    def process(self, plan: Plan, counts: dict, rejects_written: list) -> Iterator[dict[str, Any]]:
        done = resume.complete_shards(self._config.output, plan.layout.num_shards)
        yield resume.plan_report(self._config, plan.layout, plan.file_rows, counts, done)


class ReportPlan(beam.PTransform):
    """The dry run: PlanShards' output -> `_plan.json` (and `_rejects/`), no generation.

    Only per-shard counters and the rejects cross a shuffle, so it streams any manifest.
    """

    def __init__(self, config: JobConfig):
        super().__init__()
        self._config = config

    def expand(self, planned: dict[str, beam.PCollection]) -> beam.PCollection:
        items, plan = planned["items"], planned["plan"]
        counts = items | "CountPerShard" >> beam.CombinePerKey(_ShardCounts())
        written = (
            items
            | "OnlyRejects" >> beam.Filter(lambda kv: isinstance(kv[1], Reject))
            | "RejectsByShard" >> beam.GroupByKey()
            | "WriteRejects" >> beam.ParDo(
                _WriteRejectsFn(self._config.output), plan=beam.pvalue.AsSingleton(plan)
            )
        )
        return plan | "Report" >> beam.ParDo(
            _ReportFn(self._config),
            counts=beam.pvalue.AsDict(counts),
            rejects_written=beam.pvalue.AsList(written),
        )
