"""Conv2d's patches x matmul path computes what XLA's convolution computes."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgen.models import layers


@pytest.mark.parametrize("hw,cin,kernel,stride,padding", [
    (2, 16, 3, 1, 1),  # 2x2 output: XLA's slow case
    (4, 512, 3, 1, 1),  # <= 8x8 with many channels
    (4, 16, 3, 2, 1),  # a Downsample2D
    (5, 16, 3, 2, 0),  # the VAE's unpadded downsample (after its own asymmetric pad)
    (2, 16, 1, 1, 0),  # a 1x1 shortcut
])
def test_matmul_path_matches_convolution(hw, cin, kernel, stride, padding):
    assert layers.use_matmul((1, hw, hw, cin), kernel, stride, padding)
    x = jax.random.normal(jax.random.key(0), (3, hw, hw, cin))
    module = layers.Conv2d(8, kernel, stride, padding)
    params = module.init(jax.random.key(1), x)
    params = jax.tree.map(lambda a: a + 0.1, params)  # a non-zero bias too
    ours = module.apply(params, x)
    ref = jax.lax.conv_general_dilated(x, params["params"]["kernel"], (stride, stride),
                                       ((padding, padding),) * 2,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ref = ref + params["params"]["bias"]
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_large_outputs_keep_xla_convolution():
    assert not layers.use_matmul((1, 16, 16, 64), 3, 1, 1)
    assert not layers.use_matmul((1, 16, 16, 1280), 3, 1, 1)  # 256 positions: conv is as fast
