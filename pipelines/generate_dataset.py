"""Manifest -> image dataset, as a Beam pipeline.

    python -m pipelines.generate_dataset --manifest 'prompts/*.jsonl' --output out/ds \\
        --generator jaxgen.engine.generator:GeneratorSpec --generator_args '{"model": "..."}'
    python -m pipelines.generate_dataset --manifest big.jsonl --output out/ds --dry-run
    python -m pipelines.generate_dataset ... --runner_profile dataflow_gpu \\
        --project my-proj --region us-central1 --temp_location gs://b/tmp \\
        --sdk_container_image us-docker.pkg.dev/my-proj/jaxgen/worker:latest

Settings come, lowest first, from the JobConfig defaults, a job YAML (--job_config, keys of
JobConfig), then these flags. Beam's own options (--runner, --direct_running_mode, ...)
pass through; a runner profile (configs/runners/NAME.yaml, or a path) supplies Beam
options that flags given here override. With no runner named: FnApiRunner, in-process.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from jaxgen.beam.pipeline import run_pipeline, summary_line
from jaxgen.dataset.config import DEFAULTABLE_FIELDS, JobConfig

PROFILES_DIR = Path(__file__).resolve().parents[1] / "configs" / "runners"
# Flags that are JobConfig settings (the rest of JobConfig's fields are defaults.*).
_JOB_FLAGS = (
    "manifest", "output", "output_format", "image_format", "image_quality", "shard_size",
    "job_seed", "manifest_format", "unknown_columns", "max_line_bytes", "max_metadata_bytes",
    "size_multiple",
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
        g.add_argument("--unknown_columns", help="metadata (default) | reject | ignore")
        g.add_argument("--max_line_bytes", type=int)
        g.add_argument("--max_metadata_bytes", type=int)
        g.add_argument("--size_multiple", type=int, help="height/width must be multiples")
        # Not --dry_run: that is Beam's own TestOptions flag (DataflowRunner then submits nothing).
        g.add_argument(
            "--dry-run", "--plan_only", dest="jaxgen_dry_run", action="store_true",
            help="validate and plan only: write _plan.json and _rejects/, generate nothing",
        )
        g.add_argument("--negative_prompt", help="default for rows without one")
        g.add_argument("--guidance", type=float)
        g.add_argument("--steps", type=int)
        g.add_argument("--height", type=int)
        g.add_argument("--width", type=int)
        g.add_argument("--sampler")
        g.add_argument("--num_images", type=int)
        g.add_argument("--generator", help="module:callable returning a GeneratorSpec")
        g.add_argument("--generator_args", default="{}", help="JSON object of its kwargs")
        g.add_argument("--runner_profile", help="configs/runners/NAME.yaml name, or a path")


def profile_flags(profile: str) -> list[str]:
    """A runner profile (YAML mapping of Beam options) as command-line flags."""
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise SystemExit(f"--runner_profile {profile!r}: no such file; known profiles: {known}")
    values = yaml.safe_load(path.read_text()) or {}
    flags = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                flags.append(f"--{name}")
            elif item is not False and item is not None:
                flags.append(f"--{name}={item}")
    return flags


def job_config(opts: GenerateDatasetOptions) -> JobConfig:
    values: dict[str, Any] = {}
    if opts.job_config:
        values.update(yaml.safe_load(Path(opts.job_config).read_text()) or {})
    defaults = dict(values.pop("defaults", None) or {})
    for name in _JOB_FLAGS:
        if getattr(opts, name) is not None:
            values[name] = getattr(opts, name)
    for name in DEFAULTABLE_FIELDS:
        if getattr(opts, name) is not None:
            defaults[name] = getattr(opts, name)
    if opts.jaxgen_dry_run:
        values["dry_run"] = True
    return JobConfig.from_mapping({**values, "defaults": defaults})


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
    opts = PipelineOptions(argv).view_as(GenerateDatasetOptions)
    if opts.runner_profile:
        # Profile first: argparse keeps the last value, so explicit flags win.
        argv = profile_flags(opts.runner_profile) + argv
    options = PipelineOptions(argv)
    opts = options.view_as(GenerateDatasetOptions)
    config = job_config(opts)
    # A dry run needs no generator; given one, it validates sizes against the model's.
    spec = None if config.dry_run and not opts.generator else load_spec(
        opts.generator, opts.generator_args
    )
    summary = run_pipeline(config, spec, options)
    print(summary_line(summary), flush=True)
    return summary


if __name__ == "__main__":
    # jaxgen's per-shard progress lines, without Beam's INFO chatter.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("jaxgen").setLevel(logging.INFO)
    run()
