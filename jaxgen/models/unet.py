"""UNet2DConditionModel for Stable Diffusion 1.x/2.x and SDXL, in diffusers' structure.

SDXL adds `addition_embed_type: "text_time"`: the pooled text embeddings and the
micro-conditioning time ids, embedded and added to the timestep embedding.

Inputs and outputs are channels-last (NHWC) latents.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.config import config_from_dict, per_block
from jaxgen.models.layers import (
    Downsample2D,
    Dtype,
    ResnetBlock2D,
    TimestepEmbedding,
    Transformer2DModel,
    Upsample2D,
    conv,
    group_norm,
    timestep_embedding,
)

# Options of diffusers' UNet that jaxgen does not implement, at the value that disables them.
_INERT = {
    "center_input_sample": False, "downsample_padding": 1, "mid_block_scale_factor": 1,
    "act_fn": "silu", "only_cross_attention": False, "dual_cross_attention": False,
    "class_embed_type": None, "num_class_embeds": None,
    "encoder_hid_dim": None, "resnet_time_scale_shift": "default", "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional",
    "time_embedding_dim": None, "time_embedding_act_fn": None, "timestep_post_act": None,
    "time_cond_proj_dim": None, "attention_type": "default", "class_embeddings_concat": False,
    "cross_attention_norm": None, "mid_block_type": "UNetMidBlock2DCrossAttn",
    "reverse_transformer_layers_per_block": None,
}
_DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
_UP_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")
_ADDITION_TYPES = (None, "text_time")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    sample_size: int = 64
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int | tuple[int, ...] = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 768
    transformer_layers_per_block: int | tuple[int, ...] = 1
    attention_head_dim: int | tuple[int, ...] = 8
    num_attention_heads: int | tuple[int, ...] | None = None
    use_linear_projection: bool = False
    upcast_attention: bool = False
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    # SDXL: "text_time" embeds time ids (addition_time_embed_dim each) beside the pooled text
    # embeddings; projection_class_embeddings_input_dim is the width of the two concatenated.
    addition_embed_type: str | None = None
    addition_time_embed_dim: int | None = None
    projection_class_embeddings_input_dim: int | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "unet/config.json") -> UNetConfig:
        cfg = config_from_dict(cls, raw, source, _INERT)
        for i, t in enumerate(cfg.down_block_types):
            if t not in _DOWN_TYPES:
                raise ValueError(
                    f"{source}: down_block_types[{i}]={t!r} is not one of {_DOWN_TYPES}")
        for i, t in enumerate(cfg.up_block_types):
            if t not in _UP_TYPES:
                raise ValueError(f"{source}: up_block_types[{i}]={t!r} is not one of {_UP_TYPES}")
        if cfg.addition_embed_type not in _ADDITION_TYPES:
            raise ValueError(f"{source}: addition_embed_type={cfg.addition_embed_type!r} is not "
                             f"one of {_ADDITION_TYPES}")
        if cfg.addition_embed_type == "text_time":
            for key in ("addition_time_embed_dim", "projection_class_embeddings_input_dim"):
                if getattr(cfg, key) is None:
                    raise ValueError(f"{source}: addition_embed_type 'text_time' needs {key}")
        return cfg

    def heads(self) -> tuple[int, ...]:
        # diffusers' SD configs store the head COUNT in `attention_head_dim` (a historic misnomer).
        n = len(self.block_out_channels)
        return per_block(self.num_attention_heads or self.attention_head_dim, n)


class DownBlock(nn.Module):
    """CrossAttnDownBlock2D (with_attention) or DownBlock2D."""

    channels: int
    num_layers: int
    with_attention: bool
    add_downsample: bool
    transformer: dict
    resnet: dict
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, temb: jax.Array, context: jax.Array):
        skips = []
        for j in range(self.num_layers):
            h = ResnetBlock2D(self.channels, name=f"resnets_{j}", **self.resnet)(h, temb)
            if self.with_attention:
                h = Transformer2DModel(name=f"attentions_{j}", **self.transformer)(h, context)
            skips.append(h)
        if self.add_downsample:
            h = Downsample2D(self.channels, dtype=self.dtype, name="downsamplers_0")(h)
            skips.append(h)
        return h, skips


class UpBlock(nn.Module):
    """CrossAttnUpBlock2D (with_attention) or UpBlock2D: each resnet eats one skip."""

    channels: int
    num_layers: int
    with_attention: bool
    add_upsample: bool
    transformer: dict
    resnet: dict
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, skips: list, temb: jax.Array, context: jax.Array):
        for j in range(self.num_layers):
            h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = ResnetBlock2D(self.channels, name=f"resnets_{j}", **self.resnet)(h, temb)
            if self.with_attention:
                h = Transformer2DModel(name=f"attentions_{j}", **self.transformer)(h, context)
        if self.add_upsample:
            h = Upsample2D(self.channels, dtype=self.dtype, name="upsamplers_0")(h)
        return h


class MidBlock(nn.Module):
    """UNetMidBlock2DCrossAttn: resnet, transformer, resnet."""

    channels: int
    transformer: dict
    resnet: dict

    @nn.compact
    def __call__(self, h: jax.Array, temb: jax.Array, context: jax.Array) -> jax.Array:
        h = ResnetBlock2D(self.channels, name="resnets_0", **self.resnet)(h, temb)
        h = Transformer2DModel(name="attentions_0", **self.transformer)(h, context)
        return ResnetBlock2D(self.channels, name="resnets_1", **self.resnet)(h, temb)


def example_inputs(config: UNetConfig) -> tuple[jax.Array, ...]:
    """Inputs of the smallest shapes the UNet accepts, to trace its parameter tree."""
    side = 2 ** (len(config.block_out_channels) - 1)
    inputs = (jnp.zeros((1, side, side, config.in_channels)), jnp.zeros((1,)),
              jnp.zeros((1, 1, config.cross_attention_dim)))
    if config.addition_embed_type == "text_time":
        # One time id and the rest as text: add_embedding's input width is all that matters.
        width = config.projection_class_embeddings_input_dim - config.addition_time_embed_dim
        inputs += (jnp.zeros((1, width)), jnp.zeros((1, 1)))
    return inputs


def text_time_input(config: UNetConfig, text_embeds: jax.Array | None,
                    time_ids: jax.Array | None) -> jax.Array:
    """diffusers' add_time_proj: each time id through the sinusoidal embedding, concatenated
    after the pooled text embeddings (the input of add_embedding)."""
    if text_embeds is None or time_ids is None:
        raise ValueError("unet: addition_embed_type 'text_time' needs text_embeds and time_ids")
    b = text_embeds.shape[0]
    t = timestep_embedding(time_ids.reshape(-1), config.addition_time_embed_dim,
                           config.flip_sin_to_cos, config.freq_shift).reshape(b, -1)
    x = jnp.concatenate([text_embeds.astype(jnp.float32), t], axis=-1)
    if x.shape[-1] != config.projection_class_embeddings_input_dim:
        raise ValueError(
            f"unet: text_embeds ({text_embeds.shape[-1]}) + {time_ids.shape[-1]} time ids x "
            f"{config.addition_time_embed_dim} = {x.shape[-1]}, but the config's "
            f"projection_class_embeddings_input_dim is "
            f"{config.projection_class_embeddings_input_dim}")
    return x


class UNet2DConditionModel(nn.Module):
    config: UNetConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, sample: jax.Array, timesteps: jax.Array, encoder_hidden_states: jax.Array,
                 text_embeds: jax.Array | None = None,
                 time_ids: jax.Array | None = None) -> jax.Array:
        """text_embeds [B, D] and time_ids [B, K]: SDXL's added conditions (text_time only)."""
        cfg, dt = self.config, self.dtype
        n = len(cfg.block_out_channels)
        heads = cfg.heads()
        layers = per_block(cfg.layers_per_block, n)
        depth = per_block(cfg.transformer_layers_per_block, n)
        ch0 = cfg.block_out_channels[0]
        resnet = dict(groups=cfg.norm_num_groups, eps=cfg.norm_eps, dtype=dt)

        def transformer(b: int) -> dict:
            ch = cfg.block_out_channels[b]
            return dict(heads=heads[b], dim_head=ch // heads[b], num_layers=depth[b],
                        groups=cfg.norm_num_groups, use_linear_projection=cfg.use_linear_projection,
                        upcast_attention=cfg.upcast_attention, dtype=dt)

        timesteps = jnp.broadcast_to(timesteps, (sample.shape[0],))
        t_emb = timestep_embedding(timesteps, ch0, cfg.flip_sin_to_cos, cfg.freq_shift).astype(dt)
        temb = TimestepEmbedding(ch0 * 4, dtype=dt, name="time_embedding")(t_emb)
        if cfg.addition_embed_type == "text_time":
            added = text_time_input(cfg, text_embeds, time_ids).astype(dt)
            temb = temb + TimestepEmbedding(ch0 * 4, dtype=dt, name="add_embedding")(added)
        context = encoder_hidden_states.astype(dt)

        h = conv(ch0, cfg.conv_in_kernel, "conv_in", dt)(sample.astype(dt))
        skips = [h]
        for b, kind in enumerate(cfg.down_block_types):
            h, out = DownBlock(cfg.block_out_channels[b], layers[b],
                               kind == "CrossAttnDownBlock2D", b < n - 1, transformer(b), resnet,
                               dtype=dt, name=f"down_blocks_{b}")(h, temb, context)
            skips += out
        h = MidBlock(cfg.block_out_channels[-1], transformer(n - 1), resnet,
                     name="mid_block")(h, temb, context)
        for u, kind in enumerate(cfg.up_block_types):
            b = n - 1 - u  # the down block this up block mirrors
            h = UpBlock(cfg.block_out_channels[b], layers[b] + 1, kind == "CrossAttnUpBlock2D",
                        u < n - 1, transformer(b), resnet, dtype=dt,
                        name=f"up_blocks_{u}")(h, skips, temb, context)
        h = nn.silu(group_norm(cfg.norm_num_groups, cfg.norm_eps, "conv_norm_out", dt)(h))
        return conv(cfg.out_channels, cfg.conv_out_kernel, "conv_out", dt)(h)
