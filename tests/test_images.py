"""Init images and masks: the conversion rule, the resize policies, and every reason to reject."""

import hashlib
import struct
import zlib

import numpy as np
import pytest
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from jaxgen.images import (
    DEFAULT_RESIZE,
    ImageInputError,
    check_mask_has_image,
    check_mask_matches,
    check_strength,
    default_size,
    fit_to_size,
    load_image_inputs,
    read_image,
    read_mask,
    resolve_image_ref,
)
from jaxgen.requests import RequestError

BLUE, GREEN, RED, WHITE = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)


def save(image: Image.Image, path, **kwargs) -> str:
    image.save(path, **kwargs)
    return str(path)


def three_bands(width=90, height=30) -> np.ndarray:
    """Blue, green and red vertical thirds."""
    pixels = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate((BLUE, GREEN, RED)):
        pixels[:, i * width // 3 : (i + 1) * width // 3] = colour
    return pixels


def rejected(expected_field: str, call, *args, **kwargs) -> str:
    """Run a call that must reject `expected_field`; return the reason."""
    with pytest.raises(ImageInputError) as info:
        call(*args, **kwargs)
    assert info.value.field == expected_field
    assert isinstance(info.value, RequestError)
    return info.value.reason


# --- the conversion rule -------------------------------------------------------------------


def test_rgba_is_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (0, 0, 0, 128)])
    pixels = read_image(save(rgba, tmp_path / "a.png")).pixels
    assert pixels.shape == (1, 3, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[0, 0]) == WHITE
    assert tuple(pixels[0, 1]) == RED
    assert np.all(np.abs(pixels[0, 2].astype(int) - 127) <= 1)  # half black over white


def test_la_is_composited_over_white(tmp_path):
    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (0, 255)])
    pixels = read_image(save(la, tmp_path / "la.png")).pixels
    assert tuple(pixels[0, 0]) == WHITE
    assert tuple(pixels[0, 1]) == (0, 0, 0)


def test_palette_with_transparent_index_is_composited_over_white(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 255, 0, 0])
    p.putdata([0, 1])
    loaded = read_image(save(p, tmp_path / "p.png", transparency=0))
    assert loaded.original_mode == "P"
    assert tuple(loaded.pixels[0, 0]) == WHITE
    assert tuple(loaded.pixels[0, 1]) == RED


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta+yellow = red
    loaded = read_image(save(cmyk, tmp_path / "c.jpg", quality=95))
    assert loaded.original_mode == "CMYK"
    r, g, b = loaded.pixels[8, 8].astype(int)
    assert r > 240 and g < 15 and b < 15


