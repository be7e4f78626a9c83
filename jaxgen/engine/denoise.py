"""The denoising loop: guided denoiser steps from any start step, an optional latent mask and
an optional per-step hook.

Noise is per item: each item's key comes from its noise ids alone; the initial latents are
drawn from fold_in(key, 0), step s's ancestral noise from fold_in(key, s + 1), and the VAE
samples of image-to-image and inpainting from fold_in(key, ENCODE_NOISE) and
fold_in(key, MASKED_ENCODE_NOISE), indices no step reaches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models import UNet2DConditionModel
from jaxgen.schedulers import Sampler
from jaxgen.schedulers.tables import predict_x0

# fold_in indices of the VAE latent samples: far beyond any step's (MAX_STEPS is 1000s).
ENCODE_NOISE = 2**31 - 1  # the init image's
MASKED_ENCODE_NOISE = 2**31 - 2  # the masked image's (inpainting UNets)

# (latents [B, h, w, c], step index) -> the guided prediction, float32 like the latents.
Denoiser = Callable[[jax.Array, jax.Array], jax.Array]


class DenoiseStep(NamedTuple):
    """What one pass of the loop saw and made (traced arrays), as a per-step hook sees it."""

    index: jax.Array  # int32 scalar step index, from start_step to steps - 1
    latents: jax.Array  # entering the step
    prediction: jax.Array  # the guided denoiser output: uncond + g * (cond - uncond)
    next_latents: jax.Array  # after the sampler's step (and the mask's blend)


# hook(step, carry) -> (next latents, carry). Called inside the loop after each step, traced
# once: a pure function. To record, write into the carry (e.g. carry.at[step.index].set(...));
# to steer, return other latents. The loop continues from the latents it returns.
StepHook = Callable[[DenoiseStep, Any], tuple[jax.Array, Any]]


def item_keys(ids: jax.Array) -> jax.Array:
    """One PRNG key per item from its noise ids (see inputs.noise_ids)."""
    def one(row):
        return jax.random.fold_in(jax.random.fold_in(jax.random.key(row[0]), row[1]), row[2])

    return jax.vmap(one)(ids)


def draw_noise(keys: jax.Array, step: int | jax.Array,
               latent_shape: tuple[int, ...]) -> jax.Array:
    """Unit normal latents per item: step 0 is the initial noise, s + 1 step s's noise."""
    draw = lambda k: jax.random.normal(jax.random.fold_in(k, step), latent_shape)  # noqa: E731
    return jax.vmap(draw)(keys)


def initial_noise(ids: np.ndarray, latent_shape: tuple[int, int, int],
                  draw: int = 0) -> np.ndarray:
    """The unit normal latents [B, h, w, c] a sampling program draws for noise `ids`: by
    default the initial noise; `draw` ENCODE_NOISE or MASKED_ENCODE_NOISE gives the unit noise
    of the init image's or the masked image's VAE sample.

    For other implementations to start from the very same noise (the diffusers peer).
    """
    return np.asarray(draw_noise(item_keys(jnp.asarray(ids)), draw, tuple(latent_shape)))


def guided_prediction(unet: UNet2DConditionModel, params: Any, sampler: Sampler,
                      context: jax.Array, guidance: jax.Array | None,
                      extra_channels: jax.Array | None = None,
                      added: dict[str, jax.Array] | None = None) -> Denoiser:
    """Classifier-free guidance: one UNet call on the doubled batch (unconditional half first,
    as encode_prompts orders the context), then uncond + g * (cond - uncond) per item. With
    `guidance` None (every item's scale is 1, which that formula reduces to cond), one call on
    the batch with the conditional `context` only: half the UNet work.

    `extra_channels` [B, h, w, k] are concatenated after the (scaled) latents on channels, as
    diffusers feeds an inpainting UNet its mask and masked-image latents. `added`: the UNet's
    added conditions (SDXL's text_embeds and time_ids), batched as `context` is.
    """
    added = added or {}
    g = None if guidance is None else guidance.astype(jnp.float32)[:, None, None, None]

    def predict(x: jax.Array, i: jax.Array) -> jax.Array:
        x_in = sampler.scale_model_input(x, i)
        if extra_channels is not None:
            x_in = jnp.concatenate([x_in, extra_channels.astype(x_in.dtype)], axis=-1)
        if g is None:
            return unet.apply({"params": params}, x_in, sampler.timesteps[i],
                              context, **added).astype(jnp.float32)
        out = unet.apply({"params": params}, jnp.concatenate([x_in, x_in]),
                         sampler.timesteps[i], context, **added).astype(jnp.float32)
        uncond, cond = jnp.split(out, 2)
        return uncond + g * (cond - uncond)

    return predict


