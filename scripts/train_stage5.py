"""Stage 5 (pairs) on a model directory: how the shipped UNet was made.

    python scripts/train_stage5.py --model MODEL_DIR --work-dir runs/stage5 [--minutes M]
    jaxgen eval --model runs/stage5/model --out runs/stage5/eval

`jaxgen train` runs stage 5 on stage 3's and stage 4's float32 EMA weights. The shipped UNet
was made before it did, from the stages 0-4 model then shipped (float16 files; the training
checkpoints were not kept), so this runs the same stage, configs/train/shapes_pairs.yaml, on
a model directory's UNet, text encoder (frozen) and VAE, and exports the result in float16.
Rerun to resume. `--two-object-share none` draws scenes as training does (about half pairs),
the comparison run of docs/default-model.md, "Stage 5"; `--seed` changes the noise and
timesteps only ("Where the from-scratch run loses its points").
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True,
                        help="a model of stages 0-4 to train on (`jaxgen train --no-pairs-stage` "
                        "exports one)")
    parser.add_argument("--work-dir", default="runs/stage5")
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--seed", type=int, help="the stage's noise and timestep seed (the "
                        "scenes stay); default: the config's. Other seeds measure how far "
                        "stage 5's result spreads from one start")
    parser.add_argument("--two-object-share", help="a share in [0, 1], or none (as the seeds "
                        "fall); default: the config's")
    args = parser.parse_args()

    from jaxgen.schedulers import SchedulerConfig
    from jaxgen.train.export import export_model
    from jaxgen.train.stages import (
        UNetStage,
        finetune_pass_count,
        finetune_passes,
        first_batches,
        run_unet_stage,
    )
    from jaxgen.weights.model_dir import load_model

    model = load_model(args.model)
    configs = ROOT / "configs/train"
    stage2 = UNetStage.from_yaml(configs / "shapes_unet.yaml", model.tokenizer)
    finetune = configs / "shapes_unet_finetune.yaml"
    stage = stage2.reworded(configs / "shapes_pairs.yaml")
    # The scenes after the ones stages 2-4 trained on, as `jaxgen train` draws them (15,000).
    first_batch = first_batches(
        [stage2, *finetune_passes(stage2.continued(finetune), finetune_pass_count(finetune)),
         stage2.reworded(configs / "shapes_wording.yaml"), stage])[-1]
    if args.two_object_share is not None:
        try:
            share = None if args.two_object_share == "none" else float(args.two_object_share)
        except ValueError:
            parser.error(f"--two-object-share {args.two_object_share!r}: a number in [0, 1] "
                         "or none")
        stage = dataclasses.replace(
            stage, data=dataclasses.replace(stage.data, two_object_share=share))
    if args.seed is not None:
        stage = dataclasses.replace(stage, train=dataclasses.replace(stage.train, seed=args.seed))
    work = Path(args.work_dir)
    result = run_unet_stage(stage, model.vae, model.params["vae"], model.tokenizer,
                            work / "unet", minutes=args.minutes,
                            start_params={"unet": model.params["unet"]},
                            text_params=model.params["text_encoder"], first_batch=first_batch,
                            desc="stage5")
    print(f"step {int(result.state.step)} of {stage.train.steps}, finished={result.finished}")
    if not result.finished:
        print("not finished: rerun the same command to continue")
        return
    out = work / "model"
    exported = export_model(
        out, name=out.name, unet=model.unet, vae=model.vae, text_encoder=model.text_encoder,
        schedule=SchedulerConfig.from_dict(model.scheduler_config), tokenizer=model.tokenizer,
        params={**result.params, "vae": model.params["vae"],
                "text_encoder": model.params["text_encoder"]},
        dtype="float16")
    print(f"exported {out} (hash {exported.hash})")


if __name__ == "__main__":
    main()
