"""What each device computes at once: --micro-batch K (K items at a time whatever the batch or
the mesh, so an image's bytes depend on neither; docs/determinism.md: without it, 2 to 8 items
per device change a few images by 1/255), and sizes whose estimated memory no device holds
(rejected per request before compiling)."""

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


def test_a_size_no_device_can_hold_is_the_requests_reject_before_compiling(tiny_sd1_dir):
    """The estimate (engine.memory): one attention layer's scores at 4096x4096 are terabytes."""
    gen = Generator(load_model(tiny_sd1_dir), mesh=make_mesh(devices=jax.devices()[:8]),
                    dtype="float32", compilation_cache=False)
    huge = GenerationRequest("a red circle", seed=1, steps=1, height=4096, width=4096)
    small = GenerationRequest("a red circle", seed=2, steps=1, height=16, width=16)
    rejected = []
    images = list(gen.generate([huge, small],
                               on_reject=lambda i, r, e: rejected.append((i, e.field, str(e)))))
    assert [r.request.seed for r in images] == [2] and gen.compiled_programs == 1
    [(position, field, reason)] = rejected
    assert position == 0 and field == "height" and "4096x4096 needs about" in reason
