"""SDXL's invisible watermark: byte for byte what `invisible-watermark`'s encoder gives (as
diffusers' StableDiffusionXLWatermarker calls it), and its payload read back."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgen.engine.watermark import WATERMARK_BITS, embed_watermark, read_watermark


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Flat patches with noise: large and small DWT coefficients, as photos have."""
    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    base = np.kron(patches, np.ones((8, 8, 1), np.float32))[:height, :width]
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Grey with strong noise: each 4x4 block's largest value stands out."""
    rng = np.random.default_rng(seed)
    return np.clip(128 + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)


def package_bits(image: np.ndarray, imwatermark) -> tuple[int, ...]:
    decoder = imwatermark.WatermarkDecoder("bits", len(WATERMARK_BITS))
    return tuple(int(b) for b in decoder.decode(image.astype(np.float32)[..., ::-1].copy(),
                                                "dwtDct"))


@pytest.mark.parametrize("height,width", [(256, 256), (264, 320)])
def test_embed_matches_invisible_watermark_byte_for_byte(height, width):
    imwatermark = pytest.importorskip("imwatermark")
    encoder = imwatermark.WatermarkEncoder()
    encoder.set_watermark("bits", list(WATERMARK_BITS))
    image = picture(height, width)
    # diffusers: float RGB in 0..255, flipped to BGR for the encoder and back, then clamped
    # and rounded to uint8 by the pipeline's postprocessing.
    theirs = encoder.encode(image.astype(np.float32)[..., ::-1].copy(), "dwtDct")[..., ::-1]
    theirs = np.clip(np.round(theirs), 0, 255).astype(np.uint8)
    ours = embed_watermark(image)
    assert (ours != image).mean() > 0.1  # it did something
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("seed", [0, 1])
def test_payload_reads_back_from_a_textured_image(seed):
    marked = embed_watermark(texture(256, 384, seed))
    assert read_watermark(marked) == WATERMARK_BITS
    assert read_watermark(texture(256, 384, seed)) != WATERMARK_BITS


def test_reading_agrees_with_the_package_decoder_bit_for_bit():
    """dwtDct moves one value per block, so where a block's largest value is not distinct
    (smooth images) a bit can be misread: by the package's decoder just the same."""
    imwatermark = pytest.importorskip("imwatermark")
    for image in (texture(256, 256), picture(256, 320), picture(320, 256, seed=2)):
        marked = embed_watermark(image)
        assert read_watermark(marked) == package_bits(marked, imwatermark)


def test_images_narrower_than_256_are_left_alone():
    image = picture(512, 248)
    assert embed_watermark(image) is image
