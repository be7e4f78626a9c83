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

        import jaxgen
        image, = jaxgen.generate("a large red circle in the center on a blue background", seed=1)

    `fields` are GenerationRequest fields applied to every prompt (seed, steps, guidance,
    height, width, sampler, negative_prompt, num_images; diffusers' names num_inference_steps,
    guidance_scale, num_images_per_prompt too). A seed given here is the first prompt's; the
    next prompts get seed + 1, seed + 2, ... The Generator for a model is built once and
    reused by later calls. Fields not given follow jaxgen's chain of defaults
    (jaxgen.dataset.config): the model's recommended settings (its jaxgen.json), then its
    native size, whichever way the model is named. A size far from the native one (over 2x,
    under 0.5x) draws what the model never saw: a warning says so.
    """
    from jaxgen.default_model import default_model_path
    from jaxgen.requests import FIELD_ALIASES
    from jaxgen.weights.model_dir import recommended_settings

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    fields = {FIELD_ALIASES.get(k, k): v for k, v in fields.items()}
    model = str(model or default_model_path())
    gen = _generator(model, dtype, batch_size)
    side = gen.model.native_size
    fields = {**recommended_settings(model), "height": side, "width": side, **fields}
    seed = fields.pop("seed", None)
    requests = [GenerationRequest(p, seed=None if seed is None else seed + i, **fields)
                for i, p in enumerate(prompts)]
    return [result.image for result in gen.generate(requests)]
