"""Init images and masks as users have them -> the arrays image-to-image and inpainting take.

Reading (`read_image`, `read_mask`) goes through Beam's FileSystems, so a reference is a local
path or a URI on any Beam filesystem (gs://, s3://, ...); `resolve_image_ref` resolves a relative
path against the manifest's directory. Images are read on the worker that generates them, so their
bytes never cross a shuffle. Accepted formats: PNG, JPEG and WebP (first frame if animated).

Conversion rule, in this order:
1. Size check from the header, before any pixel is decoded: more than `max_pixels` is refused
   (a decompression bomb), and so is a file over `max_bytes`.
2. EXIF orientation is applied (`ImageOps.exif_transpose`), so the pixels are upright as viewers
   show them; every size below is the upright size.
3. Images -> RGB uint8: alpha (RGBA, LA, PA, P or L/RGB with a transparent colour) is composited
   over WHITE, as a viewer shows a transparent image on a page; 16-bit (I;16, I) is scaled to
   8-bit by round(v * 255 / 65535); L, 1, P, CMYK, YCbCr and the rest by Pillow's convert.
   ICC profiles are not applied: the values are taken as sRGB, as diffusers does.
   Masks -> float32 in [0, 1], 1 (white) = repaint, 0 (black) = keep, as diffusers: alpha is
   composited over BLACK (transparent = keep), then luminance (Pillow's "L"). So a mask painted
   in white on a transparent layer, or an alpha-only mask (white colour, shape in the alpha),
   repaints where it is opaque. Soft values are kept; binarising is the sampler's choice.
A truncated or damaged file is an error (LOAD_TRUNCATED_IMAGES stays off): a half-grey init
image would silently become half the picture.

Every failure raises ImageInputError, a RequestError naming the field (`init_image`,
`mask_image`, `strength`), so the rejects path records it like any other bad field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import posixpath
import re
import warnings
from typing import Any

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxgen.requests import RequestError

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
RESIZE_POLICIES = ("crop", "fit", "stretch")
DEFAULT_RESIZE = "crop"
DEFAULT_MAX_PIXELS = 8192 * 8192  # 67,108,864: an SD-class model never needs more
DEFAULT_MAX_BYTES = 256 * 2**20
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageInputError(RequestError):
    """An init image, mask or strength that cannot be used; `field` names which."""


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image as read: RGB uint8 pixels (H, W, 3), upright; `sha256` of the file's bytes."""

    ref: str
    sha256: str
    pixels: np.ndarray
    original_mode: str  # Pillow's mode in the file, e.g. "RGBA", "P", "I;16", "CMYK"
    original_size: tuple[int, int]  # (height, width) as stored, before EXIF orientation


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedMask:
    """A mask as read: float32 (H, W) in [0, 1], 1 = repaint, upright; `sha256` of the bytes."""

    ref: str
    sha256: str
    mask: np.ndarray
    original_mode: str
    original_size: tuple[int, int]


def resolve_image_ref(ref: str, manifest_path: str, *, field: str = "init_image") -> str:
    """A URI or an absolute path unchanged; a relative path joined to the manifest's directory."""
    if not isinstance(ref, str) or not ref.strip():
        raise ImageInputError(field, ref, "must be a non-empty path or URI")
    if _URI.match(ref) or os.path.isabs(ref):
        return ref
    if _URI.match(manifest_path):
        scheme, rest = manifest_path.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), ref))}"
    return os.path.normpath(os.path.join(os.path.dirname(manifest_path), ref))


def read_image(
    ref: str,
    *,
    field: str = "init_image",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Read and convert one image by the module's rule; raise ImageInputError naming `field`."""
    data, image = _open(ref, field, max_pixels, max_bytes)
    mode, size = image.mode, (image.height, image.width)
    image = _decode_upright(image, ref, field)
    pixels = _to_rgb(image, ref, field)
    pixels.setflags(write=False)
    return LoadedImage(ref, hashlib.sha256(data).hexdigest(), pixels, mode, size)


def read_mask(
    ref: str,
    *,
    field: str = "mask_image",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedMask:
    """Read one mask by the module's rule (white = repaint); errors name `field`."""
    data, image = _open(ref, field, max_pixels, max_bytes)
    mode, size = image.mode, (image.height, image.width)
    image = _decode_upright(image, ref, field)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        mask = np.clip(np.asarray(image, np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
    else:
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            image = _over(image, (0, 0, 0, 255), ref, field)
        gray = _convert(image, "L", ref, field)
        mask = np.asarray(gray, np.float32) / 255.0
    mask.setflags(write=False)
    return LoadedMask(ref, hashlib.sha256(data).hexdigest(), mask, mode, size)


def _open(ref: str, field: str, max_pixels: int, max_bytes: int) -> tuple[bytes, Image.Image]:
    """The file's bytes and a Pillow image whose header is read but whose pixels are not."""
    try:
        with FileSystems.open(ref, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            data = f.read(max_bytes + 1)
    except Exception as e:
        if not _known_missing(ref, e):
            raise  # a transient storage error: let the runner retry the bundle
        raise ImageInputError(field, ref, f"cannot be read: {_reason(e)}") from None
    if len(data) > max_bytes:
        raise ImageInputError(field, ref, f"is larger than {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning is replaced by the max_pixels check just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise ImageInputError(field, ref, f"has more than {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageInputError(field, ref, "is not a PNG, JPEG or WebP image") from None
    if image.width * image.height > max_pixels:
        raise ImageInputError(
            field, ref, f"is {image.width}x{image.height}, more than {max_pixels} pixels"
        )
    return data, image


def _known_missing(ref: str, error: Exception) -> bool:
    """True when this file surely cannot be read; False for what may pass on a retry."""
    if isinstance(error, FileNotFoundError | IsADirectoryError | PermissionError | ValueError):
        return True
    try:
        return not FileSystems.exists(ref)
    except Exception:
        return False


def _reason(error: Exception) -> str:
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, ValueError):  # Beam's words: no filesystem for the scheme, or its setup
        return str(error)
    return "no such file"


def _decode_upright(image: Image.Image, ref: str, field: str) -> Image.Image:
    """Decode the pixels (truncation is an error here) and apply the EXIF orientation."""
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageInputError(field, ref, f"is damaged or truncated ({e})") from None


def _to_rgb(image: Image.Image, ref: str, field: str) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.clip(np.asarray(image, np.int64), 0, 65535)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)[..., None].repeat(3, axis=-1)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = _over(image, (255, 255, 255, 255), ref, field)
    return np.asarray(_convert(image, "RGB", ref, field), np.uint8)


def _over(image: Image.Image, background: tuple[int, ...], ref: str, field: str) -> Image.Image:
    """The image composited over an opaque background colour, as RGB."""
    rgba = _convert(image, "RGBA", ref, field)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, background), rgba).convert("RGB")


def _convert(image: Image.Image, mode: str, ref: str, field: str) -> Image.Image:
    try:
        return image.convert(mode)
    except ValueError:
        raise ImageInputError(
            field, ref, f"has pixel mode {image.mode}, which jaxgen cannot read"
        ) from None


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
    return np.clip(result, 0.0, 1.0) if is_mask else result


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
