"""`jaxgen generate`: manifest in, image dataset out, through the Beam pipeline.

It runs the same pipeline as `python -m pipelines.generate_dataset` (jaxgen.beam.run_pipeline).
Beam's own options go through explicit channels only (DEFAULTS_CHAIN, below): a mistyped
jaxgen flag stops the command instead of passing for a Beam option.
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxgen.cli.progress import EXIT_SOME_REJECTED, exit_statuses_help
from jaxgen.dataset.config import (
    IMAGE_FORMATS,
    OUTPUT_FORMATS,
    UNKNOWN_COLUMN_POLICIES,
    JobConfig,
    load_job_config,
)
from jaxgen.images import RESIZE_POLICIES
from jaxgen.requests import DEFAULTABLE_FIELDS, REQUEST_FIELDS, SAMPLERS

DEFAULTS_CHAIN = """\
Row settings (steps, guidance, sampler, height, width, ...) come, lowest first, from:
built-in defaults < the model's recommended settings (its jaxgen.json, and its native size)
< the job YAML (--job-config) < these flags < the manifest row's own fields.

Beam options reach Beam only through --runner, --runner-profile, --beam-option KEY=VALUE, or
everything after `--` (e.g. `jaxgen generate ... -- --direct_num_workers=2`); each is checked
against Beam's option list."""


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = f"{DEFAULTS_CHAIN}\n\n{exit_statuses_help()}"
    p.add_argument("--strict", action="store_true",
                   help=f"exit {EXIT_SOME_REJECTED} when any row is rejected")
    built_in = {f.name: f.default for f in dataclasses.fields(JobConfig)}
    p.add_argument("--manifest", required=True, help="path or glob (comma-separated for several)")
    p.add_argument("--out", required=True, help="output directory (any Beam filesystem)")
    p.add_argument("--model", help="diffusers-format directory or HF-cache repo id (default: "
                   "the packaged default model)")
    p.add_argument("--job-config", help="YAML of job settings (see configs/jobs/)")
    p.add_argument("--format", dest="output_format", choices=OUTPUT_FORMATS,
                   help=f"output format (default: {built_in['output_format']})")
    p.add_argument("--image-format", choices=IMAGE_FORMATS,
                   help=f"image encoding (default: {built_in['image_format']})")
    p.add_argument("--image-quality", type=int,
                   help=f"webp/jpeg quality, 1-100 (default: {built_in['image_quality']})")
    p.add_argument("--shard-size", type=int,
                   help=f"rows per shard (default: {built_in['shard_size']})")
    p.add_argument("--job-seed", type=int, help="seed of rows that give none, derived per row "
                   f"(default: {built_in['job_seed']})")
    p.add_argument("--unknown-columns", choices=UNKNOWN_COLUMN_POLICIES,
                   help="a manifest column jaxgen does not know: reject the row naming it, "
                   "carry it as metadata, or drop it (default: "
                   f"{built_in['unknown_columns']})")
    p.add_argument("--metadata-columns", metavar="A,B",
                   help="manifest columns to carry into each record's metadata (default: none)")
    p.add_argument("--resize", choices=RESIZE_POLICIES,
                   help="how an init image (and mask) is fitted to its row's size: crop to "
                   "cover, fit inside on white, or stretch (default: "
                   f"{built_in['resize']})")
    p.add_argument("--batch-size", type=int,
                   help="images per device step, global (default: by device count)")
    p.add_argument("--micro-batch", type=int, metavar="K",
                   help="each device computes K images at a time, whatever --batch-size or "
                   "the device count, so images are byte-identical across batch sizes and "
                   "meshes (default: off, batch-size / devices at a time; see "
                   "docs/determinism.md)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"),
                   help="compute precision (default: float32 on CPU, bfloat16 on GPU/TPU)")
    p.add_argument("--model-parallel", type=int, default=1,
                   help="devices one model is split over (default: 1)")
    p.add_argument("--watermark", action="store_true",
                   help="SDXL's invisible watermark (diffusers' dwtDct payload) on every image "
                   "at least 256 px wide, recorded in its record (default: off)")
    p.add_argument("--expect-backend", choices=("cpu", "gpu", "tpu"),
                   help="fail rather than fall back to another backend (default: any)")
    p.add_argument("--runner", help="Beam runner, passed to Beam as --runner (default: "
                   "FnApiRunner, in-process; e.g. DataflowRunner, FlinkRunner)")
    p.add_argument("--runner-profile", help="a runner profile's name (local, dask, "
                   "dataflow_gpu, dataflow_tpu, flink, spark) or a YAML file's path "
                   "(default: none)")
    p.add_argument("--dask-address", metavar="tcp://HOST:PORT",
                   help="the dask.distributed scheduler for --runner DaskRunner (Beam's "
                   "--dask_client_address)")
    p.add_argument("--beam-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a Beam pipeline option, repeatable (checked against Beam's options)")
    p.add_argument("--dry-run", action="store_true", help="validate and plan; generate nothing")
    p.add_argument("--restart", action="store_true", help="start the job over: first remove "
                   "what jaxgen wrote in --out (nothing else)")
    p.add_argument("--force", action="store_true", help="write into a non-empty directory "
                   "jaxgen did not create")
    p.add_argument("--keep-flagged", action="store_true", default=None,
                   help="write images that fail their checks (non-finite latents, constant "
                   "image), flagged in their records (default: reject their rows)")
    p.add_argument("--host-index", type=int, help="this host's number in a multi-host job "
                   "(default: 0)")
    p.add_argument("--host-count", type=int, help="hosts sharing the job, shards split by "
                   "index (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for field in REQUEST_FIELDS:
        if field.defaultable:
            shown = repr(field.default) if field.default == "" else field.default
            sampler = field.name == "sampler"
            p.add_argument(f"--{field.name.replace('_', '-')}", type=field.type,
                           dest=f"default_{field.name}",
                           metavar=None if sampler else field.name.upper(),
                           choices=SAMPLERS if sampler else None,
                           help=f"{field.help}, for rows without one (built-in: {shown}; "
                           "the model's recommended value wins over it)")


def beam_args(args: argparse.Namespace, after_dashes: list[str]) -> list[str]:
    """The Beam options of a command line: --runner, --beam-option, then what follows `--`;
    a name that is not a Beam option raises ConfigError with the nearest one."""
    from jaxgen.beam.options import beam_option_flags, check_beam_args

    runner = [f"--runner={args.runner}"] if args.runner else []
    if args.dask_address:
        runner.append(f"--dask_client_address={args.dask_address}")
    return runner + beam_option_flags(args.beam_option) + check_beam_args(
        list(after_dashes), "after --")


def job_config(args: argparse.Namespace, size_multiple: int | None = None,
               native_size: int | None = None) -> JobConfig:
    """The job of `args`, along the chain of defaults (DEFAULTS_CHAIN): the model's recommended
    settings are read from its directory (`--model`, else the default model's)."""
    from jaxgen.default_model import default_model_path
    from jaxgen.weights.model_dir import recommended_settings

    settings = {name: getattr(args, name) for name in (
        "output_format", "image_format", "image_quality", "shard_size", "job_seed",
        "host_index", "host_count", "unknown_columns", "metadata_columns", "resize",
        "keep_flagged")}
    settings.update({name: getattr(args, f"default_{name}") for name in DEFAULTABLE_FIELDS})
    settings.update(manifest=args.manifest, output=args.out, dry_run=args.dry_run,
                    size_multiple=size_multiple or None)
    model = dict(recommended_settings(args.model or default_model_path()))
    if native_size:  # the model's own resolution, over its other recommendations
        model.update(height=native_size, width=native_size)
    return load_job_config(args.job_config, settings, model)


def _spec(args: argparse.Namespace):
    from jaxgen.default_model import default_model_path
    from jaxgen.engine.spec import GeneratorSpec

    model = args.model or str(default_model_path())
    return GeneratorSpec(model=model, dtype=args.dtype, batch_size=args.batch_size,
                         model_parallel=args.model_parallel, expect_backend=args.expect_backend,
                         micro_batch=args.micro_batch, watermark=args.watermark)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from jaxgen.beam.pipeline import run_pipeline
    from jaxgen.cli.progress import Progress, exit_status, print_summary

    spec = _spec(args)
    if not args.dry_run:
        spec.check()
    config = job_config(args, spec.size_multiple(), spec.native_size())
    if args.runner_profile:
        from jaxgen.beam.profiles import profile_flags

        beam_args = profile_flags(args.runner_profile) + beam_args
    progress = None if args.no_progress or args.dry_run else Progress(config)
    finished = False
    try:
        # A dry run takes the spec too: its model's tokenizer checks every row (no weights).
        summary = run_pipeline(config, spec, beam_args, restart=args.restart, force=args.force)
        finished = True
    finally:
        if progress:
            progress.stop(finished)
    print_summary(summary)
    if not args.dry_run and summary.get("complete") is not False and "://" not in config.output:
        from jaxgen.report import build_report

        print(f"  report  {build_report(config.output)}")
    return exit_status(summary, strict=args.strict)
