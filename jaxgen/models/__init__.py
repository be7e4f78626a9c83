"""Flax modules of the latent-diffusion family, named as diffusers/transformers name them."""

from jaxgen.models.clip import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTextWithProjectionConfig,
)
from jaxgen.models.unet import UNet2DConditionModel, UNetConfig
from jaxgen.models.vae import AutoencoderKL, VAEConfig

__all__ = [
    "AutoencoderKL",
    "CLIPTextConfig",
    "CLIPTextModel",
    "CLIPTextModelWithProjection",
    "CLIPTextWithProjectionConfig",
    "UNet2DConditionModel",
    "UNetConfig",
    "VAEConfig",
]
