"""Loading and exporting diffusers-format directories; every failure names file and tensor."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
import safetensors.numpy
import torch

from jaxgen.weights.convert import WeightsError
from jaxgen.weights.model_dir import ModelDirError, load_model, save_model


def _copy(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def _edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_export_round_trip_is_exact(tiny_sd2_dir, tmp_path):
    model = load_model(tiny_sd2_dir)
    out = save_model(model, tmp_path / "exported")
    for comp, stem in [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")]:
        orig = safetensors.numpy.load_file(tiny_sd2_dir / comp / f"{stem}.safetensors")
        back = safetensors.numpy.load_file(out / comp / f"{stem}.safetensors")
        assert orig.keys() == back.keys()
        for k in orig:
            np.testing.assert_array_equal(orig[k], back[k], err_msg=f"{comp}/{k}")
    again = load_model(out)
    same = jax.tree.map(lambda a, b: bool((a == b).all()), model.params, again.params)
    assert all(jax.tree.leaves(same))


def test_diffusers_opens_the_exported_directory(tiny_sd1_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = save_model(load_model(tiny_sd1_dir), tmp_path / "exported")
    ref = StableDiffusionPipeline.from_pretrained(tiny_sd1_dir)
    pipe = StableDiffusionPipeline.from_pretrained(out)
    kwargs = dict(height=16, width=16, num_inference_steps=2, output_type="np")
    a = pipe("a red circle", generator=torch.Generator().manual_seed(0), **kwargs).images
    b = ref("a red circle", generator=torch.Generator().manual_seed(0), **kwargs).images
    np.testing.assert_array_equal(a, b)


def test_fp16_variant_loads(tiny_sd1_dir, tmp_path):
    path = _copy(tiny_sd1_dir, tmp_path)
    for comp, stem in [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")]:
        f = path / comp / f"{stem}.safetensors"
        state = safetensors.numpy.load_file(f)
        safetensors.numpy.save_file({k: v.astype(np.float16) for k, v in state.items()},
                                    path / comp / f"{stem}.fp16.safetensors")
        f.unlink()
    with pytest.raises(ModelDirError, match="variant='fp16'"):
        load_model(path)
    model = load_model(path, variant="fp16")
    ref = load_model(tiny_sd1_dir)
    leaf = model.params["unet"]["conv_in"]["kernel"]
    assert leaf.dtype == np.float32
    np.testing.assert_allclose(leaf, ref.params["unet"]["conv_in"]["kernel"], rtol=1e-3, atol=1e-4)


def test_pickled_weights_are_refused_unless_allowed(tiny_sd1_dir, tmp_path):
    path = _copy(tiny_sd1_dir, tmp_path)
    f = path / "vae" / "diffusion_pytorch_model.safetensors"
    state = safetensors.numpy.load_file(f)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()},
               path / "vae" / "diffusion_pytorch_model.bin")
    f.unlink()
    with pytest.raises(ModelDirError, match="pickled.*allow_pickle"):
        load_model(path)
    assert load_model(path, allow_pickle=True).params["vae"]


def test_missing_file_names_the_path(tiny_sd1_dir, tmp_path):
    path = _copy(tiny_sd1_dir, tmp_path)
    (path / "unet" / "config.json").unlink()
    with pytest.raises(ModelDirError, match="unet/config.json: file is missing"):
        load_model(path)


def test_wrong_shape_names_file_and_tensor(tiny_sd1_dir, tmp_path):
    path = _copy(tiny_sd1_dir, tmp_path)
    f = path / "unet" / "diffusion_pytorch_model.safetensors"
    state = safetensors.numpy.load_file(f)
    state["conv_in.weight"] = state["conv_in.weight"][:, :2]
    safetensors.numpy.save_file(state, f)
    shape = r"\(32, 2, 3, 3\)"
    with pytest.raises(WeightsError, match=rf"unet: tensor 'conv_in.weight' has shape {shape}"):
        load_model(path)


def test_unknown_and_missing_tensors_are_named(tiny_sd1_dir, tmp_path):
    path = _copy(tiny_sd1_dir, tmp_path)
    f = path / "vae" / "diffusion_pytorch_model.safetensors"
    state = safetensors.numpy.load_file(f)
    state["decoder.extra.weight"] = np.zeros(3, np.float32)
    safetensors.numpy.save_file(state, f)
    with pytest.raises(WeightsError, match="'decoder.extra.weight' has no place"):
        load_model(path)
    del state["decoder.extra.weight"], state["encoder.conv_in.bias"]
    safetensors.numpy.save_file(state, f)
    with pytest.raises(WeightsError, match="missing tensors encoder.conv_in.bias"):
        load_model(path)


def test_unsupported_config_option_is_named(tiny_sd1_dir, tmp_path):
    path = _copy(tiny_sd1_dir, tmp_path)
    _edit_json(path / "unet" / "config.json", class_embed_type="timestep")
    with pytest.raises(ValueError, match="class_embed_type='timestep' is not supported"):
        load_model(path)


def test_not_a_directory_and_not_cached_says_so(tmp_path):
    with pytest.raises(ModelDirError, match="never downloads"):
        load_model("some-org/some-model-that-is-not-cached")
    with pytest.raises(ModelDirError, match="no model_index.json"):
        load_model(tmp_path)


def test_tokenizer_longer_than_the_text_encoder_is_refused(tiny_sd1_dir, tmp_path):
    path = _copy(tiny_sd1_dir, tmp_path)
    _edit_json(path / "text_encoder" / "config.json", max_position_embeddings=32)
    f = path / "text_encoder" / "model.safetensors"
    state = safetensors.numpy.load_file(f)
    key = "embeddings.position_embedding.weight"
    state[key] = state[key][:32]
    safetensors.numpy.save_file(state, f)
    with pytest.raises(ModelDirError, match="model_max_length 77 exceeds"):
        load_model(path)


def test_random_model_generates_finite_varied_images_and_opens_in_diffusers(tmp_path):
    from diffusers import StableDiffusionPipeline

    from jaxgen.engine.generator import Generator
    from jaxgen.engine.sharding import make_mesh
    from jaxgen.requests import GenerationRequest
    from jaxgen.weights.random_model import write_random_model

    path = write_random_model(tmp_path / "random")
    gen = Generator.from_pretrained(path, mesh=make_mesh(devices=jax.local_devices()[:1]),
                                    compilation_cache=False)
    image = next(iter(gen.generate([GenerationRequest("a red circle", seed=0, height=64,
                                                      width=64, steps=2)]))).image
    assert image.std() > 1  # NaN latents would decode to one flat value
    pipe = StableDiffusionPipeline.from_pretrained(path)
    assert len(pipe.vae.encoder.down_blocks) == 3
