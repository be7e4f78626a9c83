"""`run_pipeline`: the whole dataset job (or its dry run) as one Beam pipeline.

Runner: whatever the options name; when they name none, FnApiRunner in-process. Never
Beam's own default: since Beam 2.68 it tries PrismRunner first, which downloads a binary
at run time (offline it fails or hangs).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from jaxgen.beam.transforms import (
    NAMESPACE,
    GenerateShards,
    PlanShards,
    ReadManifest,
    ReportPlan,
    WriteSummary,
)
from jaxgen.dataset import resume
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.lock import OutputLock
from jaxgen.dataset.manifest import match_manifest, with_content_hashes
from jaxgen.dataset.output_dir import check_output_is_ours, remove_job_files
from jaxgen.dataset.writers import join

log = logging.getLogger("jaxgen.beam")
DEFAULT_RUNNER = "FnApiRunner"
RUNNER_PATHS = {"DaskRunner": "jaxgen.beam.dask_runner.DaskRunner"}


class GeneratorSpec(Protocol):
    """What a pipeline carries to its workers (picklable); build() is called once a process."""

    def build(self) -> Any: ...


def pipeline_options(options: PipelineOptions | Sequence[str] | None = None) -> PipelineOptions:
    """Options as given, with FnApiRunner (in-process) when no runner is named."""
    if options is None or not isinstance(options, PipelineOptions):
        options = PipelineOptions(list(options or []))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    # DaskRunner: Beam knows it only by module path, and jaxgen runs its fixed subclass.
    standard.runner = RUNNER_PATHS.get(standard.runner, standard.runner)
    return options


def resolve_model_settings(config: JobConfig, spec: Any) -> JobConfig:
    """Fill what the model decides about rows: config.size_multiple from the spec's
    size_multiple() when the job left it unset, and config.empty_prompt from its
    empty_prompt() (whether rows may leave the prompt out).

    Rows whose height/width the model cannot make, or whose prompt it needs, are then
    rejected at planning time (with the row and a reason), not failed at generation time.
    """
    multiple = getattr(spec, "size_multiple", None)
    if config.size_multiple is None and callable(multiple):
        config = dataclasses.replace(config, size_multiple=int(multiple()))
    empty = getattr(spec, "empty_prompt", None)
    if callable(empty) and empty():
        config = dataclasses.replace(config, empty_prompt=True)
    return config


def model_record(spec: Any) -> dict[str, Any]:
    """What of the generator changes pixels (model content hash, dtype, ...), for the job
    record: the spec's job_record(), when it has one."""
    record = getattr(spec, "job_record", None)
    return dict(record()) if callable(record) else {}


def run_pipeline(
    config: JobConfig,
    spec: GeneratorSpec | None = None,
    options: PipelineOptions | Sequence[str] | None = None,
    *,
    restart: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Run the job (or, with config.dry_run, only validate and plan); return the summary.

    The output is guarded first: a non-empty directory jaxgen did not create is refused
    unless `force`; the lock of this host index is held for the whole run (another run on
    the same output stops at once); `restart` removes what jaxgen wrote there before
    starting. A real run then checks (or records) the job and the hashes of finished shards.

    The summary is what `_dataset.json` (or `_plan.json` for a dry run) holds, plus
    "metrics": this run's Beam counters (rows_read, rows_valid, rows_rejected,
    shards_written, shards_skipped, images_generated), and "wall_s": this run's seconds.
    """
    started = time.perf_counter()
    if spec is None and not config.dry_run:
        raise ValueError("spec None: a generation run needs a GeneratorSpec (or set dry_run)")
    config = resolve_model_settings(config, spec)
    options = pipeline_options(options)
    check_output_is_ours(config.output, force)
    with OutputLock(config.output, config.host_index):
        if restart:
            remove_job_files(config.output)
        files = match_manifest(config.manifest_patterns, config.manifest_format)
        repaired: dict[str, str] = {}
        if not config.dry_run:
            files = with_content_hashes(files)
            resume.check_or_record_job(config, files, model_record(spec))
            repaired = resume.verify_shards(config)
        result = _run(config, spec, options, files, repaired)
    name = resume.PLAN_FILE if config.dry_run else resume.SUMMARY_FILE
    summary = resume.read_json(join(config.output, name), config.output)
    if summary is None and config.host_count > 1 and not config.dry_run:
        # This host's shards are done; another host is still writing its own.
        summary = {"complete": False, "host_index": config.host_index,
                   "host_count": config.host_count,
                   "this_run": {"repaired_shards": repaired}}
    if summary is None:
        raise RuntimeError(f"the pipeline finished but wrote no {name} in {config.output}")
    summary["metrics"] = _counters(result)
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    return summary


def _run(config: JobConfig, spec: Any, options: PipelineOptions, files: list[Any],
         repaired: dict[str, str]) -> Any:
    pipeline = beam.Pipeline(options=options)
    manifest = pipeline | "ReadManifest" >> ReadManifest(config, files)
    planned = manifest | "PlanShards" >> PlanShards(config, spec)
    if config.dry_run:
        _ = planned | "ReportPlan" >> ReportPlan(config)
    else:
        stats = planned | "GenerateShards" >> GenerateShards(spec, config)
        _ = {"stats": stats, "plan": planned["plan"]} | "WriteSummary" >> WriteSummary(
            config, repaired)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def _counters(result: Any) -> dict[str, int]:
    counters: dict[str, int] = {}
    try:
        found = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    except (NotImplementedError, AttributeError):  # some runners report no metrics
        return counters
    for c in found["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + int(value or 0)
    return counters


def summary_line(summary: dict[str, Any]) -> str:
    if summary.get("complete") is False:
        m = summary["metrics"]
        return (f"jaxgen host {summary['host_index']} of {summary['host_count']}: wrote "
                f"{m.get('shards_written', 0)} shards ({m.get('images_generated', 0)} images); "
                "other hosts are still writing theirs, the last one writes _dataset.json")
    c = summary["counts"]
    if summary.get("dry_run"):
        return (
            f"jaxgen dry run: rows read {c['rows_read']} = valid {c['rows_valid']} + rejected "
            f"{c['rows_rejected']}; {c['images_planned']} images in {c['shards']} shards "
            f"({c['shards_complete']} complete, {c['shards_to_generate']} to generate)"
        )
    repaired = c.get("shards_repaired")
    return (
        f"jaxgen: rows read {c['rows_read']} = generated {c['rows_generated']} + rejected "
        f"{c['rows_rejected']}; {c['images']} images in {c['shards']} shards "
        f"({c['shards_written']} written now, {c['shards_skipped']} already complete"
        + (f", {repaired} found damaged and written again" if repaired else "") + ")"
    )
