"""SDXL pipeline directories load (family from model_index.json, both encoders and tokenizers,
fp16 variants) and export back in the format StableDiffusionXLPipeline opens."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch

from jaxgen.weights.model_dir import load_model, save_model


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir):
    return load_model(tiny_sdxl_dir)


def test_family_comes_from_model_index(sdxl, tiny_sd1_dir):
    assert sdxl.family == "sdxl"
    assert sdxl.components == ("unet", "vae", "text_encoder", "text_encoder_2")
    assert sdxl.force_zeros_for_empty_prompt is True  # diffusers' SDXL default, saved by it
    assert sdxl.vae.scaling_factor == 0.13025
    assert load_model(tiny_sd1_dir).family == "sd"


def test_both_tokenizers_and_encoders_load(sdxl, tiny_sdxl_dir):
    from transformers import CLIPTextModelWithProjection

    assert sdxl.tokenizer_2 is not None
    ref = CLIPTextModelWithProjection.from_pretrained(tiny_sdxl_dir / "text_encoder_2")
    assert sdxl.text_encoder_2.projection_dim == ref.config.projection_dim
    np.testing.assert_array_equal(sdxl.params["text_encoder_2"]["text_projection"]["kernel"],
                                  ref.text_projection.weight.detach().numpy().T)


def test_fp16_variant_loads(tiny_sdxl_dir, sdxl, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir).to(torch.float16)
    pipe.save_pretrained(tmp_path / "fp16", variant="fp16")
    half = load_model(tmp_path / "fp16", variant="fp16")
    # Every parameter is the float32 one rounded to float16.
    rounded = jax.tree.map(lambda a: np.asarray(a, np.float16).astype(np.float32), sdxl.params)
    jax.tree.map(np.testing.assert_array_equal, half.params, rounded)


def test_export_opens_in_diffusers_with_the_same_weights(sdxl, tiny_sdxl_dir, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    out = save_model(sdxl, tmp_path / "exported")
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == \
        "StableDiffusionXLPipeline"
    ours = StableDiffusionXLPipeline.from_pretrained(out)
    ref = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
    for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
        mine, theirs = getattr(ours, comp).state_dict(), getattr(ref, comp).state_dict()
        assert mine.keys() == theirs.keys(), comp
        for k in theirs:
            torch.testing.assert_close(mine[k], theirs[k], rtol=0, atol=0)
    assert ours.tokenizer_2("a red circle").input_ids == ref.tokenizer_2("a red circle").input_ids
    again = load_model(out)
    assert again.family == "sdxl" and again.force_zeros_for_empty_prompt is True
