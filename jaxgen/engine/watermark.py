"""SDXL's invisible watermark, as diffusers' StableDiffusionXLWatermarker applies it.

diffusers encodes Stability AI's 48-bit payload with `invisible-watermark`'s "dwtDct" method
(imwatermark.maxDct.EmbedMaxDct, scales (0, 36, 36)): the image to YUV (OpenCV's float
coefficients), a Haar DWT of the U channel, and in each 4x4 block of its approximation the
largest-magnitude coefficient but the first moved to (|c| // 36 + 0.25 + 0.5 * bit) * 36, one
payload bit per block in turn; then the inverse DWT (with the horizontal and vertical details
swapped, as imwatermark does) and back to RGB. Here in numpy, each multiply-add fused like
OpenCV's float color conversion, so the output matches the package's encoder byte for byte
(tests/test_watermark.py). diffusers leaves images narrower than 256 px alone; so does this.
"""

from __future__ import annotations

import numpy as np

SDXL_WATERMARK = "sdxl-dwtdct"  # what a record says when its image carries the watermark
# Stability AI's payload (generative-models, streamlit_helpers.py), as diffusers copies it.
WATERMARK_BITS = tuple(int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:])
MIN_WIDTH = 256  # diffusers: "can't encode images that are smaller than 256"
_SCALE = 36.0  # EmbedMaxDct's scale for the U channel
_BLOCK = 4
_HAAR = np.float32(0.7071067811865476)
_F = np.float32


def _fma(a: np.ndarray, b: float, c: np.ndarray) -> np.ndarray:
    """float32 a * b + c rounded once, as OpenCV's SIMD (the product is exact in float64)."""
    return (a.astype(np.float64) * float(_F(b)) + c.astype(np.float64)).astype(np.float32)


def _to_yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _fma(b, 0.114, _fma(g, 0.587, r * _F(0.299)))
    return y, _fma(b - y, 0.492, np.full_like(y, 0.5)), _fma(r - y, 0.877, np.full_like(y, 0.5))


def _to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u, v = u - _F(0.5), v - _F(0.5)
    return np.stack([_fma(v, 1.14, y), _fma(v, -0.581, _fma(u, -0.395, y)),
                     _fma(u, 2.032, y)], axis=-1)


def _haar(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """pywt.dwt2(x, 'haar') in float32: (approximation, horizontal, vertical, diagonal)."""
    lo, hi = x[0::2] * _HAAR + x[1::2] * _HAAR, x[0::2] * _HAAR - x[1::2] * _HAAR

    def pair(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return a[:, 0::2] * _HAAR + a[:, 1::2] * _HAAR, a[:, 0::2] * _HAAR - a[:, 1::2] * _HAAR

    (aa, ad), (da, dd) = pair(lo), pair(hi)
    return aa, da, ad, dd


def _inverse_haar(aa: np.ndarray, da: np.ndarray, ad: np.ndarray,
                  dd: np.ndarray) -> np.ndarray:
    """pywt.idwt2((aa, (da, ad, dd)), 'haar') in float32."""
    def unpair(a: np.ndarray, d: np.ndarray, axis: int) -> np.ndarray:
        out = np.empty(tuple(n * 2 if i == axis else n for i, n in enumerate(a.shape)),
                       np.float32)
        even, odd = (slice(0, None, 2), slice(1, None, 2))
        index = (lambda s: (s,)) if axis == 0 else (lambda s: (slice(None), s))
        out[index(even)] = a * _HAAR + d * _HAAR
        out[index(odd)] = a * _HAAR - d * _HAAR
        return out

    return unpair(unpair(aa, ad, 1), unpair(da, dd, 1), 0)


def _blocks(frame: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The frame's whole 4x4 blocks, row by row, as [n, 16]."""
    rows, cols = frame.shape[0] // _BLOCK, frame.shape[1] // _BLOCK
    part = frame[:rows * _BLOCK, :cols * _BLOCK]
    return (part.reshape(rows, _BLOCK, cols, _BLOCK).transpose(0, 2, 1, 3)
            .reshape(rows * cols, _BLOCK * _BLOCK), rows, cols)


def _largest(blocks: np.ndarray) -> np.ndarray:
    """Each block's index of its largest-magnitude coefficient but the first."""
    return np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1


def _u_frame(rgb: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...], int, int]:
    height, width = (rgb.shape[0] // 4) * 4, (rgb.shape[1] // 4) * 4
    yuv = _to_yuv(rgb.astype(np.float32))
    return yuv, _haar(yuv[1][:height, :width]), height, width


def applies(height: int, width: int) -> bool:
    """Whether an image this size gets the watermark (diffusers: width >= 256; imwatermark
    refuses fewer than 256 x 256 pixels)."""
    return width >= MIN_WIDTH and height * width >= MIN_WIDTH * MIN_WIDTH


def embed_watermark(image: np.ndarray, bits: tuple[int, ...] = WATERMARK_BITS) -> np.ndarray:
    """uint8 RGB [H, W, 3] with the payload embedded; an image too small returned unchanged."""
    if not applies(*image.shape[:2]):
        return image
    (y, u, v), (aa, da, ad, dd), height, width = _u_frame(image)
    blocks, rows, cols = _blocks(aa)
    n = np.arange(len(blocks))
    bit = np.asarray(bits, np.float32)[n % len(bits)]
    at = _largest(blocks)
    value = blocks[n, at]
    moved = (np.abs(value) // _SCALE + 0.25 + 0.5 * bit) * _SCALE
    blocks[n, at] = np.where(value >= 0, moved, -1.0 * moved)
    aa[:rows * _BLOCK, :cols * _BLOCK] = blocks.reshape(rows, cols, _BLOCK, _BLOCK) \
        .transpose(0, 2, 1, 3).reshape(rows * _BLOCK, cols * _BLOCK)
    u = u.copy()
    u[:height, :width] = _inverse_haar(aa, ad, da, dd)  # imwatermark swaps the details
    return np.clip(np.round(_to_rgb(y, u, v)), 0, 255).astype(np.uint8)


def read_watermark(image: np.ndarray, length: int = len(WATERMARK_BITS)) -> tuple[int, ...]:
    """The `length` bits embed_watermark wrote, by imwatermark's decoder: each block's moved
    coefficient's remainder past half the scale is a 1; each bit the mean over its blocks."""
    if not applies(*image.shape[:2]):
        raise ValueError(f"image {image.shape[1]}x{image.shape[0]}: too small to carry the "
                         f"watermark (width >= {MIN_WIDTH}, {MIN_WIDTH}x{MIN_WIDTH} pixels)")
    _, (aa, *_), _, _ = _u_frame(image)
    blocks, _, _ = _blocks(aa)
    n = np.arange(len(blocks))
    ones = np.abs(blocks[n, _largest(blocks)]) % _SCALE > 0.5 * _SCALE
    scores = np.bincount(n % length, weights=ones, minlength=length) / \
        np.bincount(n % length, minlength=length)
    return tuple(int(s * 255 > 127) for s in scores)
