"""A picklable GeneratorSpec whose generator draws images with numpy: fast and deterministic.

Each image depends only on (seed, image index, size) and, for image-to-image and inpainting,
the fitted init image and mask, like the real Generator's: so the pipeline mechanics
(sharding, resume, writers, runners, rejects) are tested without a model. It keeps the
Generator's contract: it reads each request's init image and mask itself
(load_image_inputs, by the spec's resize policy; no size given = the image's own, rounded),
reports a request it cannot prepare through on_reject (before any later image) or raises
when no on_reject is given, and works in batches, so a failing batch takes its neighbours
with it as a device failure would.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from jaxgen.engine.types import GeneratedImage
from jaxgen.images import DEFAULT_RESIZE, ImageInputs, load_image_inputs
from jaxgen.requests import GenerationRequest, RequestError, validate_request

OnReject = Callable[[int, GenerationRequest, RequestError], None]


class FakeGenerator:
    def __init__(self, spec: FakeSpec):
        self.model_name = spec.model_name
        self.model_hash = spec.model_hash
        self.batch_size = spec.batch_size
        self._spec = spec
        self.calls = 0

    def generate(self, requests: Iterable[GenerationRequest], window: int | None = None,
                 on_reject: OnReject | None = None) -> Iterator[GeneratedImage]:
        self.calls += 1
        if self._spec.fail_after_calls is not None and self.calls > self._spec.fail_after_calls:
            raise RuntimeError(f"fake generator: failing on call {self.calls} (simulated crash)")
        if self._spec.calls_dir:
            # One file per call, so calls can be counted across worker processes.
            path = os.path.join(self._spec.calls_dir, f"{os.getpid()}-{self.calls}")
            open(path, "w").close()
        batch: list[tuple[GenerationRequest, ImageInputs | None]] = []
        for position, request in enumerate(requests):
            try:
                batch.append(self._prepare(request))
            except RequestError as e:
                if on_reject is None:
                    raise
                on_reject(position, request, e)
                continue
            if len(batch) == self.batch_size:
                yield from self._run(batch)
                batch = []
        yield from self._run(batch)

    def _prepare(self, request: GenerationRequest) -> tuple[GenerationRequest, ImageInputs | None]:
        validate_request(request, size_multiple=self._spec.size_multiple,
                         prompt_required=not self._spec.takes_empty_prompt)
        assert request.seed is not None
        if request.init_image is None:
            return request, None
        size = None if request.height is None else (request.height, request.width)
        inputs = load_image_inputs(request.init_image, request.mask_image, size=size,
                                   size_multiple=self._spec.size_multiple,
                                   resize=self._spec.resize)
        height, width = inputs.image.shape[:2]
        return dataclasses.replace(request, height=height, width=width), inputs

    def _run(self, batch: list[tuple[GenerationRequest, ImageInputs | None]]
             ) -> Iterator[GeneratedImage]:
        if any(r.prompt == self._spec.failing_prompt for r, _ in batch):
            raise RuntimeError("fake generator: the device failed on this batch (simulated)")
        for request, inputs in batch:
            for index in range(request.num_images):
                yield GeneratedImage(request, index, draw(request, index, inputs), inputs)


def draw(request: GenerationRequest, index: int,
         inputs: ImageInputs | None = None) -> np.ndarray:
    rng = np.random.default_rng([request.seed, index])
    color = rng.integers(0, 256, size=3, dtype=np.uint8)
    image = np.empty((request.height, request.width, 3), np.uint8)
    image[:] = color
    if inputs is not None:  # keep the init image where the mask keeps it (all of it: img2img)
        repaint = 1.0 if inputs.mask is None else inputs.mask[..., None]
        kept = inputs.image * (1 - repaint * request.strength) + image * repaint * request.strength
        image = np.round(kept).astype(np.uint8)
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
    batch_size: int = 4
    size_multiple: int = 8  # what an init image's own size is rounded to
    resize: str = DEFAULT_RESIZE
    failing_prompt: str | None = None  # a batch holding this prompt fails, as on a device
    model_path: str | None = None  # a model directory, for its tokenizer (dry runs check it)
    dtype: str = "float32"  # recorded in the job record only: the fake draws uint8 images
    takes_empty_prompt: bool = False  # as a model trained with caption dropout says it does

    def empty_prompt(self) -> bool:
        return self.takes_empty_prompt

    def job_record(self) -> dict[str, object]:
        return {"model_sha256": self.model_hash, "dtype": self.dtype}

    def build(self) -> FakeGenerator:
        if self.builds_dir:
            open(os.path.join(self.builds_dir, f"build-{os.getpid()}"), "a").close()
        return FakeGenerator(self)

    def device_info(self) -> dict[str, object]:
        return {"device_kind": "fake-cpu", "device_count": 1}
