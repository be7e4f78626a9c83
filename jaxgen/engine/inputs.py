"""The per-item inputs of a sampling program: one pytree, one field per input.

DESIGN decision 10, modes are inputs, not programs: text-to-image fills the token ids, noise
ids and guidance; image-to-image adds the init image and a start step (its strength, as a
step); inpainting adds the pixel mask. A latent mask with known latents is the loop's own
seam for probes. Every field is a per-item array with the batch on its leading axis, so one
sharding (the batch split over 'data') covers the whole tree, and an absent (None) field
compiles a program without it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ItemInputs:
    """What differs between the items of one batch; arrays, so a new value never recompiles."""

    cond_ids: jax.Array  # int32 [B, T]: the prompt's tokens
    uncond_ids: jax.Array  # int32 [B, T]: the negative prompt's ("" for plain guidance)
    noise_ids: jax.Array  # uint32 [B, 3]: see noise_ids
    guidance: jax.Array  # float32 [B]: classifier-free guidance scale
    # [B, h, w, c] unit-variance initial latents used instead of the ones drawn from
    # noise_ids: for comparisons with other implementations.
    noise: jax.Array | None = None
    # [B, h, w, 1]: 1 where the loop generates, 0 where known_latents are kept.
    mask: jax.Array | None = None
    # [B, h, w, c] clean latents (VAE mean times its scaling factor) kept outside the mask.
    known_latents: jax.Array | None = None
    # uint8 [B, H, W, 3]: image-to-image's and inpainting's init image, at the output size.
    init_image: jax.Array | None = None
    # int32 [B]: the step the loop starts at for each item (start_step(steps, strength)).
    start_step: jax.Array | None = None
    # float32 [B, H, W, 1] in [0, 1], 1 (white) = repaint: inpainting's mask as read.
    image_mask: jax.Array | None = None
    # SDXL (jaxgen.engine.sdxl): int32 [B, T2] prompt_2's and the negative prompt's tokens
    # for the second encoder (None for a refiner, whose only tokens are cond_ids); float32
    # [B, 6] time ids of each branch ([B, 5] for a refiner); bool [B] zeros for the negative
    # branch (force_zeros_for_empty_prompt with no negative prompt).
    cond_ids_2: jax.Array | None = None
    uncond_ids_2: jax.Array | None = None
    time_ids: jax.Array | None = None
    uncond_time_ids: jax.Array | None = None
    uncond_zero: jax.Array | None = None

    @classmethod
    def abstract(cls, batch_size: int, tokens: int, mode: str = "text-to-image",
                 size: tuple[int, int] = (0, 0), tokens_2: int | None = None,
                 time_ids: int = 0) -> ItemInputs:
        """Shapes and dtypes of a batch of `mode` at `size` (H, W), to compile before any
        request; `tokens_2`: an SDXL model's second tokenizer's length; `time_ids`: its time
        ids per item (0: not SDXL)."""
        b, (h, w) = batch_size, size
        ids = jax.ShapeDtypeStruct((b, tokens), jnp.int32)
        fields = {}
        if mode != "text-to-image":
            fields = {"init_image": jax.ShapeDtypeStruct((b, h, w, 3), jnp.uint8),
                      "start_step": jax.ShapeDtypeStruct((b,), jnp.int32)}
        if mode == "inpainting":
            fields["image_mask"] = jax.ShapeDtypeStruct((b, h, w, 1), jnp.float32)
        if tokens_2 is not None:
            ids_2 = jax.ShapeDtypeStruct((b, tokens_2), jnp.int32)
            fields |= {"cond_ids_2": ids_2, "uncond_ids_2": ids_2}
        if time_ids:
            times = jax.ShapeDtypeStruct((b, time_ids), jnp.float32)
            fields |= {"time_ids": times, "uncond_time_ids": times,
                       "uncond_zero": jax.ShapeDtypeStruct((b,), jnp.bool_)}
        return cls(cond_ids=ids, uncond_ids=ids,
                   noise_ids=jax.ShapeDtypeStruct((b, 3), jnp.uint32),
                   guidance=jax.ShapeDtypeStruct((b,), jnp.float32), **fields)


def start_step(steps: int, strength: float) -> int:
    """The step an image-to-image or inpainting run starts at: diffusers' get_timesteps
    (strength 1 starts at 0; the loop runs int(steps * strength) steps)."""
    init_timestep = min(int(steps * strength), steps)
    return max(steps - init_timestep, 0)


def noise_ids(seeds: np.ndarray, image_indices: np.ndarray) -> np.ndarray:
    """uint32 [B, 3] (seed low word, seed high word, image index): an image's whole identity
    for its noise. Never batch position, batch size or device count."""
    seeds = np.asarray(seeds, np.uint64)
    return np.stack([seeds & 0xFFFFFFFF, seeds >> np.uint64(32),
                     np.asarray(image_indices, np.uint64)], axis=-1).astype(np.uint32)
