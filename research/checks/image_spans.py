"""How far real images are from the degenerate-image check (jaxgen.dataset.flags).

Generates images with a model and prints, over all of them, the smallest "span" (the largest,
over channels, of max - min pixel value: what the check compares with DEGENERATE_SPAN) and
the smallest per-channel standard deviation, with the prompts that gave them.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
    python -m research.checks.image_spans --model default --images 64
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from jaxgen.dataset.flags import DEGENERATE_SPAN
from jaxgen.engine.generator import Generator
from jaxgen.requests import GenerationRequest
from jaxgen.weights.model_dir import load_model, recommended_settings
from research.determinism.measure import model_dir

COLOURS = ("red", "green", "blue", "yellow", "white", "black")
SHAPES = ("circle", "square", "triangle")
# Beside the domain's captions, prompts that ask for little: the likeliest flat images.
EDGE_PROMPTS = ("background", "a photo of a cat", "nothing", "black", "a white background")


def prompts(n: int) -> list[str]:
    scenes = [f"a {c} {s}" for c, s in itertools.product(COLOURS, SHAPES)]
    scenes += [f"a small {c} {s} on the left" for c, s in itertools.product(COLOURS, SHAPES)]
    every = list(EDGE_PROMPTS) + scenes
    return [every[i % len(every)] for i in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="default, tiny-sd1, tiny-sd2 or a path")
    p.add_argument("--images", type=int, default=64)
    args = p.parse_args()
    path = model_dir(args.model)
    model = load_model(path)
    settings = recommended_settings(path)
    size = model.native_size
    gen = Generator(model, batch_size=8)
    reqs = [GenerationRequest(prompt=text, seed=i, height=size, width=size, **settings)
            for i, text in enumerate(prompts(args.images))]
    spans, stds = [], []
    for result in gen.generate(reqs):
        pixels = result.image.reshape(-1, 3)
        spans.append(int(np.ptp(pixels, axis=0).max()))
        stds.append(float(pixels.std(axis=0).max()))
    low = int(np.argmin(spans))
    print(json.dumps({"model": args.model, "images": len(spans), "settings": settings,
                      "size": size, "check_span": DEGENERATE_SPAN,
                      "smallest_span": spans[low], "its_prompt": reqs[low].prompt,
                      "span_percentiles_1_50": [float(np.percentile(spans, q)) for q in (1, 50)],
                      "smallest_std": round(min(stds), 2)}, indent=1))


if __name__ == "__main__":
    main()
