"""The sampling program: encode prompts -> denoising loop -> VAE decode, one pure function.

`SamplingProgram.build(model, spec)` fixes everything that changes array shapes or the loop
(size, steps, sampler: the SamplingSpec); everything per item is a field of one ItemInputs
pytree, so a new prompt, seed or guidance value never recompiles, and a new mode adds
fields, not a program (DESIGN decision 10). The parts live in encode.py, denoise.py and
decode.py; `run` takes a per-step hook for probes of the loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.engine.decode import decode_latents
from jaxgen.engine.denoise import (
    LatentMask,
    StepHook,
    denoise,
    draw_noise,
    guided_prediction,
    item_keys,
)
from jaxgen.engine.encode import encode_prompts
from jaxgen.engine.grouping import SamplingSpec
from jaxgen.engine.inputs import ItemInputs
from jaxgen.models import AutoencoderKL, CLIPTextModel, UNet2DConditionModel
from jaxgen.models.layers import attention_implementation
from jaxgen.schedulers import Sampler, SchedulerConfig, make_sampler
from jaxgen.weights.model_dir import DiffusionModel


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, as jit needs
class SamplingProgram:
    """program(params, inputs) -> uint8 [B, H, W, 3], for one SamplingSpec of one model."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text: CLIPTextModel
    sampler: Sampler
    latent_shape: tuple[int, int, int]  # (h, w, c) of one item's latents
    scaling_factor: float  # the VAE's latent scale
    attention: str | None = None  # see jaxgen.models.layers.attention_implementation

    @classmethod
    def build(cls, model: DiffusionModel, spec: SamplingSpec, dtype: Any = jnp.float32,
              attention: str | None = None) -> SamplingProgram:
        unet, vae, text = model.modules(dtype)
        sampler = make_sampler(spec.sampler, SchedulerConfig.from_dict(model.scheduler_config),
                               spec.steps)
        f = model.latent_factor
        # Latent channels are the VAE's: an inpainting UNet takes more (latents, mask, image).
        shape = (spec.height // f, spec.width // f, model.vae.latent_channels)
        return cls(unet, vae, text, sampler, shape, model.vae.scaling_factor, attention)

    def __call__(self, params: Any, inputs: ItemInputs) -> jax.Array:
        return self.run(params, inputs)[0]

    def run(self, params: Any, inputs: ItemInputs, *, hook: StepHook | None = None,
            hook_carry: Any = None) -> tuple[jax.Array, Any]:
        """(images, the hook's final carry); see denoise.StepHook."""
        with attention_implementation(self.attention):
            keys = item_keys(inputs.noise_ids)
            context = encode_prompts(self.text, params["text_encoder"], inputs.cond_ids,
                                     inputs.uncond_ids)
            noise = inputs.noise
            if noise is None:
                noise = draw_noise(keys, 0, self.latent_shape)
            latents = noise.astype(jnp.float32) * self.sampler.init_noise_sigma
            keep = None
            if inputs.mask is not None:
                if inputs.known_latents is None:
                    raise ValueError("a latent mask needs known_latents to keep outside it")
                keep = LatentMask(inputs.mask, inputs.known_latents, noise)
            predict = guided_prediction(self.unet, params["unet"], self.sampler, context,
                                        inputs.guidance)
            latents, hook_carry = denoise(
                self.sampler, predict, latents,
                step_noise=lambda i: draw_noise(keys, i + 1, self.latent_shape), keep=keep,
                hook=hook, hook_carry=hook_carry)
            images = decode_latents(self.vae, params["vae"], latents, self.scaling_factor)
            return images, hook_carry
