"""Manifest -> image dataset, as a Beam pipeline.

    python -m pipelines.generate_dataset --manifest 'prompts/*.jsonl' --output out/ds \\
        --generator jaxgen.engine.generator:GeneratorSpec --generator_args '{"model": "..."}'
    python -m pipelines.generate_dataset --manifest big.jsonl --output out/ds --dry-run
    python -m pipelines.generate_dataset ... --runner_profile dataflow_gpu \\
        --project my-proj --region us-central1 --temp_location gs://b/tmp \\
        --sdk_container_image us-docker.pkg.dev/my-proj/jaxgen/worker:latest

Settings come, lowest first, from the JobConfig defaults, a job YAML (--job_config, keys of
JobConfig), then these flags (jaxgen.dataset.config: the chain of defaults). Beam's own
options (--runner, --direct_running_mode, ...) are given alongside; every flag must be
jaxgen's or Beam's (a mistyped one stops the launcher, naming the nearest); a runner
profile (a name: local, dataflow_gpu, ...; or a YAML file's path) supplies Beam options that
flags given here override. With no runner named: FnApiRunner,
in-process. Settings, profiles and row fields are jaxgen's, shared with `jaxgen generate`.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from jaxgen.beam.options import check_beam_args
from jaxgen.beam.pipeline import run_pipeline, summary_line
from jaxgen.beam.profiles import profile_flags
from jaxgen.dataset.config import JobConfig, load_job_config
from jaxgen.images import RESIZE_POLICIES
from jaxgen.requests import DEFAULTABLE_FIELDS, REQUEST_FIELDS, ConfigError

# Flags that are JobConfig settings (the rest of JobConfig's fields are defaults.*).
_JOB_FLAGS = (
    "manifest", "output", "output_format", "image_format", "image_quality", "shard_size",
    "job_seed", "manifest_format", "unknown_columns", "metadata_columns", "max_line_bytes",
    "max_metadata_bytes", "size_multiple", "resize", "keep_flagged",
)


class GenerateDatasetOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        g = parser.add_argument_group("jaxgen dataset")
        g.add_argument("--manifest", help="manifest path or glob (comma-separated for several)")
        g.add_argument("--output", help="output directory (any Beam filesystem)")
        g.add_argument("--job_config", help="YAML file with JobConfig settings")
        g.add_argument("--output_format", help="webdataset (default) | parquet | imagefolder")
        g.add_argument("--image_format", help="png (default) | webp | jpeg")
        g.add_argument("--image_quality", type=int, help="WebP/JPEG quality, 1-100")
        g.add_argument("--shard_size", type=int, help="rows per shard (default 10000)")
        g.add_argument("--job_seed", type=int, help="seed for rows without one")
        g.add_argument("--manifest_format", help="auto | jsonl | csv | tsv | parquet | txt")
        g.add_argument("--unknown_columns", help="reject (default) | metadata | ignore")
        g.add_argument("--metadata_columns", help="columns carried into metadata (A,B)")
        g.add_argument("--max_line_bytes", type=int)
        g.add_argument("--max_metadata_bytes", type=int)
        g.add_argument("--size_multiple", type=int, help="height/width must be multiples")
        g.add_argument("--resize", choices=RESIZE_POLICIES,
                       help="how an init image (and mask) is fitted to its row's size: crop to "
                       "cover, fit inside on white, or stretch (default: "
                       f"{JobConfig.resize})")
        g.add_argument("--keep_flagged", action="store_true", default=None,
                       help="write images that fail their checks, flagged in their records "
                       "(default: reject their rows)")
        # Not --dry_run: that is Beam's own TestOptions flag (DataflowRunner then submits nothing).
        g.add_argument(
            "--dry-run", "--plan_only", dest="jaxgen_dry_run", action="store_true",
            help="validate and plan only: write _plan.json and _rejects/, generate nothing",
        )
        for field in REQUEST_FIELDS:
            if field.defaultable:
                g.add_argument(f"--{field.name}", type=field.type,
                               help=f"default for rows without one ({field.help})")
        g.add_argument("--restart", action="store_true", help="start the job over: first remove "
                       "what jaxgen wrote in --output (nothing else)")
        g.add_argument("--force", action="store_true", help="write into a non-empty directory "
                       "jaxgen did not create")
        g.add_argument("--generator", help="module:callable returning a GeneratorSpec")
        g.add_argument("--generator_args", default="{}", help="JSON object of its kwargs")
        g.add_argument("--runner_profile", help="a runner profile's name (local, dataflow_gpu, "
                       "...) or a YAML file's path")


def job_config(opts: GenerateDatasetOptions) -> JobConfig:
    settings = {name: getattr(opts, name) for name in (*_JOB_FLAGS, *DEFAULTABLE_FIELDS)}
    settings["dry_run"] = True if opts.jaxgen_dry_run else None
    return load_job_config(opts.job_config, settings)


def load_spec(target: str | None, args_json: str) -> Any:
    if not target or ":" not in target:
        raise SystemExit(
            f"--generator {target!r}: give module:callable returning a GeneratorSpec "
            "(or --dry-run to only validate and plan)"
        )
    module, name = target.split(":", 1)
    kwargs = json.loads(args_json)
    if not isinstance(kwargs, dict):
        raise SystemExit(f"--generator_args {args_json!r}: must be a JSON object")
    return getattr(importlib.import_module(module), name)(**kwargs)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours = GenerateDatasetOptions(flags=[]).get_all_options(current_only=True)
    try:
        check_beam_args(argv, "command line", also=[*ours, "dry-run", "plan_only"])
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    opts = PipelineOptions(argv).view_as(GenerateDatasetOptions)
    if opts.runner_profile:
        # Profile first: argparse keeps the last value, so explicit flags win.
        try:
            argv = profile_flags(opts.runner_profile) + argv
        except ConfigError as e:
            raise SystemExit(str(e)) from None
    options = PipelineOptions(argv)
    opts = options.view_as(GenerateDatasetOptions)
    config = job_config(opts)
    # A dry run needs no generator; given one, it validates sizes against the model's.
    spec = None if config.dry_run and not opts.generator else load_spec(
        opts.generator, opts.generator_args
    )
    summary = run_pipeline(config, spec, options, restart=opts.restart, force=opts.force)
    print(summary_line(summary), flush=True)
    return summary


if __name__ == "__main__":
    # jaxgen's per-shard progress lines, without Beam's INFO chatter.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("jaxgen").setLevel(logging.INFO)
    run()
