"""Stable Diffusion XL's conditions, the one place that says how SDXL differs from SD 1.x/2.x.

As diffusers' StableDiffusionXLPipeline: each prompt through both text encoders, their
hidden_states[-2] (no final layer norm) concatenated on features as the context; the second
encoder's projected pooled output and six micro-conditioning time ids (original size, crop
top-left, target size; the negative branch its own) as the UNet's added conditions. With
force_zeros_for_empty_prompt, an item without a negative prompt has zeros for its negative
context and pooled embeddings. A refiner (no text_encoder; requires_aesthetics_score)
conditions on text_encoder_2 alone and on five time ids: original size, crop top-left and an
aesthetic score.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models import CLIPTextModel, CLIPTextModelWithProjection
from jaxgen.requests import GenerationRequest

HIDDEN_LAYER = -2  # SDXL conditions on the penultimate layer of both encoders
# diffusers' StableDiffusionXLImg2ImgPipeline defaults.
DEFAULT_AESTHETIC_SCORE, DEFAULT_NEGATIVE_AESTHETIC_SCORE = 6.0, 2.5


def micro_conditioning(request: GenerationRequest) -> dict[str, tuple[int, int]]:
    """The request's six micro-conditioning pairs by diffusers' argument names, each filled
    in: original and target size (height, width) and crop (0, 0) as diffusers' defaults, each
    negative_* its positive."""
    size = (request.height, request.width)
    values = {"original_size": request.original_size or size,
              "crops_coords_top_left": request.crops_coords_top_left or (0, 0),
              "target_size": request.target_size or size}
    for name in tuple(values):
        values[f"negative_{name}"] = getattr(request, f"negative_{name}") or values[name]
    return {name: tuple(pair) for name, pair in values.items()}


def aesthetic_scores(request: GenerationRequest) -> tuple[float, float]:
    """(aesthetic_score, negative_aesthetic_score), diffusers' 6.0 and 2.5 where not given."""
    score, negative = request.aesthetic_score, request.negative_aesthetic_score
    return (DEFAULT_AESTHETIC_SCORE if score is None else float(score),
            DEFAULT_NEGATIVE_AESTHETIC_SCORE if negative is None else float(negative))


def time_ids(request: GenerationRequest, aesthetic: bool = False) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """float32 time ids of the conditional and of the negative branch: [6] (original size,
    crop top-left, target size), or [5] (original size, crop top-left, aesthetic score) for a
    model with requires_aesthetics_score (a refiner)."""
    m = micro_conditioning(request)
    if aesthetic:
        score, negative = aesthetic_scores(request)
        last, negative_last = (score,), (negative,)
    else:
        last, negative_last = m["target_size"], m["negative_target_size"]
    return (np.array([*m["original_size"], *m["crops_coords_top_left"], *last], np.float32),
            np.array([*m["negative_original_size"], *m["negative_crops_coords_top_left"],
                      *negative_last], np.float32))


def encode_branch(text: CLIPTextModel | None, text_2: CLIPTextModelWithProjection, params: Any,
                  ids: jax.Array, ids_2: jax.Array,
                  zero: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(context [B, T, D1 + D2], pooled [B, P]) of one branch; `zero` (bool [B]) replaces an
    item's with zeros (a negative branch under force_zeros_for_empty_prompt). A refiner (text
    None): the context is text_encoder_2's alone [B, T, D2], from `ids_2`."""
    hidden_2, pooled = text_2.apply({"params": params["text_encoder_2"]}, ids_2,
                                    hidden_layer=HIDDEN_LAYER)
    context = hidden_2
    if text is not None:
        hidden, _ = text.apply({"params": params["text_encoder"]}, ids,
                               hidden_layer=HIDDEN_LAYER)
        context = jnp.concatenate([hidden, hidden_2.astype(hidden.dtype)], axis=-1)
    if zero is not None:
        context = jnp.where(zero[:, None, None], 0, context).astype(context.dtype)
        pooled = jnp.where(zero[:, None], 0, pooled).astype(pooled.dtype)
    return context, pooled


def conditions(text: CLIPTextModel | None, text_2: CLIPTextModelWithProjection, params: Any,
               inputs: Any, guided: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(context, the UNet's added conditions) of both branches, unconditional first (the
    order of the guided batch), or of the conditional branch alone (guidance 1). A refiner's
    only tokens (text_encoder_2's) are cond_ids / uncond_ids."""
    refiner = text is None
    ids_2 = inputs.cond_ids if refiner else inputs.cond_ids_2
    context, pooled = encode_branch(text, text_2, params, inputs.cond_ids, ids_2)
    time_ids = inputs.time_ids
    if guided:
        uncond_2 = inputs.uncond_ids if refiner else inputs.uncond_ids_2
        neg_context, neg_pooled = encode_branch(text, text_2, params, inputs.uncond_ids,
                                                uncond_2, inputs.uncond_zero)
        context = jnp.concatenate([neg_context, context])
        pooled = jnp.concatenate([neg_pooled, pooled])
        time_ids = jnp.concatenate([inputs.uncond_time_ids, time_ids])
    return context, {"text_embeds": pooled, "time_ids": time_ids.astype(jnp.float32)}
