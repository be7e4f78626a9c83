"""Init images and masks as users have them -> the arrays image-to-image and inpainting take.

- `read`: any Beam path -> upright RGB uint8 pixels or a float mask (white = repaint), by a
  stated conversion rule (EXIF orientation, alpha over white, 16-bit scaled), refusing
  decompression bombs from the header and truncated files.
- `resize`: the crop / fit / stretch policies and the default frame (the image's own size
  rounded to the model's size multiple).
- `checks`: ImageInputError (a RequestError naming `init_image`, `mask_image` or `strength`)
  and the checks across fields.
- `inputs`: all of it for one request, on the worker that generates from it, so image bytes
  never cross a shuffle.
"""

from jaxgen.images.checks import (
    ImageInputError,
    check_mask_has_image,
    check_mask_matches,
    check_strength,
)
from jaxgen.images.inputs import ImageInputs, load_image_inputs
from jaxgen.images.read import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    IMAGE_FORMATS,
    LoadedImage,
    LoadedMask,
    read_image,
    read_mask,
    resolve_image_ref,
)
from jaxgen.images.resize import DEFAULT_RESIZE, RESIZE_POLICIES, default_size, fit_to_size

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_RESIZE",
    "IMAGE_FORMATS",
    "RESIZE_POLICIES",
    "ImageInputError",
    "ImageInputs",
    "LoadedImage",
    "LoadedMask",
    "check_mask_has_image",
    "check_mask_matches",
    "check_strength",
    "default_size",
    "fit_to_size",
    "load_image_inputs",
    "read_image",
    "read_mask",
    "resolve_image_ref",
]
