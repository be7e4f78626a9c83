"""AutoencoderKL (the Stable Diffusion VAE), in diffusers' structure, channels-last."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.config import config_from_dict
from jaxgen.models.layers import (
    Downsample2D,
    Dtype,
    ResnetBlock2D,
    Upsample2D,
    conv,
    group_norm,
    project_attend,
)

_INERT = {"act_fn": "silu", "shift_factor": None, "latents_mean": None, "latents_std": None,
          "down_block_types": None, "up_block_types": None}
_EPS = 1e-6  # diffusers builds every VAE norm with eps=1e-6


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "vae/config.json") -> VAEConfig:
        channels = raw.get("block_out_channels", cls.block_out_channels)
        n = len(channels) if isinstance(channels, list | tuple) else 0  # else: a type error
        inert = dict(_INERT, down_block_types=["DownEncoderBlock2D"] * n,
                     up_block_types=["UpDecoderBlock2D"] * n)
        return config_from_dict(cls, raw, source, inert)

    @property
    def downscale(self) -> int:
        """Pixels per latent along each side."""
        return 2 ** (len(self.block_out_channels) - 1)


class VAEAttention(nn.Module):
    """The VAE mid-block's single-head self-attention with its own group norm and residual."""

    channels: int
    groups: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        y = group_norm(self.groups, _EPS, "group_norm", self.dtype)(x).reshape(b, h * w, c)
        y = project_attend(y, y, 1, c, c, qkv_bias=True, upcast=False, dtype=self.dtype)
        return x + y.reshape(b, h, w, c)


class VAEMidBlock(nn.Module):
    channels: int
    groups: int
    add_attention: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(groups=self.groups, eps=_EPS, dtype=self.dtype)
        x = ResnetBlock2D(self.channels, name="resnets_0", **kw)(x)
        if self.add_attention:
            x = VAEAttention(self.channels, self.groups, self.dtype, name="attentions_0")(x)
        return ResnetBlock2D(self.channels, name="resnets_1", **kw)(x)


class ResnetStack(nn.Module):
    """DownEncoderBlock2D / UpDecoderBlock2D: resnets, then an optional resample."""

    channels: int
    num_layers: int
    groups: int
    resample: str | None  # "down", "up" or None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.num_layers):
            x = ResnetBlock2D(self.channels, groups=self.groups, eps=_EPS, dtype=self.dtype,
                              name=f"resnets_{j}")(x)
        if self.resample == "down":
            x = Downsample2D(self.channels, asymmetric_pad=True, dtype=self.dtype,
                             name="downsamplers_0")(x)
        elif self.resample == "up":
            x = Upsample2D(self.channels, dtype=self.dtype, name="upsamplers_0")(x)
        return x


def _norm_act_conv(x: jax.Array, groups: int, out: int, dtype: Dtype) -> jax.Array:
    x = nn.silu(group_norm(groups, _EPS, "conv_norm_out", dtype)(x))
    return conv(out, 3, "conv_out", dtype)(x)


class Encoder(nn.Module):
    config: VAEConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg, dt = self.config, self.dtype
        chans = cfg.block_out_channels
        x = conv(chans[0], 3, "conv_in", dt)(x)
        for i, ch in enumerate(chans):
            last = i == len(chans) - 1
            x = ResnetStack(ch, cfg.layers_per_block, cfg.norm_num_groups,
                            None if last else "down", dt, name=f"down_blocks_{i}")(x)
        x = VAEMidBlock(chans[-1], cfg.norm_num_groups, cfg.mid_block_add_attention, dt,
                        name="mid_block")(x)
        return _norm_act_conv(x, cfg.norm_num_groups, 2 * cfg.latent_channels, dt)


class Decoder(nn.Module):
    config: VAEConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        cfg, dt = self.config, self.dtype
        chans = tuple(reversed(cfg.block_out_channels))
        x = conv(chans[0], 3, "conv_in", dt)(z)
        x = VAEMidBlock(chans[0], cfg.norm_num_groups, cfg.mid_block_add_attention, dt,
                        name="mid_block")(x)
        for i, ch in enumerate(chans):
            last = i == len(chans) - 1
            x = ResnetStack(ch, cfg.layers_per_block + 1, cfg.norm_num_groups,
                            None if last else "up", dt, name=f"up_blocks_{i}")(x)
        return _norm_act_conv(x, cfg.norm_num_groups, cfg.out_channels, dt)


class AutoencoderKL(nn.Module):
    """encode() gives the latent distribution's (mean, logvar); decode() maps latents to images.

    Images are in [-1, 1]; latents are unscaled (multiply by config.scaling_factor for the UNet).
    """

    config: VAEConfig
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        self.encoder = Encoder(cfg, self.dtype)
        self.decoder = Decoder(cfg, self.dtype)
        lat = cfg.latent_channels
        # setup() names submodules by attribute, so these are plain 1x1 convs.
        self.quant_conv = nn.Conv(2 * lat, (1, 1), dtype=self.dtype) if cfg.use_quant_conv else None
        self.post_quant_conv = (nn.Conv(lat, (1, 1), dtype=self.dtype)
                                if cfg.use_post_quant_conv else None)

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        moments = self.encoder(images.astype(self.dtype))
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, latents: jax.Array) -> jax.Array:
        z = latents.astype(self.dtype)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def __call__(self, images: jax.Array) -> jax.Array:
        """Reconstruct from the posterior mean (used to initialise every parameter)."""
        mean, _ = self.encode(images)
        return self.decode(mean)
