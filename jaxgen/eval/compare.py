"""jaxgen against diffusers, row by row: the pixel difference of every image from the same noise.

`compare(generator, peer, rows, tolerance)` runs each (label, request) through the jaxgen
Generator and through the diffusers peer (jaxgen.eval.diffusers_peer: the pipeline of the
request's mode, jaxgen's initial noise and VAE-sample noise) and measures each image's max and
mean absolute difference in 0-255 units. A row that cannot be generated (a bad field, an
unreadable image) is recorded with its reason and skipped; so is a row whose sampler draws
per-step noise, which the peer draws from torch and so cannot match by design. `jaxgen
compare` reads the rows from a manifest and prints what this returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from jaxgen.engine.generator import Generator
from jaxgen.engine.types import GeneratedImage
from jaxgen.requests import GenerationRequest, RequestError

# Their per-step noise comes from torch on the diffusers side: the images differ by design.
ANCESTRAL_SAMPLERS = ("euler_ancestral", "ddpm")


@dataclasses.dataclass(frozen=True)
class ImageDifference:
    """One image of one row: `max` and `mean` absolute pixel difference, 0-255 units."""

    row: str
    index: int  # the image's number within its row (num_images)
    mode: str
    seed: int
    max: int
    mean: float

    def line(self, tolerance: float) -> str:
        verdict = "ok" if self.max <= tolerance else f"ABOVE TOLERANCE {tolerance:g}"
        return (f"{self.row} image {self.index} ({self.mode}, seed {self.seed}): max "
                f"{self.max}, mean {self.mean:.3f}  {verdict}")


@dataclasses.dataclass(frozen=True)
class SkippedRow:
    """A row not compared: the field at fault and why."""

    row: str
    field: str
    reason: str

    def line(self) -> str:
        return f"{self.row}: skipped ({self.field}): {self.reason}"


@dataclasses.dataclass
class Comparison:
    tolerance: float
    images: list[ImageDifference] = dataclasses.field(default_factory=list)
    skipped: list[SkippedRow] = dataclasses.field(default_factory=list)

    @property
    def above_tolerance(self) -> list[ImageDifference]:
        return [d for d in self.images if d.max > self.tolerance]

    @property
    def passed(self) -> bool:
        """Every compared image within the tolerance, and at least one compared."""
        return bool(self.images) and not self.above_tolerance

    def summary(self) -> str:
        worst = max((d.max for d in self.images), default=0)
        mean = float(np.mean([d.mean for d in self.images])) if self.images else 0.0
        verdict = "PASSED" if self.passed else ("FAILED: no image compared" if not self.images
                                                else "FAILED")
        return (f"{verdict}: {len(self.images)} images compared, "
                f"{len(self.above_tolerance)} above tolerance {self.tolerance:g}; largest max "
                f"difference {worst}, mean of means {mean:.3f}; {len(self.skipped)} rows skipped")

    def to_json(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "passed": self.passed, "summary": self.summary(),
                "images": [dataclasses.asdict(d) for d in self.images],
                "skipped": [dataclasses.asdict(s) for s in self.skipped]}


def pixel_difference(ours: np.ndarray, theirs: np.ndarray) -> tuple[int, float]:
    """(max, mean) absolute difference of two uint8 images of one shape, 0-255 units."""
    if ours.shape != theirs.shape:
        raise ValueError(f"images of shapes {ours.shape} and {theirs.shape}: not comparable")
    diff = np.abs(ours.astype(np.int32) - theirs.astype(np.int32))
    return int(diff.max()), float(diff.mean())


def compare(generator: Generator, peer: Any,
            rows: Iterable[tuple[str, GenerationRequest | RequestError]], tolerance: float,
            show: Callable[[str], None] = lambda _: None) -> Comparison:
    """Each (label, request) through `generator` and `peer` (a DiffusersPeer); a row given as
    the RequestError that its reading raised is skipped with it. `show` gets a line per image
    or skipped row as it is done."""
    result = Comparison(tolerance)

    def skip(row: str, field: str, reason: str) -> None:
        result.skipped.append(SkippedRow(row, field, reason))
        show(result.skipped[-1].line())

    labels: list[str] = []  # by position in the stream the generator is given
    rejected: dict[int, RequestError] = {}

    def requests() -> Iterator[GenerationRequest]:
        for row, request in rows:
            if isinstance(request, RequestError):
                skip(row, request.field, str(request))
            elif request.sampler in ANCESTRAL_SAMPLERS:
                skip(row, "sampler", f"{request.sampler!r} draws per-step noise, which the "
                     "diffusers side draws from torch: its images differ by design")
            else:
                labels.append(row)
                yield request

    def on_reject(position: int, _: GenerationRequest, error: RequestError) -> None:
        rejected[position] = error
        skip(labels[position], error.field, str(error))

    # Images come in request order, a request's rejection before any later request's images.
    position, batch = 0, []
    for image in generator.generate(requests(), on_reject=on_reject):
        while position in rejected:
            position += 1
        batch.append(image)
        if image.index == image.request.num_images - 1:
            _measure(peer, labels[position], batch, result, show)
            position, batch = position + 1, []
    return result


def _measure(peer: Any, row: str, images: list[GeneratedImage], result: Comparison,
             show: Callable[[str], None]) -> None:
    """One row's images against the peer's, from the same final request and inputs."""
    final = images[0].request
    theirs = peer.images(final, images[0].inputs, [g.index for g in images])
    for ours, their in zip(images, theirs, strict=True):
        worst, mean = pixel_difference(ours.image, their)
        result.images.append(ImageDifference(row, ours.index, final.mode, int(final.seed),
                                             worst, mean))
        show(result.images[-1].line(result.tolerance))
