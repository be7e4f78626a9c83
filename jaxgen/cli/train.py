"""`jaxgen train`: the shapes model from scratch, stage by stage, resumable."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from jaxgen.default_model import EVAL_PROMPTS, RECOMMENDED


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", type=Path, default=Path("runs/shapes-default"),
                   help="checkpoints, metrics, report.json; rerun to resume")
    p.add_argument("--vae-config", type=Path, default=Path("configs/train/shapes_vae.yaml"))
    p.add_argument("--vae-from", type=Path, metavar="MODEL_DIR",
                   help="skip stage 1: train on this diffusers-format model's VAE and scaling "
                   "factor (e.g. the default model's directory, which `jaxgen info` prints)")
    p.add_argument("--text-config", type=Path, default=Path("configs/train/shapes_text.yaml"),
                   help="stage 0: pretrain the text encoder to state each caption's scene, "
                   "then train the UNet on it frozen")
    p.add_argument("--no-text-stage", action="store_const", const=None, dest="text_config",
                   help="train a fresh text encoder together with the UNet in stage 2 instead")
    p.add_argument("--unet-config", type=Path, default=Path("configs/train/shapes_unet.yaml"))
    p.add_argument("--finetune-config", type=Path,
                   default=Path("configs/train/shapes_unet_finetune.yaml"),
                   help="stage 3: stage 2's weights trained on at a lower learning rate")
    p.add_argument("--no-finetune-stage", action="store_const", const=None, dest="finetune_config",
                   help="export stage 2's weights, without stage 3")
    p.add_argument("--wording-config", type=Path,
                   default=Path("configs/train/shapes_wording.yaml"),
                   help="stage 4: the text encoder trained on through the frozen UNet on varied "
                   "wordings")
    p.add_argument("--no-wording-stage", action="store_const", const=None, dest="wording_config",
                   help="export stage 3's weights, without stage 4")
    p.add_argument("--pairs-config", type=Path, default=Path("configs/train/shapes_pairs.yaml"),
                   help="stage 5: stage 3's UNet trained on, reading stage 4's encoder, mostly on "
                   "two-object scenes")
    p.add_argument("--no-pairs-stage", action="store_const", const=None, dest="pairs_config",
                   help="export stage 3's UNet, without stage 5")
    p.add_argument("--minutes", type=float, help="time budget per stage for this invocation")
    p.add_argument("--vae-steps", type=int, help="override the VAE config's steps")
    p.add_argument("--text-steps", type=int, help="override the text config's steps")
    p.add_argument("--unet-steps", type=int, help="override the UNet config's steps")
    p.add_argument("--finetune-steps", type=int,
                   help="override the fine-tune config's steps (of each pass)")
    p.add_argument("--finetune-passes", type=int, help="override the fine-tune config's passes")
    p.add_argument("--wording-steps", type=int, help="override the wording config's steps")
    p.add_argument("--pairs-steps", type=int, help="override the pairs config's steps")
    p.add_argument("--export-dir", type=Path, help="model directory to write "
                   "(default: WORK_DIR/model)")
    p.add_argument("--export-unfinished", action="store_true",
                   help="export and evaluate even if stage 2 has not reached its steps")
    p.add_argument("--export-dtype", default="float16", help="float16 | float32 weight files")
    p.add_argument("--eval-prompts", type=int, default=EVAL_PROMPTS)
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    p.add_argument("--skip-eval", action="store_true")


def run(args: argparse.Namespace, _: list[str]) -> int:
    from jaxgen.train.run import TrainOptions, train_shapes_model

    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    return train_shapes_model(TrainOptions(**{k: v for k, v in vars(args).items()
                                              if k in fields}))
