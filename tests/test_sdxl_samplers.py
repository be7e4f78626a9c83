"""Every jaxgen sampler on an SDXL model gives StableDiffusionXLPipeline's image with the
matching diffusers scheduler (jaxgen.eval.diffusers_peer.SCHEDULERS) from the same noise,
within 2/255."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import SAMPLERS, GenerationRequest
from jaxgen.weights.model_dir import load_model

SIDE = 16
# Ancestral samplers add fresh noise between steps, drawn differently by each side: one step
# (whose target sigma is 0, so it adds none) compares them from the same initial noise alone.
ANCESTRAL = ("euler_ancestral", "ddpm")


@pytest.fixture(scope="module")
def generator(tiny_sdxl_dir):
    return Generator(load_model(tiny_sdxl_dir), batch_size=1, compilation_cache=False,
                     mesh=make_mesh(devices=jax.local_devices()[:1]))


@pytest.fixture(scope="module")
def peer(tiny_sdxl_dir):
    from jaxgen.eval.diffusers_peer import DiffusersPeer

    return DiffusersPeer(tiny_sdxl_dir)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_matches_stable_diffusion_xl_pipeline(generator, peer, sampler):
    request = GenerationRequest("a red circle", negative_prompt="blue", seed=11, guidance=5.0,
                                steps=1 if sampler in ANCESTRAL else 3, sampler=sampler,
                                height=SIDE, width=SIDE)
    (image,) = generator.generate([request])
    error = int(np.abs(image.image.astype(int) - peer.images(image.request)[0]).max())
    print(f"{sampler}: max {error}/255")
    assert error <= 2
    assert image.image.std() > 0
