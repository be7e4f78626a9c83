"""Stage 5 of the shipped model: the UNet trained on, on stage 4's encoder, mostly on pairs.

    python scripts/train_stage5.py --model MODEL_DIR --two-object-share 0.75 \
        --steps 1500 --work-dir runs/stage5 [--minutes M]      # rerun to resume
    jaxgen eval --model runs/stage5/model --out runs/stage5/eval

MODEL_DIR is what `jaxgen train` exports (stages 0-4). The shipped UNet was trained (stages 2
and 3) on stage 0's text encoder; stage 4 then trained the encoder alone through that frozen
UNet. This trains the UNet on, reading stage 4's encoder (frozen), on stage 4's varied
wordings and the scenes after stage 4's, with stage 3's optimiser settings (fresh AdamW, lr
3e-4, warmup 100, cosine, EMA 0.999; seed 5), and exports it with that encoder and the VAE in
float16. `--two-object-share` draws that share of each batch from two-object scenes (without
it, about half, as in training). It starts from the model directory's (float16) UNet, not
from stage 3's float32 EMA weights: the shipped UNet was made from the package's model, whose
training checkpoints were not kept. Not yet a stage of `jaxgen train`
(docs/default-model.md, "Stage 5").
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Batches used by the shipped recipe: stage 2 (9,000), stage 3 (2 x 2,500), stage 4 (1,000).
FIRST_BATCH = 9_000 + 2 * 2_500 + 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True,
                        help="a `jaxgen train` export (stages 0-4) to train on")
    parser.add_argument("--work-dir", default="runs/stage5")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--two-object-share", type=float,
                        help="draw this share of each batch from two-object scenes "
                             "(default: as the seeds fall, about half)")
    args = parser.parse_args()

    from jaxgen.schedulers import SchedulerConfig
    from jaxgen.train.export import export_model
    from jaxgen.train.stages import UNetStage, run_unet_stage
    from jaxgen.weights.model_dir import load_model

    model = load_model(args.model)
    configs = ROOT / "configs/train"
    stage = UNetStage.from_yaml(configs / "shapes_unet.yaml", model.tokenizer)
    finetune = stage.continued(configs / "shapes_unet_finetune.yaml")
    stage = stage.reworded(configs / "shapes_wording.yaml")  # its data: varied wordings
    # Stage 3's optimiser (lr 3e-4, warmup 100, EMA 0.999), a seed no stage used.
    train = dataclasses.replace(finetune.train, steps=args.steps, seed=5)
    data = dataclasses.replace(stage.data, two_object_share=args.two_object_share)
    stage = dataclasses.replace(stage, data=data, train=train, timesteps=finetune.timesteps)
    work = Path(args.work_dir)
    result = run_unet_stage(stage, model.vae, model.params["vae"], model.tokenizer,
                            work / "unet", minutes=args.minutes,
                            start_params={"unet": model.params["unet"]},
                            text_params=model.params["text_encoder"], first_batch=FIRST_BATCH,
                            desc="stage5")
    print(f"step {int(result.state.step)} of {args.steps}, finished={result.finished}")
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
