"""The sampling program's seams: latent shape from the VAE, the per-step hook, the latent mask,
and one grouping rule for "same compiled program"."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.engine.decode import decode_latents
from jaxgen.engine.denoise import DenoiseStep, predicted_clean_latents
from jaxgen.engine.generator import Generator
from jaxgen.engine.grouping import SamplingSpec
from jaxgen.engine.inputs import ItemInputs, noise_ids
from jaxgen.engine.sampling import SamplingProgram
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import GenerationRequest
from jaxgen.weights.model_dir import load_model
from jaxgen.weights.tokenizer import tokenize

SPEC = SamplingSpec(16, 16, steps=3, sampler="ddim")
PROMPTS = ["a red circle on a blue background", "a large green square left of a triangle"]


@pytest.fixture(scope="module")
def model(tiny_sd1_dir):
    return load_model(tiny_sd1_dir)


@pytest.fixture(scope="module")
def program(model):
    return SamplingProgram.build(model, SPEC)


def inputs_for(model, **fields) -> ItemInputs:
    return ItemInputs(tokenize(model.tokenizer, PROMPTS), tokenize(model.tokenizer, ["", ""]),
                      noise_ids(np.array([3, 4]), np.array([0, 0])), jnp.array([7.5, 7.5]),
                      **fields)


def batch_latents(program: SamplingProgram) -> tuple[int, ...]:
    return (len(PROMPTS), *program.latent_shape)


@pytest.fixture(scope="module")
def images(model, program):
    return np.asarray(jax.jit(program)(model.params, inputs_for(model)))


def test_latent_channels_come_from_the_vae_not_the_unet_input(model):
    # An inpainting UNet takes 9 channels (latents, mask, masked image); its noise has the VAE's 4.
    inpainting = dataclasses.replace(model, unet=dataclasses.replace(model.unet, in_channels=9))
    program = SamplingProgram.build(inpainting, SPEC)
    f = model.latent_factor
    assert program.latent_shape == (16 // f, 16 // f, model.vae.latent_channels) == (8, 8, 4)
    assert program.inpainting_unet and not SamplingProgram.build(model, SPEC).inpainting_unet
    # Its extra channels come from an init image and a mask: text-to-image has neither.
    with pytest.raises(ValueError, match="needs an init_image"):
        jax.eval_shape(program, inpainting.params, inputs_for(model))


def test_recording_hook_sees_every_step_and_leaves_the_images_bit_identical(model, program,
                                                                              images):
    steps, shape = SPEC.steps, batch_latents(program)

    def record(step: DenoiseStep, carry):  # a probe: each step's latents and clean estimate
        count, latents, clean = carry
        latents = latents.at[step.index].set(step.next_latents)
        clean = clean.at[step.index].set(predicted_clean_latents(program.sampler, step))
        return step.next_latents, (count + 1, latents, clean)

    carry = (jnp.int32(0), jnp.zeros((steps, *shape)), jnp.zeros((steps, *shape)))
    run = jax.jit(lambda p, x, c: program.run(p, x, hook=record, hook_carry=c))
    hooked, (count, latents, clean) = run(model.params, inputs_for(model), carry)
    assert np.array_equal(np.asarray(hooked), images)
    assert int(count) == steps
    assert all(np.abs(np.asarray(latents[i])).max() > 0 for i in range(steps))
    # The last recorded latents are the ones decoding turned into the images.
    decoded = jax.jit(lambda p, z: decode_latents(program.vae, p, z, program.scaling_factor))(
        model.params["vae"], latents[-1])
    assert np.array_equal(np.asarray(decoded), images)
    # The clean estimate converges on the result: the last step's is nearer than the first's.
    gap = [np.abs(np.asarray(clean[i]) - np.asarray(latents[-1])).mean() for i in (0, -1)]
    assert gap[1] < gap[0]


def test_a_hook_that_changes_the_latents_changes_the_images(model, program, images):
    def push(step: DenoiseStep, carry):
        return step.next_latents + 0.5, carry

    pushed, _ = jax.jit(lambda p, x: program.run(p, x, hook=push))(model.params,
                                                                    inputs_for(model))
    assert np.abs(np.asarray(pushed, np.int32) - images).max() > 10


def test_known_latents_are_kept_outside_the_mask_and_ignored_inside(model, program, images):
    shape = batch_latents(program)
    known = jax.random.normal(jax.random.key(7), shape)
    final = jax.jit(lambda p, x: program.run(
        p, x, hook=lambda s, c: (s.next_latents, s.next_latents),
        hook_carry=jnp.zeros(shape)))
    everywhere = inputs_for(model, mask=jnp.ones((*shape[:-1], 1)), known_latents=known)
    nowhere = inputs_for(model, mask=jnp.zeros((*shape[:-1], 1)), known_latents=known)
    generated, _ = final(model.params, everywhere)
    _, kept = final(model.params, nowhere)
    assert np.array_equal(np.asarray(generated), images)  # mask 1: the text-to-image result
    assert np.array_equal(np.asarray(kept), np.asarray(known))  # mask 0: the known latents


def test_requests_share_a_program_exactly_when_their_sampling_spec_is_equal():
    base = GenerationRequest("a red circle", height=64, width=64, steps=10, sampler="ddim")
    same = [dataclasses.replace(base, prompt="a cat", negative_prompt="blurry", seed=5,
                                guidance=2.0, num_images=3, id="x")]
    other = [dataclasses.replace(base, **{k: v}) for k, v in
             dict(height=128, width=32, steps=11, sampler="euler", init_image="a.png").items()]
    # A mode is a program; a strength is not (each item's start step is an input).
    edit = dataclasses.replace(base, init_image="a.png", strength=0.3)
    assert SamplingSpec.of(edit) == SamplingSpec.of(dataclasses.replace(edit, strength=1.0))
    assert SamplingSpec.of(dataclasses.replace(edit, mask_image="m.png")).mode == "inpainting"
    assert all(SamplingSpec.of(r) == SamplingSpec.of(base) for r in same)
    assert all(SamplingSpec.of(r) != SamplingSpec.of(base) for r in other)
    # Sorting by spec groups requests by program: height, then width, steps, sampler.
    assert sorted(map(SamplingSpec.of, [*other, base]))[0] == SamplingSpec(64, 32, 10, "ddim")


def test_the_generator_compiles_a_spec_ahead_from_the_shapes_of_its_inputs(model):
    gen = Generator(model, mesh=make_mesh(devices=jax.local_devices()[:2]), batch_size=2,
                    compilation_cache=False)
    assert gen.compile(SPEC).cost_analysis()["flops"] > 0
    request = GenerationRequest(PROMPTS[0], seed=3, height=16, width=16, steps=3,
                                sampler="ddim")
    assert SamplingSpec.of(request) == SPEC
    assert [g.image.shape for g in gen.generate([request])] == [(16, 16, 3)]
    assert gen.compiled_programs == 1


def test_sample_reports_per_item_whether_its_final_latents_are_finite(model, program):
    noise = np.random.default_rng(0).standard_normal(batch_latents(program)).astype(np.float32)
    noise[1, 0, 0, 0] = np.nan  # a broken item: its NaN spreads through its own latents only
    _, finite = jax.jit(program.sample)(model.params, inputs_for(model, noise=jnp.asarray(noise)))
    assert np.asarray(finite).tolist() == [True, False]
