"""A picklable GeneratorSpec whose generator draws images with numpy: fast and deterministic.

Each image depends only on (seed, image index, size), like the real Generator's: so the
pipeline mechanics (sharding, resume, writers, runners) are tested without a model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator

import numpy as np

from jaxgen.engine.types import GeneratedImage
from jaxgen.requests import GenerationRequest


class FakeGenerator:
    def __init__(self, spec: FakeSpec):
        self.model_name = spec.model_name
        self.model_hash = spec.model_hash
        self._spec = spec
        self.calls = 0

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[GeneratedImage]:
        self.calls += 1
        if self._spec.fail_after_calls is not None and self.calls > self._spec.fail_after_calls:
            raise RuntimeError(f"fake generator: failing on call {self.calls} (simulated crash)")
        if self._spec.calls_dir:
            # One file per call, so calls can be counted across worker processes.
            path = os.path.join(self._spec.calls_dir, f"{os.getpid()}-{self.calls}")
            open(path, "w").close()
        for request in requests:
            assert request.seed is not None
            for index in range(request.num_images):
                yield GeneratedImage(request, index, draw(request, index))


def draw(request: GenerationRequest, index: int) -> np.ndarray:
    rng = np.random.default_rng([request.seed, index])
    color = rng.integers(0, 256, size=3, dtype=np.uint8)
    image = np.empty((request.height, request.width, 3), np.uint8)
    image[:] = color
    # A few random bytes so images differ beyond their colour, and PNGs stay tiny.
    image[0, : min(8, request.width)] = rng.integers(0, 256, size=(min(8, request.width), 3))
    return image


@dataclasses.dataclass(frozen=True)
class FakeSpec:
    model_name: str = "fake-model"
    model_hash: str = "0123abcd"
    fail_after_calls: int | None = None  # raise on generate() call number N+1
    calls_dir: str | None = None
    builds_dir: str | None = None
    dtype: str = "float32"  # recorded in the job record only: the fake draws uint8 images

    def job_record(self) -> dict[str, object]:
        return {"model_sha256": self.model_hash, "dtype": self.dtype}

    def build(self) -> FakeGenerator:
        if self.builds_dir:
            open(os.path.join(self.builds_dir, f"build-{os.getpid()}"), "a").close()
        return FakeGenerator(self)

    def device_info(self) -> dict[str, object]:
        return {"device_kind": "fake-cpu", "device_count": 1}
