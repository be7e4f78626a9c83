"""Fresh parameters drawn on the host with flax's default initialisers' distributions.

Why not `module.init` under jit: XLA:CPU compiles one random-number program per parameter
(a small UNet has hundreds), so a jitted init is slow to compile, while the
parameter tree itself comes free from jax.eval_shape. The distributions follow flax's
defaults: lecun-normal kernels (truncated normal, variance 1/fan_in), zero biases, unit norm
scales, embeddings with variance 1/features.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np
from scipy import stats

# Truncated at +-2 std, rescaled to unit variance, as jax.nn.initializers.variance_scaling does.
_TRUNC_STD = float(stats.truncnorm.std(-2.0, 2.0))


def init_params(module: nn.Module, *example_args: Any, seed: int = 0) -> dict[str, Any]:
    """Params of `module` for inputs shaped like `example_args`, deterministic in `seed`."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *example_args)["params"]
    rng = np.random.default_rng(seed)

    def draw(path: tuple, leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        name = str(getattr(path[-1], "key", path[-1]))
        shape, dtype = leaf.shape, leaf.dtype
        if name == "bias":
            return np.zeros(shape, dtype)
        if name == "scale":
            return np.ones(shape, dtype)
        if name == "embedding":
            return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(dtype)
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            z = stats.truncnorm.rvs(-2.0, 2.0, size=shape, random_state=rng) / _TRUNC_STD
            return (z / np.sqrt(fan_in)).astype(dtype)
        raise ValueError(f"init_params: no initialiser for parameter "
                         f"{jax.tree_util.keystr(path)} of shape {shape}")

    return jax.tree_util.tree_map_with_path(draw, shapes)
