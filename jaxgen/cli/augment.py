"""`jaxgen augment`: a labelled dataset and a recipe in, an augmented labelled dataset out.

The recipe becomes a manifest of ordinary requests (OUT/_augment/plan.jsonl) that runs through
the same pipeline as `jaxgen generate`: shards, resume (rerun the same command), rejects,
determinism. See docs/augmentation.md.
"""

from __future__ import annotations

import argparse
import dataclasses

from jaxgen.augment.recipe import INPUT_FORMATS
from jaxgen.augment.recipe import __doc__ as RECIPE_DOC
from jaxgen.cli.progress import EXIT_SOME_REJECTED, exit_statuses_help
from jaxgen.dataset.config import IMAGE_FORMATS, OUTPUT_FORMATS, JobConfig

DEFAULT_SHARD_SIZE = 1000


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    recipe = RECIPE_DOC.split("\n", 2)[2]
    p.epilog = f"recipe keys, with their defaults:\n{recipe}\n{exit_statuses_help()}"
    built_in = {f.name: f.default for f in dataclasses.fields(JobConfig)}
    p.add_argument("--input", required=True, help="the labelled dataset: an image folder "
                   "(class sub-folders or metadata.jsonl), webdataset tars or parquet files "
                   "(a path, glob or several comma-separated; any Beam filesystem)")
    p.add_argument("--input-format", choices=INPUT_FORMATS, default="auto",
                   help="how to read --input (default: auto, by its name)")
    p.add_argument("--out", required=True, help="output directory (any Beam filesystem)")
    p.add_argument("--recipe", required=True, help="the recipe YAML (keys below)")
    p.add_argument("--model", help="diffusers-format directory or HF-cache repo id (default: "
                   "the packaged default model)")
    p.add_argument("--format", dest="output_format", choices=OUTPUT_FORMATS,
                   default=built_in["output_format"],
                   help=f"output format (default: {built_in['output_format']})")
    p.add_argument("--image-format", choices=IMAGE_FORMATS, default=built_in["image_format"],
                   help=f"image encoding (default: {built_in['image_format']})")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                   help=f"rows per shard (default: {DEFAULT_SHARD_SIZE})")
    p.add_argument("--batch-size", type=int,
                   help="images per device step, global (default: by device count)")
    p.add_argument("--micro-batch", type=int, metavar="K", help="each device computes K "
                   "images at a time (see jaxgen generate; default: off)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"),
                   help="compute precision (default: float32 on CPU, bfloat16 on GPU/TPU)")
    p.add_argument("--strict", action="store_true",
                   help=f"exit {EXIT_SOME_REJECTED} when any row is rejected")
    p.add_argument("--restart", action="store_true", help="start the job over: first remove "
                   "what jaxgen wrote in --out")
    p.add_argument("--force", action="store_true", help="write into a non-empty directory "
                   "jaxgen did not create")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from jaxgen.augment import run as augment
    from jaxgen.augment.recipe import load_recipe
    from jaxgen.beam.pipeline import resolve_model_settings
    from jaxgen.cli.progress import Progress, exit_status, print_summary
    from jaxgen.dataset.filter import load_filter
    from jaxgen.default_model import default_model_path
    from jaxgen.engine.spec import GeneratorSpec
    from jaxgen.weights.model_dir import recommended_settings

    recipe = load_recipe(args.recipe)
    if recipe.filter:
        load_filter(recipe.filter)  # a filter that cannot be found stops before any work
    model = args.model or str(default_model_path())
    spec = GeneratorSpec(model=model, dtype=args.dtype, batch_size=args.batch_size,
                         micro_batch=args.micro_batch)
    spec.check()
    model_defaults = dict(recommended_settings(model))
    if spec.native_size():
        model_defaults.update(height=spec.native_size(), width=spec.native_size())
    settings = {"output_format": args.output_format, "image_format": args.image_format,
                "shard_size": args.shard_size, "size_multiple": spec.size_multiple() or None}
    job = augment.prepare(args.input, recipe, args.out, input_format=args.input_format,
                          settings=settings, model_defaults=model_defaults, force=args.force)
    print(f"jaxgen augment: {len(job.images)} real images in {len(job.labels)} classes -> "
          f"{job.rows} rows ({args.out}/{augment.AUGMENT_DIR}/{augment.PLAN_FILE})")
    progress = None if args.no_progress else Progress(resolve_model_settings(job.config, spec))
    finished = False
    try:
        summary = augment.run(job, spec, beam_args, restart=args.restart)
        finished = True
    finally:
        if progress:
            progress.stop(finished)
    print_summary(summary)
    dropped = summary.get("counts", {}).get("images_dropped")
    if dropped is not None:
        print(f"  dropped {dropped} images by the filter ({args.out}/_dropped/)")
    return exit_status(summary, strict=args.strict)
