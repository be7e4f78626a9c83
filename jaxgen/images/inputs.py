"""One request's init image (and mask), read, checked and fitted on the worker that uses them."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxgen.images.checks import check_mask_matches
from jaxgen.images.read import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, read_image, read_mask
from jaxgen.images.resize import DEFAULT_RESIZE, default_size, fit_to_size


@dataclasses.dataclass(frozen=True, eq=False)
class ImageInputs:
    """What image-to-image or inpainting takes for one request, fitted to its frame."""

    image: np.ndarray  # (height, width, 3) uint8
    image_ref: str
    image_sha256: str
    mask: np.ndarray | None = None  # (height, width) float32, 1 = repaint
    mask_ref: str | None = None
    mask_sha256: str | None = None

    def record_fields(self) -> dict[str, str]:
        """The references and content hashes (sha256 of the file bytes) a record carries."""
        fields = {"init_image": self.image_ref, "init_image_sha256": self.image_sha256}
        if self.mask_ref is not None and self.mask_sha256 is not None:
            fields |= {"mask_image": self.mask_ref, "mask_image_sha256": self.mask_sha256}
        return fields


def load_image_inputs(
    init_image: str,
    mask_image: str | None = None,
    *,
    size: tuple[int, int] | None = None,
    size_multiple: int = 8,
    resize: str = DEFAULT_RESIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageInputs:
    """Read an init image and its optional mask, check them, and fit both to one frame.

    References are already resolved (`resolve_image_ref`, when the row is parsed). `size` is
    the request's (height, width); None means the image's own, by `default_size`. The mask is
    checked against its image before fitting, then fitted by the same policy, so both land on
    the same frame pixel for pixel. Raises ImageInputError naming the field at fault.
    """
    limits = {"max_pixels": max_pixels, "max_bytes": max_bytes}
    image = read_image(init_image, **limits)
    height, width = size or default_size(image.pixels.shape[:2], size_multiple)
    inputs = ImageInputs(fit_to_size(image.pixels, height, width, resize), image.ref, image.sha256)
    if mask_image is None:
        return inputs
    mask = read_mask(mask_image, **limits)
    check_mask_matches(image, mask)
    return dataclasses.replace(
        inputs,
        mask=fit_to_size(mask.mask, height, width, resize),
        mask_ref=mask.ref,
        mask_sha256=mask.sha256,
    )
