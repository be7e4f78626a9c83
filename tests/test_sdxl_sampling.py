"""SDXL through the Generator, unchanged for callers: both text encoders, micro-conditioning
and force_zeros_for_empty_prompt give diffusers' StableDiffusionXL* pipelines' images from
the same noise, within 2/255, in text-to-image, image-to-image and inpainting."""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxgen.engine import sdxl
from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import MAX_SEED, GenerationRequest, RequestError, stable_seed
from jaxgen.weights.model_dir import load_model

SIDE, STEPS = 16, 3


@pytest.fixture(scope="module")
def model(tiny_sdxl_dir):
    return load_model(tiny_sdxl_dir)


@pytest.fixture(scope="module")
def generator(model):
    """One device, one item per batch: each mode's program compiles once."""
    return Generator(model, batch_size=1, compilation_cache=False,
                     mesh=make_mesh(devices=jax.local_devices()[:1]))


@pytest.fixture(scope="module")
def peer(tiny_sdxl_dir):
    from jaxgen.eval.diffusers_peer import DiffusersPeer

    return DiffusersPeer(tiny_sdxl_dir)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl_images")
    small = np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8)
    Image.fromarray(small).resize((SIDE, SIDE), Image.BILINEAR).save(root / "init.png")
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[4:12, 2:10] = 255
    Image.fromarray(mask, "L").save(root / "mask.png")
    return {"init": str(root / "init.png"), "mask": str(root / "mask.png")}


def max_error(ours: np.ndarray, theirs: np.ndarray) -> int:
    return int(np.abs(ours.astype(np.int32) - theirs.astype(np.int32)).max())


def test_prompt_2_is_refused_by_a_model_with_one_text_encoder(tiny_sd1_dir):
    sd1 = Generator(load_model(tiny_sd1_dir), batch_size=1, compilation_cache=False,
                    mesh=make_mesh(devices=jax.local_devices()[:1]))
    with pytest.raises(RequestError, match="prompt_2 'b': model 'tiny-sd1' has one text"):
        sd1.prepare(GenerationRequest("a", prompt_2="b"))


def test_a_request_without_prompt_2_keeps_its_seed():
    """The seed key of a request with no prompt_2 is the one it had before prompt_2 existed."""
    plain = GenerationRequest("a red circle")
    key = "0:request:a red circle\x1f\x1f7.5\x1f25\x1f512x512\x1fdpmpp_2m"
    before = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    assert stable_seed(0, None, plain) == before & MAX_SEED
    assert stable_seed(0, None, plain) != stable_seed(
        0, None, GenerationRequest("a red circle", prompt_2="a square"))


def test_micro_conditioning_is_original_size_crop_and_target_size():
    cond, uncond = sdxl.time_ids(GenerationRequest("a", height=16, width=24))
    assert cond.tolist() == uncond.tolist() == [16, 24, 0, 0, 16, 24]


def test_an_item_without_negative_prompt_has_a_zero_negative_branch(model):
    """force_zeros_for_empty_prompt: zeros for the item that gives no negative prompt, its
    encoded negative prompt for the one that does."""
    ids = jnp.ones((2, 77), jnp.int32)
    text, text_2 = model.modules()[2], model.text_encoder_2_module()
    encode = jax.jit(lambda p, zero: sdxl.encode_branch(text, text_2, p, ids, ids, zero))
    context, pooled = encode(model.params, jnp.array([True, False]))
    assert context.shape == (2, 77, model.unet.cross_attention_dim)
    assert not np.any(context[0]) and not np.any(pooled[0])
    assert np.all(np.any(context[1] != 0, axis=-1)) and np.any(pooled[1])


def test_text_to_image_matches_stable_diffusion_xl_pipeline(generator, peer):
    """Euler (SDXL's scheduler) with no negative prompt (force_zeros), with one, and with a
    prompt_2 of its own for the second encoder."""
    requests = [GenerationRequest("a red circle", seed=1, steps=STEPS, sampler="euler",
                                  height=SIDE, width=SIDE),
                GenerationRequest("a large blue square", negative_prompt="red", seed=7,
                                  guidance=5.0, steps=STEPS, sampler="euler", height=SIDE,
                                  width=SIDE),
                GenerationRequest("a red circle", prompt_2="a green triangle", seed=1,
                                  steps=STEPS, sampler="euler", height=SIDE, width=SIDE)]
    images = list(generator.generate(requests))
    assert max_error(images[0].image, images[2].image) > 0  # prompt_2 reached encoder 2
    for image in images:
        theirs = peer.images(image.request)[0]
        error = max_error(image.image, theirs)
        print(f"text-to-image seed {image.request.seed}: max {error}")
        assert error <= 2
        assert image.image.std() > 0  # not a blank image that would match anything


@pytest.mark.parametrize("mask", [False, True], ids=["image-to-image", "inpainting"])
def test_image_modes_match_stable_diffusion_xl_pipelines(generator, peer, files, mask):
    request = GenerationRequest("a green triangle", seed=3, steps=STEPS, sampler="euler",
                                height=SIDE, width=SIDE, init_image=files["init"],
                                mask_image=files["mask"] if mask else None,
                                strength=1.0 if mask else 0.7)
    (image,) = generator.generate([request])
    assert image.request.mode == ("inpainting" if mask else "image-to-image")
    error = max_error(image.image, peer.images(image.request, image.inputs)[0])
    print(f"{image.request.mode}: max {error}")
    assert error <= 2
