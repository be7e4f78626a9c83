"""Text-to-image as one program: encode prompts -> denoising loop -> VAE decode -> uint8.

`build_sampling_fn` returns a pure function of (params, token ids, per-item noise ids,
per-item guidance). Everything that changes array shapes or the loop (size, steps,
sampler) is fixed when it is built; everything per item is an array, so a new prompt,
seed or guidance value never recompiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models.layers import attention_implementation
from jaxgen.schedulers import SchedulerConfig, make_sampler
from jaxgen.weights.model_dir import DiffusionModel


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """The shape-changing choices: requests that share a spec share a compiled program."""

    height: int
    width: int
    steps: int
    sampler: str
    clip_skip: int = 0


def noise_ids(seeds: np.ndarray, image_indices: np.ndarray) -> np.ndarray:
    """uint32 [B, 3] (seed low word, seed high word, image index): an image's whole identity
    for its noise. Never batch position, batch size or device count."""
    seeds = np.asarray(seeds, np.uint64)
    return np.stack([seeds & 0xFFFFFFFF, seeds >> np.uint64(32),
                     np.asarray(image_indices, np.uint64)], axis=-1).astype(np.uint32)


def _item_keys(ids: jax.Array) -> jax.Array:
    def one(row):
        return jax.random.fold_in(jax.random.fold_in(jax.random.key(row[0]), row[1]), row[2])

    return jax.vmap(one)(ids)


def _noise(keys: jax.Array, step: int | jax.Array, latent_shape: tuple[int, ...]) -> jax.Array:
    draw = lambda k: jax.random.normal(jax.random.fold_in(k, step), latent_shape)  # noqa: E731
    return jax.vmap(draw)(keys)


def initial_noise(ids: np.ndarray, latent_shape: tuple[int, int, int]) -> np.ndarray:
    """The unit-variance initial latents [B, h, w, c] the sampling fn draws for noise `ids`.

    For other implementations to start from the very same noise (the diffusers peer).
    """
    return np.asarray(_noise(_item_keys(jnp.asarray(ids)), 0, tuple(latent_shape)))


def build_sampling_fn(model: DiffusionModel, spec: SamplingSpec, dtype: Any = jnp.float32,
                      attention: str | None = None) -> Callable[..., jax.Array]:
    """fn(params, cond_ids, uncond_ids, ids, guidance, init_latents=None) -> uint8 [B,H,W,3].

    `ids` are per-image noise ids (see noise_ids), turned into one key per image: the initial
    noise is drawn from fold_in(key, 0) and step s's ancestral noise from fold_in(key, s + 1).
    `init_latents` (NHWC, unit
    variance) replaces the drawn noise, for comparisons with other implementations.
    `attention` picks the attention kernel (see jaxgen.models.layers.attention_implementation).
    """
    unet, vae, text = model.modules(dtype)
    sampler = make_sampler(spec.sampler, SchedulerConfig.from_dict(model.scheduler_config),
                           spec.steps)
    f = model.latent_factor
    latent_shape = (spec.height // f, spec.width // f, model.unet.in_channels)
    scaling = model.vae.scaling_factor

    def noise(keys: jax.Array, step: int | jax.Array) -> jax.Array:
        return _noise(keys, step, latent_shape)

    def fn(params, cond_ids, uncond_ids, ids, guidance, init_latents=None):
        keys = _item_keys(ids)
        tokens = jnp.concatenate([uncond_ids, cond_ids], axis=0)
        context, _ = text.apply({"params": params["text_encoder"]}, tokens, spec.clip_skip)
        latents = noise(keys, 0) if init_latents is None else init_latents
        latents = latents.astype(jnp.float32) * sampler.init_noise_sigma
        g = guidance.astype(jnp.float32)[:, None, None, None]

        def denoise(i, carry):
            x, state = carry
            x_in = sampler.scale_model_input(x, i)
            out = unet.apply({"params": params["unet"]}, jnp.concatenate([x_in, x_in]),
                             sampler.timesteps[i], context).astype(jnp.float32)
            uncond, cond = jnp.split(out, 2)
            guided = uncond + g * (cond - uncond)
            step_noise = noise(keys, i + 1) if sampler.needs_noise else jnp.zeros_like(x)
            return sampler.step(state, i, guided, x, step_noise)

        latents, _ = jax.lax.fori_loop(0, spec.steps, denoise,
                                       (latents, sampler.init_state(latents)))
        images = vae.apply({"params": params["vae"]}, latents / scaling, method=vae.decode)
        images = jnp.clip(images.astype(jnp.float32) / 2 + 0.5, 0.0, 1.0)
        return jnp.round(images * 255).astype(jnp.uint8)

    def traced(*args, **kwargs):
        with attention_implementation(attention):
            return fn(*args, **kwargs)

    return traced


def tokenize(model: DiffusionModel, prompts: list[str]) -> np.ndarray:
    """Token ids padded to the tokenizer's max length, as diffusers' pipelines pad them."""
    tok = model.tokenizer
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="np").input_ids
    return ids.astype(np.int32)
