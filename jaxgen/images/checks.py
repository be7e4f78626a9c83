"""The error an unusable init image, mask or strength raises, and the checks across fields."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from jaxgen.requests import RequestError

if TYPE_CHECKING:
    from jaxgen.images.read import LoadedImage, LoadedMask


class ImageInputError(RequestError):
    """An init image, mask or strength that cannot be used; `field` names which.

    A RequestError, so the rejects path records it with its field like any other bad value.
    """


def check_mask_matches(image: LoadedImage, mask: LoadedMask) -> None:
    """A mask must have its image's (upright) size, or the same aspect ratio at another scale.

    Then every resize policy puts each mask pixel over the image pixel it was drawn on; with
    another aspect ratio, crop and fit would shift the mask and stretch would distort it.
    "Same aspect ratio" allows the half-pixel rounding of each side of a resized mask.
    """
    (ih, iw), (mh, mw) = image.pixels.shape[:2], mask.mask.shape
    if 2 * abs(mw * ih - iw * mh) > ih + iw:
        raise ImageInputError(
            "mask_image", mask.ref, f"is {mw}x{mh} but its init_image is {iw}x{ih}; "
            "a mask must have its image's size (or aspect ratio)",
        )


def check_mask_has_image(init_image: str | None, mask_image: str | None) -> None:
    """A mask says where to repaint an init image, so it needs one."""
    if mask_image is not None and init_image is None:
        raise ImageInputError("mask_image", mask_image, "is given without an init_image to repaint")


def check_strength(value: Any) -> float:
    """Strength in (0, 1]: the fraction of the denoising schedule run over the init image."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ImageInputError("strength", value, "must be a number in (0, 1]")
    if not 0.0 < value <= 1.0:
        raise ImageInputError(
            "strength", value, "must be in (0, 1]: 0 would keep the image unchanged, 1 repaints "
            "it from pure noise",
        )
    return float(value)
