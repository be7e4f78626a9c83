"""Does a `jaxgen train` checkpoint hold the weights a shipped model directory holds?

    python scripts/compare_to_model.py runs/repro/vae/checkpoints/6000 vae
    python scripts/compare_to_model.py runs/repro/layout/checkpoints/2500 unet --model DIR

Restores the checkpoint's EMA params (what `jaxgen train` exports), casts them to the model's
weight-file dtype (float16 for the default model) and compares them with the model's component,
leaf by leaf. Exit status 0 when every weight is identical as stored, 1 otherwise; prints the
number of leaves and the largest absolute difference. A from-scratch rerun of a stage that
matches here trained the very weights that were shipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a step directory of a checkpoints/ folder")
    p.add_argument("component", choices=("vae", "unet", "text_encoder"))
    p.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    p.add_argument("--dtype", default="float16", help="the model's weight-file dtype")
    args = p.parse_args()

    import jax
    import orbax.checkpoint as ocp

    from jaxgen.default_model import default_model_path
    from jaxgen.weights.model_dir import load_model

    tree = ocp.StandardCheckpointer().restore((args.checkpoint / "default").absolute())
    ema = tree["ema_params"]
    trained = ema[args.component] if args.component in ema else ema
    shipped = load_model(args.model or default_model_path()).params[args.component]
    leaves_a = jax.tree_util.tree_leaves_with_path(trained)
    leaves_b = jax.tree_util.tree_leaves_with_path(shipped)
    if [jax.tree_util.keystr(k) for k, _ in leaves_a] != \
            [jax.tree_util.keystr(k) for k, _ in leaves_b]:
        print(f"the checkpoint's {args.component} and the model's hold different trees")
        return 1
    worst, differing = 0.0, []
    for (key, x), (_, y) in zip(leaves_a, leaves_b, strict=True):
        # As exported: float32 -> the file's dtype; the model loads it back as float32.
        x = np.asarray(x).astype(args.dtype).astype(np.float32)
        y = np.asarray(y, np.float32)
        if x.shape != y.shape or not np.array_equal(x, y):
            differing.append(jax.tree_util.keystr(key))
            if x.shape == y.shape:
                worst = max(worst, float(np.abs(x - y).max()))
    total = sum(np.asarray(x).size for _, x in leaves_a)
    if differing:
        print(f"{len(differing)} of {len(leaves_a)} leaves differ (max |diff| {worst:.3g}); "
              f"first: {differing[:3]}")
        return 1
    print(f"identical as stored ({args.dtype}): {len(leaves_a)} leaves, {total:,} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
