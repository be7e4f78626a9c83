"""The per-item inputs of a sampling program: one pytree, one field per input.

DESIGN decision 10, modes are inputs, not programs: text-to-image fills the token ids, noise
ids and guidance; a latent mask with known latents (inpainting's plumbing) is two more
fields, and image-to-image's init latents and strength will be two more. Every field is a
per-item array with the batch on its leading axis, so one sharding (the batch split over
'data') covers the whole tree, and an absent (None) field compiles a program without it.
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

    @classmethod
    def abstract(cls, batch_size: int, tokens: int) -> ItemInputs:
        """Shapes and dtypes of a text-to-image batch, to compile before any request."""
        ids = jax.ShapeDtypeStruct((batch_size, tokens), jnp.int32)
        return cls(cond_ids=ids, uncond_ids=ids,
                   noise_ids=jax.ShapeDtypeStruct((batch_size, 3), jnp.uint32),
                   guidance=jax.ShapeDtypeStruct((batch_size,), jnp.float32))


def noise_ids(seeds: np.ndarray, image_indices: np.ndarray) -> np.ndarray:
    """uint32 [B, 3] (seed low word, seed high word, image index): an image's whole identity
    for its noise. Never batch position, batch size or device count."""
    seeds = np.asarray(seeds, np.uint64)
    return np.stack([seeds & 0xFFFFFFFF, seeds >> np.uint64(32),
                     np.asarray(image_indices, np.uint64)], axis=-1).astype(np.uint32)
