"""How a model's ShapesEval prompts fail: object counts, shape confusions, relation parts.

    python -m research.shapes.diagnose_default_model --model jaxgen/assets/default-model \\
        --out runs/diagnose

Generates the `jaxgen eval` prompts with jaxgen's sampler (same seeds, so the images are the
evaluation's own), or with --reconstruction passes each prompt's own rendered scene through
the VAE (the ceiling of any model decoding with it); then writes OUT/breakdown.json and prints
the Markdown tables of jaxgen.eval.breakdown (the model card's "Where the prompts fail").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from jaxgen.default_model import EVAL_PROMPTS, RECOMMENDED

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", type=int, default=EVAL_PROMPTS)
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    p.add_argument("--steps", type=int, default=RECOMMENDED["steps"])
    p.add_argument("--sampler", default=RECOMMENDED["sampler"])
    p.add_argument("--reconstruction", action="store_true",
                   help="the rendered scenes through the VAE instead of generated images")
    p.add_argument("--out", type=Path, default=Path("runs/diagnose"))
    args = p.parse_args()

    import numpy as np

    from jaxgen.eval.breakdown import failure_breakdown, markdown
    from jaxgen.eval.shapes_eval import ShapesEval, model_generator, reconstruction_generator
    from jaxgen.weights.model_dir import load_model

    prompts = ShapesEval(args.prompts).prompts()
    model = load_model(args.model)
    if args.reconstruction:
        generate = reconstruction_generator(model.vae, model.params["vae"], prompts)
    else:
        generate = model_generator(model, guidance=args.guidance, steps=args.steps,
                                   sampler=args.sampler)
    images = generate([p.text for p in prompts], np.array([p.seed for p in prompts], np.int64))
    breakdown = failure_breakdown(prompts, images)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    (args.out / "breakdown.json").write_text(
        json.dumps({**settings, **breakdown}, indent=2) + "\n")
    print(markdown(breakdown))


if __name__ == "__main__":
    main()
