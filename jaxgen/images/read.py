"""Reading init images and masks: any Beam path -> upright RGB uint8 pixels or a float mask.

A reference is a local path or a URI on any Beam filesystem (gs://, s3://, ...), read through
`FileSystems.open`; `resolve_image_ref` resolves a relative path against the manifest's
directory. Accepted formats: PNG, JPEG and WebP (the first frame if animated).

The conversion rule, in this order:
1. Size check from the header, before any pixel is decoded: more than `max_pixels` is refused
   (a decompression bomb), and so is a file over `max_bytes`.
2. EXIF orientation is applied (`ImageOps.exif_transpose`), so the pixels are upright as viewers
   show them; every size after this step is the upright size.
3. Images -> RGB uint8: alpha (RGBA, LA, PA, P or L/RGB with a transparent colour) is composited
   over WHITE, as a viewer shows a transparent image on a page; 16-bit samples keep their top
   byte (v >> 8: 65535 -> 255, 32768 -> 128), for gray (I;16, I) here as Pillow already does
   for 16-bit colour, so one rule holds for both; L, 1, P, CMYK, YCbCr and the rest by Pillow's
   convert. ICC profiles are not applied: values are taken as sRGB,
   as diffusers does.
   Masks -> float32 in [0, 1], 1 (white) = repaint, 0 (black) = keep, as diffusers: alpha is
   composited over BLACK (transparent = keep), then luminance (Pillow's "L"; 16-bit by v / 65535).
   So a mask painted in white on a transparent layer, or an alpha-only mask (white colour, the
   shape in the alpha), repaints where it is opaque; an alpha-only mask in black repaints nothing.
   Soft values are kept; binarising is the sampler's choice.
A truncated or damaged file is an error (LOAD_TRUNCATED_IMAGES stays off): a half-grey init
image would silently become half the picture. A missing file, a directory, a refused permission
or a scheme no filesystem serves is an ImageInputError; any other storage error is raised as it
is, so the runner retries the bundle rather than rejecting a row for a passing network fault.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import posixpath
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

from jaxgen.images.checks import ImageInputError

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
DEFAULT_MAX_PIXELS = 8192 * 8192  # 67,108,864: room to crop down to any request size (MAX_SIDE)
DEFAULT_MAX_BYTES = 256 * 2**20
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


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
    """Read one image as upright RGB uint8 (H, W, 3), by the rule in this module's docstring.

    EXIF orientation first; alpha over white; 16-bit to 8-bit by v >> 8. More than
    `max_pixels` (checked from the header, before decoding), over `max_bytes`, missing,
    truncated, or not PNG/JPEG/WebP: ImageInputError naming `field`.
    """
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
    """Read one mask as upright float32 (H, W) in [0, 1], 1 (white) = repaint.

    Alpha composited over black (transparent = keep), then luminance; the same checks and
    errors as `read_image`.
    """
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
    # Beam is imported here, not at the top: the CLI imports this package for its flags, and
    # Beam logs on import, before the console is set up (jaxgen.logs).
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

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
        raise ImageInputError(field, ref, "has too many pixels to decode safely") from None
    except Exception:  # the bytes are in hand: no retry would read them differently
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
    from apache_beam.io.filesystems import FileSystems

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
    except Exception as e:  # any decoder failure on bytes in hand is the file's, not a retry's
        raise ImageInputError(field, ref, f"is damaged or truncated ({e})") from None


def _to_rgb(image: Image.Image, ref: str, field: str) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.clip(np.asarray(image, np.int64), 0, 65535)
        return (wide >> 8).astype(np.uint8)[..., None].repeat(3, axis=-1)
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
    except Exception:
        raise ImageInputError(
            field, ref, f"has pixel mode {image.mode}, which jaxgen cannot read"
        ) from None
