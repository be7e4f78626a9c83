"""SDXL's UNet and both text encoders compute what diffusers/transformers compute on the same
random weights (tiny SDXL-style configs): within 1e-5 relative L2 in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxgen.models import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTextWithProjectionConfig,
    UNet2DConditionModel,
    UNetConfig,
)
from jaxgen.models.unet import example_inputs
from jaxgen.weights.convert import torch_to_flax
from tests import tiny_sdxl
from tests.test_model_parity import RTOL, nhwc, rel_l2

PROMPTS = ["a red circle", "a large blue square on a green background"]


@pytest.fixture(scope="module")
def reference(tiny_sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)


def to_flax(module: torch.nn.Module, flax_module, *example_args) -> dict:
    shapes = jax.eval_shape(flax_module.init, jax.random.key(0), *example_args)["params"]
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    return torch_to_flax(state, shapes, type(module).__name__)


def test_unet_with_text_time_embedding_matches_diffusers(reference):
    cfg = UNetConfig.from_dict(dict(reference.unet.config))
    assert cfg.addition_embed_type == "text_time"
    assert cfg.transformer_layers_per_block == (1, 2)
    unet = UNet2DConditionModel(cfg)
    params = to_flax(reference.unet, unet, *example_inputs(cfg))
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, 16, 16, generator=g)
    context = torch.randn(2, 7, cfg.cross_attention_dim, generator=g)
    text_embeds = torch.randn(2, tiny_sdxl.PROJECTION, generator=g)
    # original size, crop top-left, target size: two items with different micro-conditioning
    time_ids = torch.tensor([[128., 128., 0., 0., 128., 128.], [1024., 768., 32., 16., 64., 64.]])
    t = torch.tensor([981, 17])
    with torch.no_grad():
        ref = reference.unet(sample, t, encoder_hidden_states=context, added_cond_kwargs={
            "text_embeds": text_embeds, "time_ids": time_ids}).sample
    ours = jax.jit(unet.apply)({"params": params}, jnp.asarray(nhwc(sample)),
                               jnp.asarray(t.numpy()), jnp.asarray(context.numpy()),
                               jnp.asarray(text_embeds.numpy()), jnp.asarray(time_ids.numpy()))
    error = rel_l2(ours, nhwc(ref))
    print(f"SDXL UNet relative L2 {error:.2e}, max abs {np.abs(ours - nhwc(ref)).max():.2e}")
    assert error < RTOL


def test_unet_without_time_ids_names_them(reference):
    cfg = UNetConfig.from_dict(dict(reference.unet.config))
    sample, t, context, _, _ = example_inputs(cfg)
    with pytest.raises(ValueError, match="text_embeds and time_ids"):
        jax.eval_shape(UNet2DConditionModel(cfg).init, jax.random.key(0), sample, t, context)


def test_unet_with_the_wrong_number_of_time_ids_names_the_widths(reference):
    cfg = UNetConfig.from_dict(dict(reference.unet.config))
    sample, t, context, _, _ = example_inputs(cfg)
    with pytest.raises(ValueError, match="projection_class_embeddings_input_dim is 64"):
        jax.eval_shape(UNet2DConditionModel(cfg).init, jax.random.key(0), sample, t, context,
                       jnp.zeros((1, tiny_sdxl.PROJECTION)), jnp.zeros((1, 5)))


def test_addition_embed_type_text_time_needs_its_widths():
    with pytest.raises(ValueError, match="needs addition_time_embed_dim"):
        UNetConfig.from_dict({"addition_embed_type": "text_time"})
    with pytest.raises(ValueError, match="addition_embed_type='text'"):
        UNetConfig.from_dict({"addition_embed_type": "text"})


def token_ids(reference) -> torch.Tensor:
    return reference.tokenizer(PROMPTS, padding="max_length", max_length=77,
                               return_tensors="pt").input_ids


@pytest.mark.parametrize("clip_skip", [None, 1])
def test_first_text_encoder_penultimate_hidden_states_match_transformers(reference, clip_skip):
    """SDXL reads hidden_states[-2] (clip_skip: -(clip_skip + 2)) with no final layer norm."""
    layer = -2 if clip_skip is None else -(clip_skip + 2)
    cfg = CLIPTextConfig.from_dict(reference.text_encoder.config.to_dict())
    text = CLIPTextModel(cfg)
    ids = token_ids(reference)
    params = to_flax(reference.text_encoder, text, jnp.zeros((1, 77), jnp.int32))
    with torch.no_grad():
        ref = reference.text_encoder(ids, output_hidden_states=True).hidden_states[layer]
    hidden, _ = text.apply({"params": params}, jnp.asarray(ids.numpy(), jnp.int32),
                           hidden_layer=layer)
    assert hidden.shape == (2, 77, tiny_sdxl.TEXT_1)
    assert rel_l2(hidden, ref) < RTOL


def test_second_text_encoder_hidden_states_and_projected_pooled_match_transformers(reference):
    cfg = CLIPTextWithProjectionConfig.from_dict(reference.text_encoder_2.config.to_dict(),
                                                 "text_encoder_2/config.json")
    assert cfg.projection_dim == tiny_sdxl.PROJECTION
    text = CLIPTextModelWithProjection(cfg)
    ids = token_ids(reference)
    params = to_flax(reference.text_encoder_2, text, jnp.zeros((1, 77), jnp.int32))
    with torch.no_grad():
        out = reference.text_encoder_2(ids, output_hidden_states=True)
    hidden, pooled = jax.jit(text.apply)({"params": params}, jnp.asarray(ids.numpy(), jnp.int32))
    hidden_error, pooled_error = rel_l2(hidden, out.hidden_states[-2]), rel_l2(pooled,
                                                                                out.text_embeds)
    print(f"text_encoder_2 relative L2: hidden {hidden_error:.2e}, pooled {pooled_error:.2e}")
    assert hidden_error < RTOL
    assert pooled_error < RTOL
