"""--micro-batch K: every device computes K items at a time whatever the batch or the mesh, so an
image's bytes do not depend on either (docs/determinism.md: without it, 2 to 8 items per device
change a few images by 1/255)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import GenerationRequest
from jaxgen.weights.model_dir import load_model

REQUESTS = [GenerationRequest(f"a red circle {i}", seed=i, steps=2, height=16, width=16,
                              guidance=3.0) for i in range(24)]


def _images(model, devices: int, batch_size: int, micro_batch: int | None) -> np.ndarray:
    mesh = make_mesh(devices=jax.devices()[:devices])
    gen = Generator(model, mesh=mesh, batch_size=batch_size, micro_batch=micro_batch,
                    dtype="float32", compilation_cache=False)
    return np.stack([r.image for r in gen.generate(REQUESTS)])


def test_one_item_per_device_at_a_time_gives_the_same_bytes_whatever_the_batch(tiny_sd1_dir):
    model = load_model(tiny_sd1_dir)
    reference = _images(model, 8, 8, None)  # one item per device: today's default batch
    for devices, batch in ((8, 24), (2, 8)):
        assert np.array_equal(_images(model, devices, batch, 1), reference), (devices, batch)


def test_a_batch_that_is_not_a_multiple_of_the_micro_batches_is_refused(tiny_sd1_dir):
    with pytest.raises(ValueError, match="micro_batch 2: batch_size 8 must be a multiple"):
        Generator(load_model(tiny_sd1_dir), mesh=make_mesh(devices=jax.devices()[:8]),
                  batch_size=8, micro_batch=2, compilation_cache=False)
