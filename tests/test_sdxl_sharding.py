"""SDXL with its parameters split over the 'model' axis (tensor parallel) draws the images
the data-parallel layout draws, within 1/255: UNet kernels, the text_time add_embedding and
both text encoders (the second's projection too) split as the rule says."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import GenerationRequest
from jaxgen.weights.model_dir import load_model

SHARD = 64  # min_shard_size: low enough that the tiny model's kernels split


def requests() -> list[GenerationRequest]:
    return [GenerationRequest("a red circle", seed=0, steps=3, height=16, width=16,
                              prompt_2="a green circle"),
            GenerationRequest("a blue square", seed=1, steps=3, height=16, width=16,
                              negative_prompt="blue")]


@pytest.fixture(scope="module")
def model(tiny_sdxl_dir):
    return load_model(tiny_sdxl_dir)


@pytest.fixture(scope="module")
def sharded(model):
    """Two devices, both on 'model': one replica split in two."""
    return Generator(model, mesh=make_mesh(model_parallel=2, devices=jax.local_devices()[:2]),
                     batch_size=2, compilation_cache=False, min_shard_size=SHARD)


def split(params) -> set[str]:
    """'/'-joined paths of the parameters split over 'model'."""
    return {"/".join(str(getattr(k, "key", k)) for k in path)
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if "model" in str(leaf.sharding.spec)}


def test_sdxl_kernels_split_over_model(sharded):
    paths = split(sharded.params)
    for part in ("unet/down_blocks_1/attentions_0", "unet/add_embedding/linear_1",
                 "text_encoder/", "text_encoder_2/", "text_encoder_2/text_projection", "vae/"):
        assert any(part in p for p in paths), part


def test_model_parallel_images_match_data_parallel(model, sharded):
    data_parallel = Generator(model, mesh=make_mesh(devices=jax.local_devices()[:1]),
                              batch_size=2, compilation_cache=False)
    ours = np.stack([g.image for g in sharded.generate(requests())]).astype(np.int32)
    theirs = np.stack([g.image for g in data_parallel.generate(requests())]).astype(np.int32)
    assert np.abs(ours - theirs).max() <= 1
    assert ours.std() > 0  # real images, not a constant both layouts could agree on
