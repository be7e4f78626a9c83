"""The sampling program: encode prompts (and the init image) -> denoising loop -> VAE decode,
one pure function.

`SamplingProgram.build(model, spec)` fixes everything that changes array shapes or the loop
(size, steps, sampler: the SamplingSpec); everything per item is a field of one ItemInputs
pytree, so a new prompt, seed or guidance value never recompiles, and a new mode adds
fields, not a program (DESIGN decision 10). The parts live in encode.py, denoise.py and
decode.py; `run` takes a per-step hook for probes of the loop.

Image-to-image and inpainting follow diffusers' pipelines (docs/image-to-image.md): the init
image's VAE sample, noised to the item's start step; inpainting binarizes the mask at 0.5,
takes every f-th pixel of it as the latent mask (torch's nearest downsampling), and either
blends the known latents back outside it after every step (a 4-channel UNet) or feeds the
UNet the mask and the masked image's latents (a 9-channel inpainting UNet).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.engine import sdxl
from jaxgen.engine.decode import decode_latents
from jaxgen.engine.denoise import (
    ENCODE_NOISE,
    MASKED_ENCODE_NOISE,
    LatentMask,
    StepHook,
    denoise,
    draw_noise,
    guided_prediction,
    item_keys,
    noised_to_step,
)
from jaxgen.engine.encode import encode_prompt, encode_prompts
from jaxgen.engine.grouping import SamplingSpec
from jaxgen.engine.inputs import ItemInputs
from jaxgen.models import (
    AutoencoderKL,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    UNet2DConditionModel,
)
from jaxgen.models.layers import attention_implementation
from jaxgen.schedulers import Sampler, SchedulerConfig, make_sampler
from jaxgen.weights.model_dir import DiffusionModel

# (context, the UNet's added conditions or None): what the denoiser is conditioned on.
Conditions = tuple[jax.Array, dict[str, jax.Array] | None]


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, as jit needs
class SamplingProgram:
    """program(params, inputs) -> uint8 [B, H, W, 3], for one SamplingSpec of one model."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text: CLIPTextModel | None  # None: an SDXL refiner (text_2 alone)
    sampler: Sampler
    latent_shape: tuple[int, int, int]  # (h, w, c) of one item's latents
    scaling_factor: float  # the VAE's latent scale
    attention: str | None = None  # see jaxgen.models.layers.attention_implementation
    # The UNet takes the latents, the mask and the masked image's latents (SD-inpainting).
    inpainting_unet: bool = False
    guided: bool = True  # False: guidance 1 for every item, one UNet pass per step (no CFG)
    text_2: CLIPTextModelWithProjection | None = None  # SDXL's second encoder (engine.sdxl)

    @classmethod
    def build(cls, model: DiffusionModel, spec: SamplingSpec, dtype: Any = jnp.float32,
              attention: str | None = None) -> SamplingProgram:
        unet, vae, text = model.modules(dtype)
        text_2 = None
        if model.family == "sdxl":
            text_2 = model.text_encoder_2_module(dtype)
            if jnp.dtype(dtype) == jnp.float16 and model.vae_force_upcast:
                vae = AutoencoderKL(model.vae, jnp.float32)  # SDXL's VAE overflows in float16
        sampler = make_sampler(spec.sampler, SchedulerConfig.from_dict(model.scheduler_config),
                               spec.steps)
        f = model.latent_factor
        # Latent channels are the VAE's: an inpainting UNet takes more (latents, mask, image).
        shape = (spec.height // f, spec.width // f, model.vae.latent_channels)
        inpainting_unet = model.unet.in_channels == 2 * model.vae.latent_channels + 1
        return cls(unet, vae, text, sampler, shape, model.vae.scaling_factor, attention,
                   inpainting_unet, spec.guided, text_2)

    def __call__(self, params: Any, inputs: ItemInputs) -> jax.Array:
        return self.run(params, inputs)[0]

    def sample(self, params: Any, inputs: ItemInputs) -> tuple[jax.Array, jax.Array]:
        """(uint8 images [B, H, W, 3], bool [B]: whether each item's final latents were all
        finite, so a caller can flag a model that produces NaNs)."""
        images, _, finite = self._run(params, inputs, None, None)
        return images, finite

    def run(self, params: Any, inputs: ItemInputs, *, hook: StepHook | None = None,
            hook_carry: Any = None) -> tuple[jax.Array, Any]:
        """(images, the hook's final carry); see denoise.StepHook."""
        images, hook_carry, _ = self._run(params, inputs, hook, hook_carry)
        return images, hook_carry

    def _run(self, params: Any, inputs: ItemInputs, hook: StepHook | None,
             hook_carry: Any) -> tuple[jax.Array, Any, jax.Array]:
        if inputs.init_image is not None:
            return self._run_from_image(params, inputs, hook, hook_carry)
        if self.inpainting_unet or inputs.image_mask is not None:
            raise ValueError("an inpainting UNet or an image_mask needs an init_image")
        with attention_implementation(self.attention):
            keys, conditions, noise = self._start(params, inputs)
            latents = noise * self.sampler.init_noise_sigma
            keep = None
            if inputs.mask is not None:
                if inputs.known_latents is None:
                    raise ValueError("a latent mask needs known_latents to keep outside it")
                keep = LatentMask(inputs.mask, inputs.known_latents, noise)
            return self._finish(params, inputs, keys, conditions, latents, 0, keep, None, hook,
                                hook_carry)

    def _run_from_image(self, params: Any, inputs: ItemInputs, hook: StepHook | None,
                        hook_carry: Any) -> tuple[jax.Array, Any, jax.Array]:
        if inputs.start_step is None:
            raise ValueError("an init_image needs a start_step per item")
        if self.inpainting_unet and inputs.image_mask is None:
            raise ValueError("an inpainting UNet needs an image_mask")
        with attention_implementation(self.attention):
            keys, conditions, noise = self._start(params, inputs)
            start = inputs.start_step.astype(jnp.int32)
            pixels = to_unit_range(inputs.init_image)
            known = self._encode(params, pixels, keys, ENCODE_NOISE)
            latents = noised_to_step(self.sampler, known, noise, start)
            keep, extra = None, None
            if inputs.image_mask is not None:
                repaint = (inputs.image_mask >= 0.5).astype(jnp.float32)  # diffusers binarizes
                f = pixels.shape[1] // self.latent_shape[0]
                mask = repaint[:, ::f, ::f, :]  # torch's nearest: pixel (f*i, f*j)
                # diffusers' inpainting starts strength 1 from pure noise, not a noised image.
                pure = (start == 0)[:, None, None, None]
                latents = jnp.where(pure, noise * self.sampler.init_noise_sigma, latents)
                if self.inpainting_unet:
                    masked = self._encode(params, pixels * (repaint < 0.5), keys,
                                          MASKED_ENCODE_NOISE)
                    extra = jnp.concatenate([mask, masked], axis=-1)
                else:
                    keep = LatentMask(mask, known, noise)
            return self._finish(params, inputs, keys, conditions, latents, start, keep, extra,
                                hook, hook_carry)

    def _start(self, params: Any, inputs: ItemInputs) -> tuple[jax.Array, Conditions, jax.Array]:
        """Every mode's beginning: the items' keys, the text conditions, the unit initial noise
        (float32; drawn from the keys unless given)."""
        keys = item_keys(inputs.noise_ids)
        noise = inputs.noise
        if noise is None:
            noise = draw_noise(keys, 0, self.latent_shape)
        return keys, self._conditions(params, inputs), noise.astype(jnp.float32)

    def _finish(self, params: Any, inputs: ItemInputs, keys: jax.Array, conditions: Conditions,
                latents: jax.Array, start: int | jax.Array, keep: LatentMask | None,
                extra: jax.Array | None, hook: StepHook | None,
                hook_carry: Any) -> tuple[jax.Array, Any, jax.Array]:
        """Every mode's end: the loop from `start`, the decode, and the finite flags."""
        context, added = conditions
        predict = guided_prediction(self.unet, params["unet"], self.sampler, context,
                                    inputs.guidance if self.guided else None, extra, added)
        latents, hook_carry = denoise(
            self.sampler, predict, latents,
            step_noise=lambda i: draw_noise(keys, i + 1, self.latent_shape),
            start_step=start, keep=keep, hook=hook, hook_carry=hook_carry)
        images = decode_latents(self.vae, params["vae"], latents, self.scaling_factor)
        return images, hook_carry, all_finite(latents)

    def _conditions(self, params: Any, inputs: ItemInputs) -> Conditions:
        """Both branches' text conditions for guidance, or the conditional one alone: the
        context, and the UNet's added conditions where the family has them (SDXL)."""
        if self.text_2 is not None:
            return sdxl.conditions(self.text, self.text_2, params, inputs, self.guided)
        if not self.guided:
            return encode_prompt(self.text, params["text_encoder"], inputs.cond_ids), None
        return encode_prompts(self.text, params["text_encoder"], inputs.cond_ids,
                              inputs.uncond_ids), None

    def _encode(self, params: Any, pixels: jax.Array, keys: jax.Array, index: int) -> jax.Array:
        """Scaled latents [B, h, w, c]: a sample of the VAE's latent distribution of `pixels`
        (in [-1, 1]), its unit noise from each item's key at `index`, as diffusers samples."""
        mean, logvar = self.vae.apply({"params": params["vae"]}, pixels, method=self.vae.encode)
        mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
        eps = draw_noise(keys, index, mean.shape[1:])
        return (mean + jnp.exp(0.5 * logvar) * eps) * self.scaling_factor


def to_unit_range(image: jax.Array) -> jax.Array:
    """uint8 pixels -> float32 in [-1, 1], as diffusers' image processor (x / 255 * 2 - 1)."""
    return image.astype(jnp.float32) / 255.0 * 2.0 - 1.0


def all_finite(latents: jax.Array) -> jax.Array:
    """bool [B]: every value of each item's latents is finite."""
    return jnp.all(jnp.isfinite(latents), axis=tuple(range(1, latents.ndim)))
