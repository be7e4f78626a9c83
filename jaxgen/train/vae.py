"""Stage 1: the autoencoder's loss (reconstruction + a small KL) and its latent scale."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen.models import AutoencoderKL
from jaxgen.models.init import init_params

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class VAELoss:
    """Weights of the VAE objective, per pixel / per latent element.

    The KL weight is tiny (as in SD's KL-f8) so latents stay close to deterministic codes;
    it only keeps them from drifting to huge values.
    """

    l1_weight: float = 1.0
    l2_weight: float = 1.0
    kl_weight: float = 1e-5


def init_vae(vae: AutoencoderKL, seed: int, image_size: int = 64) -> dict:
    """Fresh VAE params for `image_size` square RGB images."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, vae.config.in_channels), jnp.float32)
    return init_params(vae, images, seed=seed)


def vae_loss_fn(vae: AutoencoderKL, weights: VAELoss) -> LossFn:
    """loss(params, frozen, batch, key) for params = the VAE's; batch["images"] in [-1, 1]."""

    def loss(params, frozen, batch, key):
        del frozen
        images = batch["images"]
        mean, logvar = vae.apply({"params": params}, images, method=vae.encode)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        recon = vae.apply({"params": params}, z, method=vae.decode)
        err = recon.astype(jnp.float32) - images
        l1, l2 = jnp.abs(err).mean(), jnp.square(err).mean()
        kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar).mean()
        total = weights.l1_weight * l1 + weights.l2_weight * l2 + weights.kl_weight * kl
        return total, {"l1": l1, "l2": l2, "kl": kl}

    return loss


def latent_scaling_factor(vae: AutoencoderKL, params, images: jax.Array) -> float:
    """1 / std of the posterior means, so the UNet sees unit-variance latents (SD's recipe)."""
    mean, _ = jax.jit(lambda p, x: vae.apply({"params": p}, x, method=vae.encode))(params, images)
    return float(1.0 / jnp.std(mean))
