"""Are two `jaxgen train` checkpoints of the same step bit-identical?

    python scripts/compare_checkpoints.py runs/a/unet/checkpoints/250 runs/b/unet/checkpoints/250

Restores both orbax TrainState checkpoints as plain arrays and compares every leaf (params,
EMA params, optimiser state, step). Exit status 0 when all are bit-identical, 1 otherwise; prints
the number of leaves and the largest absolute difference. Training batches and keys are functions
of the step, so a from-scratch rerun that matches at one checkpoint reruns the same model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="a step directory of a checkpoints/ folder")
    p.add_argument("b", type=Path)
    args = p.parse_args()

    import jax
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    trees = [checkpointer.restore((d / "default").absolute()) for d in (args.a, args.b)]
    leaves_a, leaves_b = (jax.tree_util.tree_leaves_with_path(t) for t in trees)
    if [k for k, _ in leaves_a] != [k for k, _ in leaves_b]:
        print("the two checkpoints hold different trees")
        return 1
    worst, differing = 0.0, []
    for (key, x), (_, y) in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
            differing.append(jax.tree_util.keystr(key))
            if x.shape == y.shape and np.issubdtype(x.dtype, np.number):
                diff = np.abs(x.astype(np.float64) - y.astype(np.float64)).max()
                worst = max(worst, float(diff))
    total = sum(np.asarray(x).size for _, x in leaves_a)
    if differing:
        print(f"{len(differing)} of {len(leaves_a)} leaves differ (max |diff| {worst:.3g}); "
              f"first: {differing[:3]}")
        return 1
    print(f"bit-identical: {len(leaves_a)} leaves, {total:,} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
