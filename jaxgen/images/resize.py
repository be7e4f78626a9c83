"""Fitting an init image or mask to the request's frame, and the frame an image gets by default."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageOps

from jaxgen.images.checks import ImageInputError

RESIZE_POLICIES = ("crop", "fit", "stretch")
DEFAULT_RESIZE = "crop"


def fit_to_size(
    pixels: np.ndarray, height: int, width: int, policy: str = DEFAULT_RESIZE
) -> np.ndarray:
    """Resize an image (H, W, 3) uint8 or a mask (H, W) float32 to (height, width) by `policy`.

    - crop (the default): scale to cover the frame, keeping the aspect ratio, then centre-crop.
      diffusers' VaeImageProcessor defaults to a plain resize (our stretch); jaxgen crops by
      default because a stretched init image stretches what the model keeps of it, and
      padding puts bars into the picture that image-to-image then preserves; a crop loses only
      edges, and with the default size (the image's own, rounded) only a few pixels.
    - fit: scale to fit inside the frame, keeping the aspect ratio, and centre it on padding:
      white for images (as transparency is), 0 = keep for masks (the padding is not repainted).
    - stretch: resize to the frame, ignoring the aspect ratio.
    Images resample with LANCZOS (sharp); masks with BILINEAR, which (unlike LANCZOS) never
    overshoots [0, 1], and (unlike NEAREST) antialiases when it shrinks, so edges stay smooth.
    """
    if policy not in RESIZE_POLICIES:
        raise ImageInputError("resize", policy, f"is not one of {', '.join(RESIZE_POLICIES)}")
    is_mask = pixels.ndim == 2
    image = Image.fromarray(np.asarray(pixels, np.float32 if is_mask else np.uint8))
    resample = Image.Resampling.BILINEAR if is_mask else Image.Resampling.LANCZOS
    size = (width, height)
    if policy == "crop":
        out = ImageOps.fit(image, size, method=resample)
    elif policy == "fit":
        out = ImageOps.pad(image, size, method=resample, color=0.0 if is_mask else (255,) * 3)
    else:
        out = image.resize(size, resample)
    result = np.asarray(out)
    return np.clip(result, 0.0, 1.0) if is_mask else result  # clip: float rounding only


def default_size(image_hw: tuple[int, int], size_multiple: int) -> tuple[int, int]:
    """The image's own size, each side rounded to the nearest multiple (ties down), >= one multiple.

    Nearest rather than diffusers' round-down: the frame then differs least from the image;
    ties round down so that a side is never enlarged by more than half a multiple.
    """
    height, width = (
        max(size_multiple, math.ceil(side / size_multiple - 0.5) * size_multiple)
        for side in image_hw
    )
    return height, width
