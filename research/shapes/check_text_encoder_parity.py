"""jaxgen's CLIP text encoder against transformers' on a model directory's own weights.

    python -m research.shapes.check_text_encoder_parity jaxgen/assets/default-model \\
        [OTHER_MODEL ...]

Both in float32, on the first N evaluation prompts: the largest absolute difference in the last
hidden state (what the UNet reads) and the largest magnitude there, for scale.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()

    import jax.numpy as jnp
    import torch
    from transformers import CLIPTextModel

    from jaxgen.eval.shapes_eval import eval_prompts
    from jaxgen.weights.model_dir import load_model
    from jaxgen.weights.tokenizer import tokenize

    prompts = [p.text for p in eval_prompts(args.prompts)]
    for model_dir in args.models:
        model = load_model(model_dir)
        _, _, text = model.modules(jnp.float32)
        ids = tokenize(model.tokenizer, prompts)
        ours, _ = text.apply({"params": model.params["text_encoder"]}, jnp.asarray(ids), 0)
        peer = CLIPTextModel.from_pretrained(f"{model_dir}/text_encoder", dtype=torch.float32)
        with torch.inference_mode():
            ref = peer(torch.from_numpy(ids.astype(np.int64))).last_hidden_state.numpy()
        diff = float(np.abs(np.asarray(ours) - ref).max())
        print(f"{model_dir}: max |jaxgen - transformers| {diff:.2g}, "
              f"max |state| {float(np.abs(ref).max()):.3g} ({len(prompts)} prompts)")


if __name__ == "__main__":
    main()
