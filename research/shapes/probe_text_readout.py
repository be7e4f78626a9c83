"""Does stage 0's text encoder read the evaluation's held-out wordings? Its own readout says.

    python -m research.shapes.probe_text_readout --work-dir runs/shapes-default

Stage 0 trains the text encoder with a linear readout of every attribute the caption states
(jaxgen.train.text.SceneHead). This restores the stage's latest checkpoint (EMA weights, the
encoder the UNet was trained on, and the readout) and scores the readout on the ShapesEval
prompts, trained wordings against held-out ones, field by field. Where the readout is right
and the images are not, the UNet is what fails to read the new wording.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from jaxgen.default_model import EVAL_PROMPTS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", type=Path, required=True, help="a `jaxgen train` work dir")
    p.add_argument("--model", default="jaxgen/assets/default-model",
                   help="model dir for the text encoder's config and tokenizer")
    p.add_argument("--prompts", type=int, default=EVAL_PROMPTS)
    args = p.parse_args()

    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    from jaxgen.eval.shapes_eval import ShapesEval
    from jaxgen.train.text import NOT_ASKED, SCENE_FIELDS, SceneHead, scene_targets
    from jaxgen.weights.model_dir import load_model
    from jaxgen.weights.tokenizer import tokenize

    checkpoints = (args.work_dir / "text" / "checkpoints").absolute()
    steps = sorted(int(d.name) for d in checkpoints.iterdir() if d.name.isdigit())
    if not steps:
        raise SystemExit(f"--work-dir {args.work_dir}: no stage-0 checkpoint in {checkpoints}")
    ema = ocp.StandardCheckpointer().restore(checkpoints / str(steps[-1]) / "default")["ema_params"]
    model = load_model(args.model)
    text = model.modules(jnp.float32)[2]
    prompts = ShapesEval(args.prompts).prompts()
    print(f"stage 0 step {steps[-1]}, {len(prompts)} ShapesEval prompts: readout accuracy")
    for group, chosen in (("trained wordings", [q for q in prompts if not q.new_wording]),
                          ("held-out wordings", [q for q in prompts if q.new_wording])):
        ids = tokenize(model.tokenizer, [q.text for q in chosen])
        _, pooled = text.apply({"params": ema["text_encoder"]}, ids)
        logits = SceneHead().apply({"params": ema["scene_head"]}, pooled.astype(jnp.float32))
        targets = np.stack([scene_targets(q.text) for q in chosen])
        cells = []
        for i, field in enumerate(SCENE_FIELDS):
            asked = targets[:, i] != NOT_ASKED
            if asked.any():
                right = np.argmax(np.asarray(logits[i]), -1)[asked] == targets[asked, i]
                cells.append(f"{field} {right.mean():.2f} (n={asked.sum()})")
        print(f"  {group} (n={len(chosen)}): " + "; ".join(cells))


if __name__ == "__main__":
    main()
