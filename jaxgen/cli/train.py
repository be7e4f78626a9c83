"""`jaxgen train`: a model from scratch, stage by stage as its recipe lists them, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxgen.train.recipe import DEFAULT_RECIPE, describe, load_recipe

EPILOG = """\
--set STAGE.KEY=VALUE changes the recipe; VALUE is read as YAML (6500, 3.0e-4, true, null):
  unet.train.steps=6500       any key of a stage's config (train, data, timesteps, ...);
                              train.steps alone also caps warmup_steps at a tenth of it
  finetune.passes=3           the fine-tune's passes
  free.enabled=false          skip a stage (an error while a later stage reads it)
  wording.reads.unet=unet     where a stage's input comes from
  vae.from=MODEL_DIR          a model directory's weights instead of training the stage
  unet.config=FILE            another stage config
  export.dir=DIR export.dtype=float32 export.unfinished=true
  eval.skip=true eval.prompts=64 eval.guidance=3.0

the {name} recipe ({path}), stages in run order:
{stages}
"""


def add_parser(p: argparse.ArgumentParser) -> None:
    default = load_recipe(DEFAULT_RECIPE)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG.format(name=DEFAULT_RECIPE, path=default.path, stages=describe(default))
    p.add_argument("--recipe", default=DEFAULT_RECIPE, metavar="NAME_OR_PATH",
                   help="a recipe shipped with jaxgen, or a recipe file (default: %(default)s)")
    p.add_argument("--work-dir", type=Path, default=Path("runs/shapes-default"),
                   help="checkpoints, metrics, report.json; rerun to resume "
                   "(default: %(default)s)")
    p.add_argument("--minutes", type=float,
                   help="time budget per stage for this invocation (default: none)")
    p.add_argument("--set", action="append", default=[], dest="overrides",
                   metavar="STAGE.KEY=VALUE", help="override the recipe (repeatable; see below)")


def run(args: argparse.Namespace, _: list[str]) -> int:
    from jaxgen.train.run import train

    return train(load_recipe(args.recipe, args.overrides), args.work_dir, args.minutes)
