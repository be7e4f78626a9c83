"""Decoding: final latents -> uint8 images through the VAE."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.models import AutoencoderKL


def decode_latents(vae: AutoencoderKL, params: Any, latents: jax.Array,
                   scaling_factor: float) -> jax.Array:
    """uint8 [B, H, W, 3] images of latents [B, h, w, c] (scaled as the denoiser sees them)."""
    images = vae.apply({"params": params}, latents / scaling_factor, method=vae.decode)
    images = jnp.clip(images.astype(jnp.float32) / 2 + 0.5, 0.0, 1.0)
    return jnp.round(images * 255).astype(jnp.uint8)
