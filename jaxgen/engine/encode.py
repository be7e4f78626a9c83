"""Prompt encoding: token ids -> the text context the denoiser attends to, both branches."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.models import CLIPTextModel


def encode_prompts(text: CLIPTextModel, params: Any, cond_ids: jax.Array,
                   uncond_ids: jax.Array) -> jax.Array:
    """Context [2B, T, D]: the unconditional rows first, then the conditional ones, the order
    of the doubled batch the guided denoiser runs (see denoise.guided_prediction)."""
    tokens = jnp.concatenate([uncond_ids, cond_ids], axis=0)
    context, _ = text.apply({"params": params}, tokens)
    return context


def encode_prompt(text: CLIPTextModel, params: Any, ids: jax.Array) -> jax.Array:
    """Context [B, T, D] of one branch: what an unguided program (guidance 1) attends to."""
    context, _ = text.apply({"params": params}, ids)
    return context
