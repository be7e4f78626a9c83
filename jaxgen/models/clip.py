"""The CLIP text transformer (transformers' CLIPTextModel and, for SDXL's second encoder,
CLIPTextModelWithProjection), with their parameter names."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.config import config_from_dict
from jaxgen.models.layers import Dtype, attend, gelu_exact, layer_norm

_ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": gelu_exact,
}


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 49407

    @classmethod
    def from_dict(cls, raw: dict[str, Any],
                  source: str = "text_encoder/config.json") -> CLIPTextConfig:
        cfg = config_from_dict(cls, raw, source)
        if cfg.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"{source}: hidden_act={cfg.hidden_act!r} is not one of {sorted(_ACTIVATIONS)}")
        return cfg


@dataclasses.dataclass(frozen=True)
class CLIPTextWithProjectionConfig(CLIPTextConfig):
    projection_dim: int = 512


class CLIPEncoderLayer(nn.Module):
    config: CLIPTextConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg, dt = self.config, self.dtype
        h = layer_norm(cfg.layer_norm_eps, "layer_norm1", dt)(x)
        x = x + SelfAttention(cfg, dt, name="self_attn")(h)
        h = layer_norm(cfg.layer_norm_eps, "layer_norm2", dt)(x)
        return x + MLP(cfg, dt, name="mlp")(h)


class SelfAttention(nn.Module):
    config: CLIPTextConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d, dt = self.config.hidden_size, self.dtype
        q, k, v = (nn.Dense(d, dtype=dt, name=f"{n}_proj")(x) for n in "qkv")
        # SD pipelines pass no padding mask: the causal mask alone keeps padding out of the prompt.
        out = attend(q, k, v, self.config.num_attention_heads, causal=True)
        return nn.Dense(d, dtype=dt, name="out_proj")(out)


class MLP(nn.Module):
    config: CLIPTextConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        x = nn.Dense(cfg.intermediate_size, dtype=self.dtype, name="fc1")(x)
        x = _ACTIVATIONS[cfg.hidden_act](x)
        return nn.Dense(cfg.hidden_size, dtype=self.dtype, name="fc2")(x)


class CLIPTextModel(nn.Module):
    """Returns (last_hidden_state, pooled_output) for int32 token ids [B, T].

    `skip_last_layers` = diffusers' clip_skip: take the output that many layers before the
    last, then the final layer norm (as diffusers' pipelines do). Parameter names follow
    transformers v5, which stores CLIPTextModel without the old `text_model.` prefix.
    """

    config: CLIPTextConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids: jax.Array, skip_last_layers: int = 0,
                 hidden_layer: int | None = None):
        """hidden_layer (SDXL's reading): return transformers' hidden_states[hidden_layer] as
        it is (no final layer norm) and the pooled output of the whole model instead."""
        cfg, dt = self.config, self.dtype
        if hidden_layer is not None:
            return _hidden_and_pooled(cfg, dt, input_ids, hidden_layer)
        x = Embeddings(cfg, dt, name="embeddings")(input_ids)
        x = Encoder(cfg, dt, skip_last_layers, name="encoder")(x)
        x = layer_norm(cfg.layer_norm_eps, "final_layer_norm", dt)(x)
        pooled = x[jnp.arange(x.shape[0]), _eos_position(input_ids, cfg.eos_token_id)]
        return x, pooled


class CLIPTextModelWithProjection(nn.Module):
    """Returns (hidden_states[hidden_layer], text_embeds): the pooled output through
    text_projection, as SDXL's second text encoder gives them. Parameters are
    CLIPTextModel's plus text_projection (transformers' `text_model.` prefix dropped)."""

    config: CLIPTextWithProjectionConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids: jax.Array, hidden_layer: int = -2):
        cfg, dt = self.config, self.dtype
        hidden, pooled = _hidden_and_pooled(cfg, dt, input_ids, hidden_layer)
        projected = nn.Dense(cfg.projection_dim, use_bias=False, dtype=dt,
                             name="text_projection")(pooled)
        return hidden, projected


def _hidden_and_pooled(cfg: CLIPTextConfig, dt: Dtype, input_ids: jax.Array,
                       hidden_layer: int) -> tuple[jax.Array, jax.Array]:
    """Declared in the CALLING compact module (its param scope): hidden_states[hidden_layer]
    (index 0 is the embeddings' output) and the final-layer-normed pooled output."""
    states = Encoder(cfg, dt, name="encoder")(Embeddings(cfg, dt, name="embeddings")(input_ids),
                                              all_states=True)
    x = layer_norm(cfg.layer_norm_eps, "final_layer_norm", dt)(states[-1])
    pooled = x[jnp.arange(x.shape[0]), _eos_position(input_ids, cfg.eos_token_id)]
    return states[hidden_layer], pooled


class Embeddings(nn.Module):
    config: CLIPTextConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids: jax.Array) -> jax.Array:
        cfg = self.config
        x = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=self.dtype,
                     name="token_embedding")(input_ids)
        positions = jnp.arange(input_ids.shape[1])[None, :]
        return x + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, dtype=self.dtype,
                            name="position_embedding")(positions)


class Encoder(nn.Module):
    config: CLIPTextConfig
    dtype: Dtype = jnp.float32
    skip_last_layers: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, all_states: bool = False):
        """all_states: every hidden state (the input, then each layer's output) as a tuple."""
        # Layers past the skip are still declared so the checkpoint's weights all have a home.
        keep = self.config.num_hidden_layers - self.skip_last_layers
        states = [x]
        for i in range(self.config.num_hidden_layers):
            y = CLIPEncoderLayer(self.config, self.dtype, name=f"layers_{i}")(x)
            x = y if i < keep else x  # XLA drops the unused layers' work
            states.append(y)
        return tuple(states) if all_states else x


def _eos_position(input_ids: jax.Array, eos_token_id: int) -> jax.Array:
    # transformers: legacy configs (eos_token_id == 2) pool at the largest id, others at the
    # first EOS token.
    if eos_token_id == 2:
        return jnp.argmax(input_ids, axis=-1)
    return jnp.argmax(input_ids == eos_token_id, axis=-1)


