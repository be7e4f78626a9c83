"""Image-to-image and inpainting: diffusers' pipelines from the same noise, per-item start
steps that never recompile, and images that do not depend on batch, padding or mesh."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgen.engine.generator import Generator
from jaxgen.engine.inputs import start_step
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import GenerationRequest

SIDE, STEPS = 16, 5
TOLERANCE = 2  # /255 per pixel, as text-to-image's parity


def picture(seed: int, size: tuple[int, int] = (SIDE, SIDE)) -> np.ndarray:
    """A smooth colour field: something for the VAE to keep."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), np.uint8)
    return np.asarray(Image.fromarray(small).resize(size[::-1], Image.BILINEAR))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("init_images")
    paths = {}
    for name, seed in (("a", 1), ("b", 2)):
        paths[name] = str(root / f"{name}.png")
        Image.fromarray(picture(seed)).save(paths[name])
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[4:12, 2:10] = 255  # white = repaint
    mask[0, 12] = 200  # grey at or above half: repainted, as diffusers binarizes at 0.5
    paths["mask"] = str(root / "mask.png")
    Image.fromarray(mask, "L").save(paths["mask"])
    paths["odd"] = str(root / "odd.png")
    Image.fromarray(picture(3, (13, 18))).save(paths["odd"])
    return paths


def request(files, seed: int, strength: float = 0.6, mask: bool = False, **fields):
    return GenerationRequest("a red circle on a blue background", seed=seed, steps=STEPS,
                             sampler="ddim", height=SIDE, width=SIDE, init_image=files["a"],
                             mask_image=files["mask"] if mask else None, strength=strength,
                             **fields)


def generator(model_dir, n_devices: int = 2, batch_size: int = 2) -> Generator:
    return Generator.from_pretrained(model_dir, batch_size=batch_size, compilation_cache=False,
                                     mesh=make_mesh(devices=jax.local_devices()[:n_devices]))


def max_error(ours: np.ndarray, theirs: np.ndarray) -> int:
    return int(np.abs(ours.astype(np.int32) - theirs.astype(np.int32)).max())


@pytest.fixture(scope="module")
def sd1(tiny_sd1_dir):
    """One Generator for the tests on the SD 1.x-style model: each program compiles once."""
    return generator(tiny_sd1_dir)


@pytest.fixture(scope="module", params=["sd1", "sd2"])
def pair(request, sd1, tiny_sd1_dir, tiny_sd2_dir):
    from jaxgen.eval.diffusers_peer import DiffusersPeer

    if request.param == "sd1":
        return sd1, DiffusersPeer(tiny_sd1_dir)
    return generator(tiny_sd2_dir), DiffusersPeer(tiny_sd2_dir)


def test_start_step_is_diffusers_get_timesteps():
    assert [start_step(10, s) for s in (1.0, 0.8, 0.75, 0.5, 0.15, 0.05)] == [0, 2, 3, 5, 9, 10]
    assert start_step(3, 0.7) == 1  # int(2.1) = 2 steps run


def test_image_to_image_and_inpainting_match_diffusers(pair, files):
    gen, peer = pair
    requests = [request(files, 11, 0.6), request(files, 12, 1.0),
                request(files, 13, 0.6, mask=True), request(files, 14, 1.0, mask=True)]
    results = list(gen.generate(requests))
    errors = [max_error(r.image, peer.images(r.request, r.inputs)[0]) for r in results]
    print("max error per image (img2img 0.6, 1.0; inpainting 0.6, 1.0):", errors)
    assert max(errors) <= TOLERANCE
    # Not vacuous: strength changes the image, and the mask keeps what lies outside it.
    assert max_error(results[0].image, results[1].image) > 10
    assert all(r.finite for r in results)


def test_a_9_channel_inpainting_unet_matches_diffusers(tiny_inpainting_dir, files):
    from jaxgen.eval.diffusers_peer import DiffusersPeer

    gen, peer = generator(tiny_inpainting_dir), DiffusersPeer(tiny_inpainting_dir)
    results = list(gen.generate([request(files, 21, 1.0, mask=True),
                                 request(files, 22, 0.6, mask=True)]))
    errors = [max_error(r.image, peer.images(r.request, r.inputs)[0]) for r in results]
    print("9-channel max error (strength 1.0, 0.6):", errors)
    assert max(errors) <= TOLERANCE
    with pytest.raises(Exception, match="inpainting model"):
        list(gen.generate([request(files, 23)]))  # image-to-image: no mask to give it


def test_an_item_does_not_depend_on_batch_padding_mesh_or_strengths_beside_it(sd1, tiny_sd1_dir,
                                                                               files):
    mixed = [request(files, 31, 0.6), request(files, 32, 1.0), request(files, 33, 0.4),
             dataclasses.replace(request(files, 34, 0.8), init_image=files["b"])]
    wide = generator(tiny_sd1_dir, n_devices=4, batch_size=8)  # one padded batch of 8
    alone = [g.image for r in mixed for g in sd1.generate([r])]  # each padded with itself
    together = [g.image for g in wide.generate(mixed)]
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    # Four strengths, one mode and shape: one program.
    assert wide.compiled_programs == 1


def test_the_generator_reads_images_fills_sizes_and_reports_rejects(sd1, files):
    rejects = []
    unsized = dataclasses.replace(request(files, 41), init_image=files["odd"], height=None,
                                  width=None)
    requests = [
        request(files, 40),
        dataclasses.replace(request(files, 42), init_image=files["a"] + ".missing"),
        request(files, 43, strength=0.1),  # int(5 * 0.1) = 0 steps
        unsized,
    ]
    results = list(sd1.generate(requests, on_reject=lambda *a: rejects.append(a)))
    assert sorted((p, e.field) for p, _, e in rejects) == [(1, "init_image"), (2, "strength")]
    assert [r.request.seed for r in results] == [40, 41]
    # The image's own size (13x18) rounded to the model's multiple of 8.
    assert results[1].image.shape == (16, 16, 3)
    assert (results[1].request.height, results[1].request.width) == (16, 16)
    assert results[0].inputs.image_ref == files["a"] and results[0].inputs.image_sha256
    assert all(r.finite for r in results)
    # Text-to-image without a size: the model's native one.
    native = sd1.prepare(dataclasses.replace(unsized, init_image=None))
    assert (native.height, native.width) == (16, 16) == (sd1.model.native_size,) * 2
    with pytest.raises(Exception, match="init_image"):  # without on_reject: raised
        list(sd1.generate(requests[:2]))
