"""Guidance 1 runs one UNet pass per step: uncond + 1 * (cond - uncond) is cond, so the program
for requests at scale 1 (SamplingSpec.guided False) drops the unconditional half of the batch."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.engine.grouping import SamplingSpec
from jaxgen.engine.inputs import ItemInputs, noise_ids
from jaxgen.engine.sampling import SamplingProgram
from jaxgen.requests import GenerationRequest
from jaxgen.weights.model_dir import load_model
from jaxgen.weights.tokenizer import tokenize

PROMPTS = ["a red circle", "a blue square"]


def test_a_request_at_guidance_1_gets_the_unguided_program():
    assert SamplingSpec.of(GenerationRequest("a", guidance=1.0)).guided is False
    assert SamplingSpec.of(GenerationRequest("a", guidance=7.5)).guided is True
    assert SamplingSpec.of(GenerationRequest("a", guidance=0.0)).guided is True


class _CountingUNet:
    """Delegates to the UNet and records the batch of every call it traces."""

    def __init__(self, unet):
        self.unet, self.batches = unet, []

    def apply(self, variables, sample, *args, **kwargs):
        self.batches.append(sample.shape[0])
        return self.unet.apply(variables, sample, *args, **kwargs)


def test_the_unguided_program_runs_one_unet_pass_and_draws_the_same_images(tiny_sd1_dir):
    model = load_model(tiny_sd1_dir)
    inputs = ItemInputs(tokenize(model.tokenizer, PROMPTS), tokenize(model.tokenizer, ["", ""]),
                        noise_ids(np.array([0, 1]), np.array([0, 0])), jnp.array([1.0, 1.0]))
    images = {}
    for guided in (True, False):
        program = SamplingProgram.build(model, SamplingSpec(16, 16, 4, "ddim", guided=guided))
        unet = _CountingUNet(program.unet)
        program = dataclasses.replace(program, unet=unet)
        images[guided] = np.asarray(jax.jit(program)(model.params, inputs), np.int32)
        # One UNet call traced in the loop; for two items the guided one runs both branches
        # (4 rows a step), the unguided one 2.
        assert unet.batches == ([4] if guided else [2])
    assert np.abs(images[False] - images[True]).max() <= 1  # the same prediction, rounded
    assert images[True].std() > 5
