"""`jaxgen.generate`: the shortest path from prompts to images in Python."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxgen.requests import GenerationRequest


@functools.lru_cache(maxsize=2)
def _generator(model: str, dtype: str | None, batch_size: int | None):
    from jaxgen.engine.generator import Generator

    return Generator.from_pretrained(model, dtype=dtype, batch_size=batch_size)


def generate(prompts: str | Sequence[str], model: str | Path | None = None, *,
             dtype: str | None = None, batch_size: int | None = None,
             **fields: Any) -> list[np.ndarray]:
    """Images (uint8 [H, W, 3]) for each prompt, in order, num_images per prompt.

    `fields` are GenerationRequest fields applied to every prompt (seed, steps, guidance,
    height, width, sampler, negative_prompt, num_images). A seed given here is the first
    prompt's; the next prompts get seed + 1, seed + 2, ... The Generator for a model is
    built once and reused by later calls. Without `model`, the default model's recommended
    steps/sampler/guidance fill the fields not given.
    """
    from jaxgen.default_model import RECOMMENDED, default_model_path

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if model is None:
        fields = {**RECOMMENDED, **fields}
    gen = _generator(str(model or default_model_path()), dtype, batch_size)
    if "height" not in fields and "width" not in fields:
        side = gen.model.native_size
        fields = {**fields, "height": side, "width": side}
    seed = fields.pop("seed", None)
    requests = [GenerationRequest(p, seed=None if seed is None else seed + i, **fields)
                for i, p in enumerate(prompts)]
    return [result.image for result in gen.generate(requests)]