@dataclasses.dataclass(frozen=True)
class LatentMask:
    """Latents kept outside a mask, blended in after every step as diffusers' 4-channel
    inpainting pipeline does: `known` diffused with `noise` to the next step's noise level
    (clean after the last step)."""

    mask: jax.Array  # [B, h, w, 1]: 1 where the loop generates
    known: jax.Array  # [B, h, w, c] clean latents (inpainting: the init image's VAE sample)
    noise: jax.Array  # [B, h, w, c] unit normal: the initial noise of the same items

    def blend(self, sampler: Sampler, latents: jax.Array, i: jax.Array) -> jax.Array:
        last = sampler.num_steps - 1
        noised = sampler.add_noise(self.known, self.noise, jnp.minimum(i + 1, last))
        known = jnp.where(i < last, noised, self.known).astype(latents.dtype)
        return (1 - self.mask) * known + self.mask * latents


def denoise(sampler: Sampler, predict: Denoiser, latents: jax.Array, *,
            step_noise: Callable[[jax.Array], jax.Array] | None = None,
            start_step: int | jax.Array = 0, keep: LatentMask | None = None,
            hook: StepHook | None = None, hook_carry: Any = None) -> tuple[jax.Array, Any]:
    """Run the sampler's steps start_step .. steps - 1 from `latents`; return the final
    latents and the hook's carry.

    `latents` are at the noise level of the start of `start_step` (noise times the sampler's
    init_noise_sigma when starting at 0). `step_noise(i)` is step i's unit noise, for
    ancestral samplers. A start step per item (int32 [B]) runs the loop from the batch's
    earliest; an item is held unchanged, its solver memory empty, until its own start.
    """
    if sampler.needs_noise and step_noise is None:
        raise ValueError(f"sampler {sampler.name!r} needs step_noise")
    if jnp.ndim(start_step) == 1:
        return _denoise_per_item(sampler, predict, latents, step_noise, jnp.asarray(start_step),
                                 keep, hook, hook_carry)

    def body(i, carry):
        x, state, carried = carry
        guided = predict(x, i)
        noise = step_noise(i) if sampler.needs_noise else jnp.zeros_like(x)
        x_next, state = sampler.step(state, i, guided, x, noise)
        if keep is not None:
            x_next = keep.blend(sampler, x_next, i)
        if hook is not None:
            x_next, carried = hook(DenoiseStep(i, x, guided, x_next), carried)
        return x_next, state, carried

    latents, _, hook_carry = jax.lax.fori_loop(
        start_step, sampler.num_steps, body, (latents, sampler.init_state(latents), hook_carry))
    return latents, hook_carry


def _denoise_per_item(sampler: Sampler, predict: Denoiser, latents: jax.Array,
                      step_noise: Callable[[jax.Array], jax.Array] | None, start: jax.Array,
                      keep: LatentMask | None, hook: StepHook | None,
                      hook_carry: Any) -> tuple[jax.Array, Any]:
    # The solver runs per item (vmap), so its memory (e.g. DPM-Solver's previous x0) is too.
    def solve(i, state, guided, x, noise):
        return jax.vmap(lambda st, o, s, n: sampler.step(st, i, o, s, n))(state, guided, x, noise)

    def body(i, carry):
        x, state, carried = carry
        guided = predict(x, i)
        noise = step_noise(i) if sampler.needs_noise else jnp.zeros_like(x)
        x_next, next_state = solve(i, state, guided, x, noise)
        if keep is not None:
            x_next = keep.blend(sampler, x_next, i)
        if hook is not None:
            x_next, carried = hook(DenoiseStep(i, x, guided, x_next), carried)
        active = i >= start
        x_next = jnp.where(active[:, None, None, None], x_next, x)
        next_state = jax.tree.map(lambda new, old: jnp.where(
            active.reshape(-1, *[1] * (new.ndim - 1)), new, old), next_state, state)
        return x_next, next_state, carried

    state = jax.vmap(sampler.init_state)(latents)
    latents, _, hook_carry = jax.lax.fori_loop(
        jnp.min(start), sampler.num_steps, body, (latents, state, hook_carry))
    return latents, hook_carry


def noised_to_step(sampler: Sampler, clean: jax.Array, noise: jax.Array,
                   start: jax.Array) -> jax.Array:
    """`clean` [B, h, w, c] forward-diffused with `noise` to each item's start step (int32
    [B]): diffusers' scheduler.add_noise at timesteps[t_start]."""
    def one(x, n, i):
        return sampler.add_noise(x, n, i)

    return jax.vmap(one)(clean, noise, start)


def predicted_clean_latents(sampler: Sampler, step: DenoiseStep) -> jax.Array:
    """The denoiser's estimate of the clean latents (x0) at `step`, for probes of the loop."""
    i = step.index
    return predict_x0(sampler.prediction_type, step.prediction,
                      sampler.scale_model_input(step.latents, i), sampler.tables["alpha"][i],
                      sampler.tables["sigma"][i])
