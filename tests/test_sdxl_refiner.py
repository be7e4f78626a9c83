"""The SDXL refiner's layout (a StableDiffusionXLImg2ImgPipeline directory without
text_encoder/tokenizer, requires_aesthetics_score): it loads and saves as diffusers writes it,
conditions on text_encoder_2 alone and on (original size, crop, aesthetic score) time ids,
refuses what it cannot use (text-to-image, target sizes, prompt_2; a base model refuses
aesthetic scores), and refines an image as StableDiffusionXLImg2ImgPipeline does, within 2/255."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgen.engine import sdxl
from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import GenerationRequest, RequestError
from jaxgen.weights.model_dir import load_model, save_model

SIDE, STEPS = 16, 4


@pytest.fixture(scope="module")
def refiner_dir(tmp_path_factory):
    from tests import tiny_sdxl

    return tiny_sdxl.build(tmp_path_factory.mktemp("tiny_refiner"), seed=3, refiner=True)


@pytest.fixture(scope="module")
def generator(refiner_dir):
    return Generator(load_model(refiner_dir), batch_size=4, compilation_cache=False,
                     mesh=make_mesh(devices=jax.local_devices()[:1]))


@pytest.fixture(scope="module")
def init_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("refiner_images") / "init.png"
    small = np.random.default_rng(1).integers(0, 256, (4, 4, 3), np.uint8)
    Image.fromarray(small).resize((SIDE, SIDE), Image.BILINEAR).save(path)
    return str(path)


def test_the_refiner_loads_and_saves_in_its_own_layout(generator, refiner_dir, tmp_path):
    model = generator.model
    assert model.family == "sdxl" and model.text_encoder is None and model.tokenizer is None
    assert model.requires_aesthetics_score and "text_encoder" not in model.params
    out = save_model(model, tmp_path / "saved")
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLImg2ImgPipeline"
    assert index["text_encoder"] == index["tokenizer"] == [None, None]
    assert index["requires_aesthetics_score"] is True
    again = load_model(out)
    assert again.text_encoder is None and again.requires_aesthetics_score
    assert jax.tree.all(jax.tree.map(np.array_equal, again.params, model.params))


def test_time_ids_are_original_size_crop_and_aesthetic_score():
    request = GenerationRequest("a", height=16, width=24, crops_coords_top_left=(2, 4))
    cond, uncond = sdxl.time_ids(request, aesthetic=True)
    assert cond.tolist() == [16, 24, 2, 4, 6.0] and uncond.tolist() == [16, 24, 2, 4, 2.5]
    scored = GenerationRequest("a", height=16, width=24, aesthetic_score=9,
                               negative_aesthetic_score=1.5)
    assert [ids[-1] for ids in sdxl.time_ids(scored, aesthetic=True)] == [9.0, 1.5]


@pytest.mark.parametrize("fields, field, reason", [
    ({}, "init_image", "is an SDXL refiner .* needs an init_image"),
    ({"init_image": "x.png", "target_size": (8, 8)}, "target_size", "aesthetic scores"),
    ({"init_image": "x.png", "prompt_2": "b"}, "prompt_2", "one text encoder"),
])
def test_the_refiner_rejects_what_it_cannot_use_naming_the_field(generator, fields, field,
                                                                 reason):
    with pytest.raises(RequestError, match=f"^{field} .*{reason}"):
        generator.prepare(GenerationRequest("a", height=SIDE, width=SIDE, **fields))


def test_a_base_model_rejects_aesthetic_scores(tiny_sdxl_dir):
    base = Generator(load_model(tiny_sdxl_dir), batch_size=1, compilation_cache=False,
                     mesh=make_mesh(devices=jax.local_devices()[:1]))
    with pytest.raises(RequestError, match="^aesthetic_score 7.0: .*takes no aesthetic score"):
        base.prepare(GenerationRequest("a", height=SIDE, width=SIDE, aesthetic_score=7.0))


def test_the_refiner_matches_stable_diffusion_xl_img2img_pipeline(generator, refiner_dir,
                                                                 init_image):
    """Default scores; scores of its own with a crop and negative sizes; a negative prompt:
    one batch, one compile."""
    from jaxgen.eval.diffusers_peer import DiffusersPeer

    base = dict(seed=2, steps=STEPS, sampler="euler", height=SIDE, width=SIDE,
                init_image=init_image, strength=0.75)
    requests = [GenerationRequest("a red circle", **base),
                GenerationRequest("a red circle", **base, aesthetic_score=9.0,
                                  negative_aesthetic_score=1.0, original_size=(64, 48),
                                  crops_coords_top_left=(4, 8),
                                  negative_original_size=(32, 32)),
                GenerationRequest("a blue square", negative_prompt="green", guidance=4.0,
                                  **base)]
    images = list(generator.generate(requests))
    assert generator.compiled_programs == 1
    assert np.abs(images[0].image.astype(int) - images[1].image).max() > 0  # scores reach it
    peer = DiffusersPeer(refiner_dir)
    for image in images:
        theirs = peer.images(image.request, image.inputs)[0]
        error = int(np.abs(image.image.astype(int) - theirs).max())
        print(f"refiner image-to-image (score {image.request.aesthetic_score}): "
              f"max {error}/255")
        assert error <= 2
        assert image.image.std() > 0


def test_the_refiner_inpaints_as_stable_diffusion_xl_inpaint_pipeline(generator, refiner_dir,
                                                                     init_image, tmp_path):
    from jaxgen.eval.diffusers_peer import DiffusersPeer

    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[2:10, 6:14] = 255
    Image.fromarray(mask, "L").save(tmp_path / "mask.png")
    request = GenerationRequest("a green triangle", seed=4, steps=STEPS, sampler="euler",
                                height=SIDE, width=SIDE, init_image=init_image,
                                mask_image=str(tmp_path / "mask.png"), strength=0.5,
                                aesthetic_score=8.0)
    (image,) = generator.generate([request])
    theirs = DiffusersPeer(refiner_dir).images(image.request, image.inputs)[0]
    error = int(np.abs(image.image.astype(int) - theirs).max())
    print(f"refiner inpainting: max {error}/255")
    assert error <= 2
