"""Are two `jaxgen train` checkpoints of the same step bit-identical? Or a checkpoint and a model?

    python -m research.shapes.compare_checkpoints runs/a/unet/checkpoints/250 \\
        runs/b/unet/checkpoints/250
    python -m research.shapes.compare_checkpoints runs/repro/vae/checkpoints/6000 --shipped vae

With two checkpoints: restores both orbax TrainState checkpoints as plain arrays and compares
every leaf (params, EMA params, optimiser state, step). Training batches and keys are functions
of the step, so a from-scratch rerun that matches at one checkpoint reruns the same model.

With --shipped COMPONENT: compares the checkpoint's EMA params (what `jaxgen train` exports),
cast to the model's weight-file dtype, with that component of a model directory (--model,
default: the shipped default model). A from-scratch rerun that matches here trained the very
weights that were shipped.

Exit status 0 when all are identical, 1 otherwise; prints the number of leaves and the largest
absolute difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="a step directory of a checkpoints/ folder")
    p.add_argument("b", type=Path, nargs="?", help="another one")
    p.add_argument("--shipped", choices=("vae", "unet", "text_encoder"),
                   help="compare A's EMA params with this component of a model directory")
    p.add_argument("--model", help="model directory (default: the shipped default model)")
    p.add_argument("--dtype", default="float16", help="the model's weight-file dtype")
    args = p.parse_args()
    if (args.b is None) == (args.shipped is None):
        p.error("give either a second checkpoint or --shipped COMPONENT")
    a = _restore(args.a)
    if args.b is not None:
        return _compare(a, _restore(args.b), "bit-identical")

    import jax

    from jaxgen.default_model import default_model_path
    from jaxgen.weights.model_dir import load_model

    ema = a["ema_params"]
    trained = ema[args.shipped] if args.shipped in ema else ema  # the VAE stage: bare params
    # As exported: float32 -> the file's dtype; the model loads it back as float32.
    trained = jax.tree.map(lambda x: np.asarray(x).astype(args.dtype).astype(np.float32), trained)
    shipped = load_model(args.model or default_model_path()).params[args.shipped]
    return _compare(trained, shipped, f"identical as stored ({args.dtype})")


def _restore(step_dir: Path) -> Any:
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore((step_dir / "default").absolute())


def _compare(tree_a: Any, tree_b: Any, same: str) -> int:
    import jax

    leaves_a, leaves_b = (jax.tree_util.tree_leaves_with_path(t) for t in (tree_a, tree_b))
    keys = [jax.tree_util.keystr(k) for k, _ in leaves_a]
    if keys != [jax.tree_util.keystr(k) for k, _ in leaves_b]:
        print("the two hold different trees")
        return 1
    worst, differing = 0.0, []
    for key, (_, x), (_, y) in zip(keys, leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
            differing.append(key)
            if x.shape == y.shape and np.issubdtype(x.dtype, np.number):
                diff = np.abs(x.astype(np.float64) - y.astype(np.float64)).max()
                worst = max(worst, float(diff))
    total = sum(np.asarray(x).size for _, x in leaves_a)
    if differing:
        print(f"{len(differing)} of {len(leaves_a)} leaves differ (max |diff| {worst:.3g}); "
              f"first: {differing[:3]}")
        return 1
    print(f"{same}: {len(leaves_a)} leaves, {total:,} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
