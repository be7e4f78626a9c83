"""Checks every generated image passes before it is written, on the worker.

- "non-finite": the generator reports that the item's final latents held NaN or infinity
  (GeneratedImage.finite; a generator without that field is taken as finite).
- "degenerate": a constant or near-constant image: in every channel, the pixel values span
  at most DEGENERATE_SPAN levels (of 255; span = max - min). An all-NaN model's images decode
  to one colour and fail this check too. The span, not a deviation: an image of one colour
  but for a few pixels is not a failed model (the tests' fake generator draws such images).

A row with a flagged image is rejected whole (its images are checked together, so a row is
either generated or rejected), with field "image" and the reason; with
`keep_flagged` its images are written and each flagged record's metadata carries FLAG_KEY.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from jaxgen.dataset.plan import PlannedRow, Reject
from jaxgen.dataset.records import ImageRecord

if TYPE_CHECKING:
    from jaxgen.engine.types import GeneratedImage

# Far below real images' (the default model's smallest: 39; docs/image-checks.md).
DEGENERATE_SPAN = 4
FLAG_KEY = "jaxgen_flag"  # the key a kept flagged image's record metadata carries


@dataclasses.dataclass(frozen=True)
class ImageFlag:
    """Why an image failed its checks: `check` is "non-finite" or "degenerate"."""

    check: str
    reason: str


def check_image(image: np.ndarray, finite: bool = True) -> ImageFlag | None:
    """The flag `image` earns, or None when it passes every check."""
    if not finite:
        return ImageFlag("non-finite", "the final latents hold NaN or infinity")
    span = int(np.ptp(image.reshape(-1, image.shape[-1]), axis=0).max())
    if span <= DEGENERATE_SPAN:
        return ImageFlag("degenerate", f"a constant or near-constant image (every channel "
                         f"spans at most {span} of 255 levels; the check: <= {DEGENERATE_SPAN})")
    return None


def check_result(result: GeneratedImage) -> ImageFlag | None:
    return check_image(result.image, getattr(result, "finite", True))


def flagged_reject(row: PlannedRow, flags: dict[int, ImageFlag]) -> Reject:
    """The reject of a row whose images `flags` (image index -> flag) failed their checks."""
    parts = [f"image {i} {flag.check}: {flag.reason}" for i, flag in sorted(flags.items())]
    return Reject.of(row, "image", "; ".join(parts), "check")


def mark(record: ImageRecord, flag: ImageFlag | None) -> ImageRecord:
    """A kept image's record, its metadata carrying the flag when it has one."""
    if flag is None:
        return record
    value = {"check": flag.check, "reason": flag.reason}
    return dataclasses.replace(record, metadata={**record.metadata, FLAG_KEY: value})


def count_flags(flags: Sequence[ImageFlag]) -> dict[str, int]:
    """Flagged images by check, for the shard stats."""
    counts: dict[str, int] = {}
    for flag in flags:
        counts[flag.check] = counts.get(flag.check, 0) + 1
    return dict(sorted(counts.items()))