@pytest.mark.parametrize(
    "value, expected", [(65535, 255), (32768, 128), (257, 1), (0, 0), (65280, 255), (255, 0)]
)
def test_16_bit_gray_keeps_its_top_byte(tmp_path, value, expected):
    image = Image.fromarray(np.full((2, 3), value, np.uint16))
    loaded = read_image(save(image, tmp_path / "g16.png"))
    assert loaded.original_mode.startswith("I")
    assert loaded.pixels.shape == (2, 3, 3)
    assert np.all(loaded.pixels == expected)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_file(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG written by hand, for what Pillow will not write: `idat` is the compressed rows."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def test_16_bit_colour_follows_the_gray_rule(tmp_path):
    samples = np.array([65280, 32768, 65535, 257, 0, 255], ">u2")
    rows = zlib.compress(b"\0" + samples.tobytes())  # one row, filter byte 0
    (tmp_path / "rgb16.png").write_bytes(png_file(2, 1, 16, 2, rows))
    pixels = read_image(str(tmp_path / "rgb16.png")).pixels
    assert pixels.reshape(-1).tolist() == [255, 128, 255, 1, 0, 0]


def test_exif_orientation_is_applied_first(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = RED  # left half red; orientation 6 shows it rotated 90 degrees clockwise
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    loaded = read_image(save(image, tmp_path / "o.jpg", exif=exif, quality=95))
    assert loaded.original_size == (20, 40)
    assert loaded.pixels.shape == (40, 20, 3)
    assert loaded.pixels[5, 10, 0] > 200 and loaded.pixels[35, 10, 0] < 50  # red is on top


def test_webp_is_read(tmp_path):
    loaded = read_image(save(Image.fromarray(three_bands()), tmp_path / "w.webp", lossless=True))
    np.testing.assert_array_equal(loaded.pixels, three_bands())


def test_sha256_is_of_the_file_bytes(tmp_path):
    path = save(Image.fromarray(three_bands()), tmp_path / "h.png")
    loaded = read_image(path)
    assert loaded.ref == path
    assert loaded.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_loaded_pixels_are_read_only(tmp_path):
    loaded = read_image(save(Image.fromarray(three_bands()), tmp_path / "r.png"))
    with pytest.raises(ValueError):
        loaded.pixels[0, 0, 0] = 1


# --- masks ---------------------------------------------------------------------------------


def test_mask_white_is_repaint_one(tmp_path):
    gray = np.zeros((8, 8), np.uint8)
    gray[2:6, 2:6] = 255
    loaded = read_mask(save(Image.fromarray(gray), tmp_path / "m.png"))
    assert loaded.mask.dtype == np.float32 and loaded.mask.shape == (8, 8)
    assert np.all(loaded.mask[2:6, 2:6] == 1.0)
    assert loaded.mask.sum() == 16.0


def test_rgb_mask_reads_by_luminance(tmp_path):
    loaded = read_mask(save(Image.new("RGB", (2, 2), (128, 128, 128)), tmp_path / "m.png"))
    assert np.allclose(loaded.mask, 128 / 255)


def test_mask_transparency_means_keep_even_under_white_colour(tmp_path):
    rgba = Image.new("RGBA", (2, 1))
    rgba.putdata([(255, 255, 255, 0), (255, 255, 255, 255)])  # an alpha-only mask
    loaded = read_mask(save(rgba, tmp_path / "alpha.png"))
    assert loaded.mask.tolist() == [[0.0, 1.0]]


def test_16_bit_mask_spans_zero_to_one(tmp_path):
    image = Image.fromarray(np.array([[0, 65535]], np.uint16))
    assert read_mask(save(image, tmp_path / "m16.png")).mask.tolist() == [[0.0, 1.0]]


# --- resizing ------------------------------------------------------------------------------


def test_default_policy_is_crop():
    assert DEFAULT_RESIZE == "crop"


def test_crop_keeps_the_centre():
    out = fit_to_size(three_bands(90, 30), 30, 30, "crop")
    assert out.shape == (30, 30, 3) and out.dtype == np.uint8
    assert np.all(out == GREEN)


def test_fit_pads_images_with_white():
    out = fit_to_size(three_bands(90, 30), 30, 30, "fit")  # scaled to 30x10, centred
    assert out.shape == (30, 30, 3)
    assert np.all(out[:10] == 255) and np.all(out[20:] == 255)
    assert tuple(out[15, 15]) == GREEN


def test_fit_pads_masks_with_keep():
    out = fit_to_size(np.ones((10, 30), np.float32), 30, 30, "fit")
    assert out.shape == (30, 30) and out.dtype == np.float32
    assert np.all(out[:10] == 0.0) and np.all(out[10:20] == 1.0) and np.all(out[20:] == 0.0)


def test_stretch_keeps_the_corners():
    out = fit_to_size(three_bands(90, 30), 60, 30, "stretch")
    assert out.shape == (60, 30, 3)
    assert tuple(out[0, 0]) == BLUE and tuple(out[-1, -1]) == RED


def test_mask_edge_resizes_smooth_without_ringing():
    step = np.zeros((1, 16), np.float32)
    step[:, 8:] = 1.0
    row = fit_to_size(step, 1, 128, "stretch")[0]
    assert np.all(np.diff(row) >= 0)  # monotone: no LANCZOS ripple
    assert np.any((row > 0.0) & (row < 1.0))  # soft: not NEAREST's hard step


def test_resized_mask_stays_in_zero_one():
    mask = np.zeros((64, 64), np.float32)
    mask[::2] = 1.0  # stripes make LANCZOS overshoot; BILINEAR must not
    out = fit_to_size(mask, 24, 40, "stretch")
    assert out.shape == (24, 40)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_unknown_policy_is_rejected():
    assert "crop, fit, stretch" in rejected("resize", fit_to_size, three_bands(), 8, 8, "zoom")


@pytest.mark.parametrize(
    "image_hw, expected",
    [
        ((512, 768), (512, 768)),  # already multiples
        ((516, 517), (512, 520)),  # nearest: 516 is a tie and rounds down, 517 rounds up
        ((524, 523), (520, 520)),  # every tie rounds down (not to the even multiple)
        ((3, 11), (8, 8)),  # never below one multiple
        ((1080, 1920), (1080, 1920)),
    ],
)
def test_default_size_rounds_to_nearest_multiple(image_hw, expected):
    assert default_size(image_hw, 8) == expected


# --- references ----------------------------------------------------------------------------


def test_relative_path_resolves_against_the_manifest_directory(tmp_path):
    manifest = str(tmp_path / "jobs" / "m.jsonl")
    assert resolve_image_ref("img/a.png", manifest) == str(tmp_path / "jobs" / "img" / "a.png")
    assert resolve_image_ref("../a.png", manifest) == str(tmp_path / "a.png")
    assert resolve_image_ref("img/a.png", "gs://b/jobs/m.jsonl") == "gs://b/jobs/img/a.png"


def test_absolute_paths_and_uris_are_unchanged():
    assert resolve_image_ref("/data/a.png", "gs://b/m.jsonl") == "/data/a.png"
    assert resolve_image_ref("s3://x/a.png", "/jobs/m.jsonl") == "s3://x/a.png"


def test_empty_reference_is_rejected():
    assert "non-empty" in rejected("init_image", resolve_image_ref, " ", "/jobs/m.jsonl")
    assert rejected("mask_image", resolve_image_ref, None, "/m.jsonl", field="mask_image")


# --- reasons to reject ---------------------------------------------------------------------


def test_missing_file_is_rejected(tmp_path):
    assert "no such file" in rejected("init_image", read_image, str(tmp_path / "nope.png"))


def test_directory_is_rejected(tmp_path):
    assert "directory" in rejected("mask_image", read_mask, str(tmp_path))


def test_unknown_filesystem_is_rejected():
    assert "cannot be read" in rejected("init_image", read_image, "nosuchfs://b/a.png")


def test_transient_storage_error_is_raised_for_a_retry(monkeypatch):
    def flaky(*args, **kwargs):
        raise RuntimeError("connection reset")

    monkeypatch.setattr(FileSystems, "open", flaky)
    monkeypatch.setattr(FileSystems, "exists", lambda path: True)
    with pytest.raises(RuntimeError, match="connection reset"):
        read_image("gs://b/a.png")


def test_text_file_is_not_an_image(tmp_path):
    (tmp_path / "a.png").write_text("hello")
    assert "not a PNG, JPEG or WebP" in rejected("init_image", read_image, str(tmp_path / "a.png"))


def test_other_formats_are_refused(tmp_path):
    path = save(Image.fromarray(three_bands()), tmp_path / "a.bmp")
    assert "not a PNG, JPEG or WebP" in rejected("init_image", read_image, path)


@pytest.mark.parametrize("name", ["t.png", "t.jpg"])
def test_truncated_file_is_rejected(tmp_path, name):
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = open(save(noisy, tmp_path / name), "rb").read()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    assert "truncated" in rejected("init_image", read_image, str(tmp_path / name))


def test_damaged_pixel_data_is_rejected(tmp_path):
    (tmp_path / "bad.png").write_bytes(png_file(4, 4, 8, 2, b"not zlib data"))
    assert "damaged" in rejected("init_image", read_image, str(tmp_path / "bad.png"))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds a few bytes of pixel data."""
    return png_file(width, height, 8, 2, zlib.compress(b"\0" * 64))


def test_decompression_bomb_is_rejected_from_the_header_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header_only(9000, 9000))  # 81 MP, no data at all
    reason = rejected("init_image", read_image, str(tmp_path / "bomb.png"))
    assert "9000x9000" in reason and "pixels" in reason


def test_huge_bomb_past_pillows_own_limit_is_rejected(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    assert "too many pixels" in rejected("mask_image", read_mask, str(tmp_path / "bomb.png"))


def test_pixel_limit_is_a_parameter(tmp_path):
    path = save(Image.fromarray(three_bands(90, 30)), tmp_path / "a.png")
    assert "more than 2000 pixels" in rejected("init_image", read_image, path, max_pixels=2000)
    assert read_image(path, max_pixels=2700).pixels.shape == (30, 90, 3)


def test_file_over_the_byte_limit_is_rejected(tmp_path):
    path = save(Image.fromarray(three_bands()), tmp_path / "a.png")
    assert "larger than 10 bytes" in rejected("init_image", read_image, path, max_bytes=10)


def test_mask_of_another_aspect_ratio_is_rejected(tmp_path):
    image = read_image(save(Image.new("RGB", (40, 20)), tmp_path / "i.png"))
    square = read_mask(save(Image.new("L", (30, 30)), tmp_path / "m.png"))
    assert "30x30" in rejected("mask_image", check_mask_matches, image, square)


def test_mask_at_another_scale_is_accepted(tmp_path):
    image = read_image(save(Image.new("RGB", (41, 20)), tmp_path / "i.png"))
    for size in [(41, 20), (20, 10), (82, 40)]:
        check_mask_matches(image, read_mask(save(Image.new("L", size), tmp_path / "m.png")))


def test_mask_without_image_is_rejected():
    assert "without an init_image" in rejected("mask_image", check_mask_has_image, None, "m.png")
    check_mask_has_image("i.png", "m.png")
    check_mask_has_image("i.png", None)


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.5, float("nan"), True, "0.5", None])
def test_strength_out_of_range_is_rejected(value):
    assert "(0, 1]" in rejected("strength", check_strength, value)


@pytest.mark.parametrize("value", [1, 1.0, 0.3, 1e-6])
def test_strength_in_range_is_accepted(value):
    assert check_strength(value) == float(value)


def test_error_message_names_field_value_and_reason():
    with pytest.raises(ValueError, match=r"^strength 2: must be in \(0, 1\]"):
        check_strength(2)


# --- one request's inputs ------------------------------------------------------------------


def test_inputs_default_to_the_image_size_rounded(tmp_path):
    path = save(Image.fromarray(three_bands(41, 20)), tmp_path / "i.png")
    inputs = load_image_inputs(path, size_multiple=8)
    assert inputs.image.shape == (16, 40, 3) and inputs.mask is None
    assert inputs.record_fields() == {
        "init_image": path,
        "init_image_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
    }


def test_mask_is_fitted_to_its_image_frame(tmp_path):
    image = save(Image.fromarray(three_bands(90, 30)), tmp_path / "i.png")
    gray = np.zeros((15, 45), np.uint8)
    gray[:, 30:] = 255  # repaint the red third, drawn at half scale
    mask = save(Image.fromarray(gray), tmp_path / "m.png")
    inputs = load_image_inputs(image, mask, size=(32, 48), resize="stretch")
    assert inputs.image.shape == (32, 48, 3) and inputs.mask.shape == (32, 48)
    assert np.all(inputs.mask[:, 36:] == 1.0) and np.all(inputs.mask[:, :28] == 0.0)
    assert np.all(inputs.image[:, 36:] == RED)
    assert set(inputs.record_fields()) == {
        "init_image", "init_image_sha256", "mask_image", "mask_image_sha256"
    }


def test_inputs_name_the_field_at_fault(tmp_path):
    image = save(Image.fromarray(three_bands(90, 30)), tmp_path / "i.png")
    square = save(Image.new("L", (30, 30)), tmp_path / "m.png")
    missing = str(tmp_path / "nope.png")
    assert "30x30" in rejected("mask_image", load_image_inputs, image, square)
    assert "no such file" in rejected("mask_image", load_image_inputs, image, missing)
    assert "no such file" in rejected("init_image", load_image_inputs, missing, image)
