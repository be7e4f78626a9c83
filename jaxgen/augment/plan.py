"""A recipe over a labelled dataset, as a manifest of ordinary generation requests.

img2img: for every real image, every strength of the entry, one row of `n` images (its init
image the real one). text2img: for every class, `n` rows, each its own prompt from the entry's
templates and words. Every row has a stable id (entry/source/strength or entry/label/i), so
its seed derives from the job seed and the id alone (requests.stable_seed), and metadata
carrying what the record must: label, recipe entry, kind, and for img2img the source image's
key and sha256. The same input and recipe give the same manifest bytes, so a rerun resumes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxgen.augment.inputs import LabelledImage
from jaxgen.augment.recipe import Entry, Recipe
from jaxgen.dataset.records import dumps_stable


def plan_rows(recipe: Recipe, images: list[LabelledImage],
              sources: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The manifest rows of `recipe` over `images`; `sources`: each image's key -> the path or
    URI the workers read it from."""
    labels = sorted({i.label for i in images})
    for entry in recipe.entries:
        if entry.kind == "img2img":
            yield from _img2img(recipe, entry, images, sources)
        else:
            unknown = sorted(set(entry.labels or ()) - set(labels))
            if unknown:
                raise ValueError(f"entry {entry.name!r}: labels {unknown} are not in the input "
                                 f"(its labels: {', '.join(labels)})")
            yield from _text2img(recipe, entry, list(entry.labels or labels))


def manifest_bytes(rows: Iterator[dict[str, Any]]) -> bytes:
    return "".join(dumps_stable(row) + "\n" for row in rows).encode()


def _settings(recipe: Recipe) -> dict[str, Any]:
    fields = {"negative_prompt": recipe.negative_prompt or None, "steps": recipe.steps,
              "guidance": recipe.guidance, "sampler": recipe.sampler,
              "height": recipe.height, "width": recipe.width}
    return {k: v for k, v in fields.items() if v is not None}


def _img2img(recipe: Recipe, entry: Entry, images: list[LabelledImage],
             sources: dict[str, str]) -> Iterator[dict[str, Any]]:
    (template,) = recipe.templates(entry)
    for image in images:
        prompt = template.format(label=recipe.phrase(image.label))
        for strength in entry.strength:
            yield {"id": f"{entry.name}/{image.key}/{strength:g}", "prompt": prompt,
                   "init_image": sources[image.key], "strength": strength,
                   "num_images": entry.n, **_settings(recipe),
                   "metadata": {"label": image.label, "recipe_entry": entry.name,
                                "kind": entry.kind, "source_key": image.key,
                                "source_sha256": image.sha256}}


def _text2img(recipe: Recipe, entry: Entry, labels: list[str]) -> Iterator[dict[str, Any]]:
    templates = recipe.templates(entry)
    for label in labels:
        for i in range(entry.n):
            rng = np.random.default_rng(_stream(recipe.seed, entry.name, label, i))
            words = {name: options[int(rng.integers(len(options)))]
                     for name, options in sorted(entry.words.items())}
            prompt = templates[i % len(templates)].format(label=recipe.phrase(label), **words)
            yield {"id": f"{entry.name}/{label}/{i}", "prompt": prompt, **_settings(recipe),
                   "metadata": {"label": label, "recipe_entry": entry.name,
                                "kind": entry.kind, **({"words": words} if words else {})}}


def _stream(seed: int, *parts: Any) -> int:
    """A seed for one image's word choices: blake2b, not hash() (salted per process)."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
