"""A GeneratorSpec that draws each prompt's own domain scene: what a perfect shapes model would.

A prompt from jaxgen.eval.recall.recall_prompts was captioned from sample_scene(seed, count),
so rendering that scene answers it exactly (precision 1), with the domain's spread over what
it leaves free. Used to test reading datasets back for recall.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from jaxgen.engine.types import GeneratedImage
from jaxgen.requests import GenerationRequest
from jaxgen.shapes import parse_caption, render, sample_scene


class SceneGenerator:
    model_name = "scenes"
    model_hash = "0" * 8

    def generate(self, requests: Iterable[GenerationRequest], **_: object
                 ) -> Iterator[GeneratedImage]:
        for request in requests:
            try:
                objects = len(parse_caption(request.prompt).objects) or None
            except ValueError:  # not a shapes prompt: any scene will do
                objects = None
            for index in range(request.num_images):
                yield GeneratedImage(request, index, render(sample_scene(request.seed, objects)))


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    def build(self) -> SceneGenerator:
        return SceneGenerator()
