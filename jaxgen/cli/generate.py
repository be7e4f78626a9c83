"""`jaxgen generate`: manifest in, image dataset out, through the Beam pipeline.

It runs the same pipeline as `python -m pipelines.generate_dataset` (jaxgen.beam.run_pipeline);
Beam's own flags (--runner, --direct_running_mode, ...) pass through unchanged.
"""

from __future__ import annotations

import argparse
from typing import Any

from jaxgen.dataset.config import JobConfig, load_job_config
from jaxgen.default_model import RECOMMENDED
from jaxgen.requests import DEFAULTABLE_FIELDS, REQUEST_FIELDS


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="path or glob (comma-separated for several)")
    p.add_argument("--out", required=True, help="output directory (any Beam filesystem)")
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")
    p.add_argument("--job-config", help="YAML of job settings (see configs/jobs/)")
    p.add_argument("--format", dest="output_format", help="webdataset | parquet | imagefolder")
    p.add_argument("--image-format", help="png | webp | jpeg")
    p.add_argument("--image-quality", type=int)
    p.add_argument("--shard-size", type=int)
    p.add_argument("--job-seed", type=int)
    p.add_argument("--batch-size", type=int, help="images per device step (global)")
    p.add_argument("--dtype", help="float32 | bfloat16 (default: by backend)")
    p.add_argument("--model-parallel", type=int, default=1)
    p.add_argument("--expect-backend", help="cpu | gpu | tpu: fail rather than fall back")
    p.add_argument("--runner-profile", help="a runner profile's name (local, dataflow_gpu, "
                   "dataflow_tpu, flink, spark) or a YAML file's path")
    p.add_argument("--dry-run", action="store_true", help="validate and plan; generate nothing")
    p.add_argument("--host-index", type=int, help="this host's number in a multi-host job")
    p.add_argument("--host-count", type=int, help="hosts sharing the job (shards split by index)")
    p.add_argument("--no-progress", action="store_true")
    for field in REQUEST_FIELDS:
        if field.defaultable:
            p.add_argument(f"--{field.name.replace('_', '-')}", type=field.type,
                           dest=f"default_{field.name}",
                           help=f"default {field.name} for rows without one ({field.help})")


def job_config(args: argparse.Namespace, size_multiple: int | None = None,
               native_size: int | None = None,
               model_defaults: dict[str, Any] | None = None) -> JobConfig:
    settings = {name: getattr(args, name) for name in (
        "output_format", "image_format", "image_quality", "shard_size", "job_seed",
        "host_index", "host_count")}
    settings.update({name: getattr(args, f"default_{name}") for name in DEFAULTABLE_FIELDS})
    settings.update(manifest=args.manifest, output=args.out, dry_run=args.dry_run,
                    size_multiple=size_multiple or None)
    model = dict(model_defaults or {})
    if native_size:  # the model's own resolution, over its other recommendations
        model.update(height=native_size, width=native_size)
    return load_job_config(args.job_config, settings, model)


def _spec(args: argparse.Namespace):
    from jaxgen.default_model import default_model_path
    from jaxgen.engine.spec import GeneratorSpec

    model = args.model or str(default_model_path())
    return GeneratorSpec(model=model, dtype=args.dtype, batch_size=args.batch_size,
                         model_parallel=args.model_parallel, expect_backend=args.expect_backend)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from jaxgen.beam.pipeline import run_pipeline
    from jaxgen.cli.progress import Progress, exit_status, print_summary

    spec = _spec(args)
    if not args.dry_run:
        spec.check()
    config = job_config(args, spec.size_multiple(), spec.native_size(),
                        None if args.model else RECOMMENDED)
    if args.runner_profile:
        from jaxgen.beam.profiles import profile_flags

        beam_args = profile_flags(args.runner_profile) + beam_args
    progress = None if args.no_progress or args.dry_run else Progress(config)
    finished = False
    try:
        summary = run_pipeline(config, None if args.dry_run else spec, beam_args)
        finished = True
    finally:
        if progress:
            progress.stop(finished)
    print_summary(summary)
    if not args.dry_run and summary.get("complete") is not False and "://" not in config.output:
        from jaxgen.report import build_report

        print(f"  report  {build_report(config.output)}")
    return exit_status(summary, strict=args.strict)
