"""Per-image record, the AUTOMATIC1111-style `parameters` text, and image encoding.

The record is the JSON written next to each image (`KEY.json`), the row of the parquet
output and the line of imagefolder's metadata.jsonl: the same keys and types in all three
(`metadata` a JSON string). Its `seed` is the request's seed; with
num_images > 1 the images of one request share it and differ by `image_index` (how the
generator turns the pair into noise is the generator's business).

Image-to-image and inpainting records add the source image's reference and the sha256 of its
bytes (`init_image`, `init_image_sha256`), the mask's (`mask_image`, `mask_image_sha256`),
`strength` and the `resize` policy that fitted them; a text-to-image record has none of these
keys, so its bytes are what they were before the modes existed. Width and height are the
image's, as generated (an init image's own size when the row gave none). An SDXL row's
prompt_2, micro-conditioning pairs and aesthetic scores are there when the row gives them.

Image bytes are deterministic: no timestamps in the files (PIL writes no tIME chunk unless
asked), fixed encoder settings.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxgen.dataset.plan import PlannedRow
from jaxgen.requests import (
    AESTHETIC_SCORES,
    MICRO_CONDITIONING,
    SAMPLER_DISPLAY_NAMES,
    GenerationRequest,
)

if TYPE_CHECKING:
    from jaxgen.images import ImageInputs

IMAGE_EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg"}
_PIL_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}
_EXIF_IFD = 0x8769
_EXIF_USER_COMMENT = 0x9286


def jaxgen_version() -> str:
    try:
        from jaxgen import __version__

        return str(__version__)
    except ImportError:
        return "unknown"


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    key: str
    id: str  # the row's id, or its row key when the manifest gave none
    prompt: str
    negative_prompt: str
    seed: int
    image_index: int
    num_images: int
    steps: int
    guidance: float
    sampler: str
    width: int
    height: int
    model_name: str
    model_hash: str
    jaxgen_version: str
    metadata: dict[str, Any]
    # Image-to-image and inpainting only (None, and left out of to_json, for text-to-image).
    init_image: str | None = None
    init_image_sha256: str | None = None
    mask_image: str | None = None
    mask_image_sha256: str | None = None
    strength: float | None = None
    resize: str | None = None
    prompt_2: str | None = None  # SDXL's second prompt, when the row gives one
    # SDXL's micro-conditioning pairs (MICRO_CONDITIONING), each when the row gives it.
    original_size: list[int] | None = None
    crops_coords_top_left: list[int] | None = None
    target_size: list[int] | None = None
    negative_original_size: list[int] | None = None
    negative_crops_coords_top_left: list[int] | None = None
    negative_target_size: list[int] | None = None
    # An SDXL refiner's aesthetic scores, each when the row gives it.
    aesthetic_score: float | None = None
    negative_aesthetic_score: float | None = None
    watermark: str | None = None  # the invisible watermark the image carries, when on
    # A labelled dataset's only (JobConfig.labels): the class name and its index.
    label: str | None = None
    cls: int | None = None

    @classmethod
    def build(
        cls,
        row: PlannedRow,
        image_index: int,
        model_name: str,
        model_hash: str,
        *,
        generated: GenerationRequest | None = None,
        inputs: ImageInputs | None = None,
        resize: str | None = None,
        watermark: str | None = None,
    ) -> ImageRecord:
        """`generated`: the request as the generator ran it (sizes filled in); `inputs`: the
        init image and mask it read, and `resize` the policy that fitted them."""
        r = row.request
        size = generated or r
        assert r.seed is not None, "the plan fills every seed"
        image_fields: dict[str, Any] = {}
        if inputs is not None:
            image_fields = {**inputs.record_fields(), "strength": float(r.strength),
                            "resize": resize}
        return cls(
            key=row.image_keys[image_index],
            id=r.id if r.id is not None else row.key,
            prompt=r.prompt,
            negative_prompt=r.negative_prompt,
            seed=r.seed,
            image_index=image_index,
            num_images=r.num_images,
            steps=r.steps,
            guidance=float(r.guidance),
            sampler=r.sampler,
            width=size.width,
            height=size.height,
            model_name=model_name,
            model_hash=model_hash,
            jaxgen_version=jaxgen_version(),
            metadata=dict(r.metadata or {}),
            prompt_2=r.prompt_2,
            **{name: list(getattr(r, name)) for name in MICRO_CONDITIONING
               if getattr(r, name) is not None},
            **{name: float(getattr(r, name)) for name in AESTHETIC_SCORES
               if getattr(r, name) is not None},
            watermark=watermark,
            **image_fields,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as every output format stores it. `metadata` (free-form keys that differ
        between rows) is a JSON string in all of them, webdataset's KEY.json included: one
        column type that pyarrow and HF `datasets` read back the same way from every format
        (HF's webdataset loader nulls object keys that differ between rows)."""
        record = dataclasses.asdict(self)
        record["metadata"] = dumps_stable(self.metadata)
        for name in (*IMAGE_INPUT_KEYS, "prompt_2", "watermark", *MICRO_CONDITIONING,
                     *AESTHETIC_SCORES, *LABEL_KEYS):
            if record[name] is None:
                del record[name]
        return record

    def with_label(self, labels: tuple[str, ...]) -> ImageRecord:
        """The record of a labelled dataset: `label` from its metadata, `cls` its index in
        `labels`; ValueError naming the label when the row has none or an unknown one."""
        label = self.metadata.get("label")
        if label not in labels:
            shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
            raise ValueError(f"metadata label {label!r} is not one of the dataset's labels "
                             f"({shown})")
        return dataclasses.replace(self, label=label, cls=labels.index(label))

    def json_bytes(self) -> bytes:
        return dumps_stable(self.to_json()).encode()

    def parameters(self) -> str:
        """Generation parameters as AUTOMATIC1111 writes them into its PNGs."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        items = [
            f"Steps: {self.steps}",
            f"Sampler: {SAMPLER_DISPLAY_NAMES.get(self.sampler, self.sampler)}",
            f"CFG scale: {self.guidance:g}",
            f"Seed: {self.seed}",
            f"Size: {self.width}x{self.height}",
            f"Model hash: {self.model_hash}",
            f"Model: {self.model_name}",
        ]
        if self.strength is not None:
            items.append(f"Denoising strength: {self.strength:g}")
        for label, value in (("Init image", self.init_image),
                             ("Init image hash", self.init_image_sha256),
                             ("Mask image", self.mask_image),
                             ("Mask image hash", self.mask_image_sha256),
                             ("Resize mode", self.resize)):
            if value is not None:
                items.append(f"{label}: {_a1111_value(value)}")
        if self.num_images > 1:
            items.append(f"Image index: {self.image_index}")
        items.append(f"Version: jaxgen {self.jaxgen_version}")
        lines.append(", ".join(items))
        return "\n".join(lines)


# The record keys only image-to-image and inpainting records have.
IMAGE_INPUT_KEYS = ("init_image", "init_image_sha256", "mask_image", "mask_image_sha256",
                    "strength", "resize")


# The record keys only a labelled dataset's records have.
LABEL_KEYS = ("label", "cls")


def _a1111_value(value: str) -> str:
    """A value as A1111 writes one that holds its separators: quoted as JSON."""
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ',:"') else value


def dumps_stable(value: Any) -> str:
    """JSON with sorted keys and fixed separators: the same value gives the same bytes."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def encode_image(image: np.ndarray, image_format: str, quality: int, parameters: str) -> bytes:
    """Encode an RGB uint8 array; `parameters` goes into a PNG text chunk or EXIF comment."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image {image.dtype}{list(image.shape)}: the generator must return uint8 [H, W, 3]"
        )
    pil = Image.fromarray(image, "RGB")
    out = io.BytesIO()
    if image_format == "png":
        info = PngInfo()
        # tEXt when the text is Latin-1, else iTXt (what AUTOMATIC1111 does, via PIL).
        info.add_text("parameters", parameters)
        pil.save(out, "PNG", pnginfo=info, compress_level=6)
    else:
        # WebP/JPEG have no text chunk: AUTOMATIC1111 uses the EXIF UserComment.
        exif = Image.Exif()
        comment = b"UNICODE\x00" + parameters.encode("utf-16-be")
        exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = comment
        pil.save(out, _PIL_FORMATS[image_format], quality=quality, exif=exif.tobytes())
    return out.getvalue()


def runtime_versions() -> dict[str, str]:
    """Versions worth recording with a dataset; jax only where it is installed.

    Read from package metadata rather than by importing: importing jax initialises a
    backend, which a launcher or a dry run has no reason to do.
    """
    import platform
    from importlib import metadata

    versions = {"jaxgen": jaxgen_version(), "python": platform.python_version()}
    for package in ("jax", "apache-beam", "numpy", "pillow", "pyarrow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions
