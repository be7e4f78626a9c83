"""The generation request: one row of a manifest, one call of the Generator.

The Generator, the Beam pipeline, the CLI and the Python API all speak in
`GenerationRequest`s, and all validate them with `validate_request`, so a bad
value is reported the same way wherever it enters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any

# Every sampler, with the name AUTOMATIC1111 writes for it: records' PNG `parameters` text uses
# it, so tools that parse A1111's text (image browsers, civitai-style uploaders) read ours.
SAMPLER_DISPLAY_NAMES = {
    "ddim": "DDIM",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "ddpm": "DDPM",
}
SAMPLERS = tuple(SAMPLER_DISPLAY_NAMES)

MAX_PROMPT_CHARS = 4000
MAX_STEPS = 1000
MAX_SIDE = 4096
MAX_IMAGES_PER_REQUEST = 64
MAX_SEED = 2**63 - 1
# SDXL micro-conditioning sizes describe the training image, which may be larger than any output.
MAX_CONDITIONING_SIDE = 2**16

# SDXL's micro-conditioning row fields, as diffusers' StableDiffusionXLPipeline takes them:
# [height, width] sizes and a [top, left] crop, each negative_* for the negative branch.
MICRO_CONDITIONING = ("original_size", "crops_coords_top_left", "target_size",
                      "negative_original_size", "negative_crops_coords_top_left",
                      "negative_target_size")
# An SDXL refiner's aesthetic-score conditioning, as diffusers' Img2Img pipeline takes it.
AESTHETIC_SCORES = ("aesthetic_score", "negative_aesthetic_score")


class ConfigError(ValueError):
    """A setting is invalid: a job setting, a runner profile, or a model config.json key jaxgen
    does not implement. The message names the setting, its value and what is valid."""


class RequestError(ValueError):
    """A request field holds a value that cannot be generated."""

    def __init__(self, field: str, value: Any, reason: str):
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field} {shown}: {reason}")


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """What to generate. Fields that change array shapes are marked (shape); requests
    share a compiled program when their jaxgen.engine.grouping.SamplingSpec is equal."""

    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    guidance: float = 7.5
    steps: int = 25  # (shape: the loop length is static)
    # (shape) None: the init image's own size, rounded to the model's size multiple
    height: int | None = 512
    width: int | None = 512  # (shape) as height
    sampler: str = "dpmpp_2m"  # (shape: a different program)
    num_images: int = 1
    id: str | None = None
    metadata: dict[str, Any] | None = None
    # Image-to-image and inpainting: a path or URI on any Beam filesystem (a manifest's
    # relative paths are resolved against its directory when the row is parsed).
    init_image: str | None = None
    strength: float = 0.8  # how much of the init image's schedule is repainted, as diffusers
    mask_image: str | None = None  # white = repaint, as diffusers
    # SDXL: the second text encoder's prompt; None: the prompt, as diffusers' prompt_2.
    prompt_2: str | None = None
    # SDXL micro-conditioning (MICRO_CONDITIONING), as diffusers: None gives original and
    # target size (height, width) and crop (0, 0); each negative_* defaults to its positive.
    original_size: tuple[int, int] | None = None
    crops_coords_top_left: tuple[int, int] | None = None
    target_size: tuple[int, int] | None = None
    negative_original_size: tuple[int, int] | None = None
    negative_crops_coords_top_left: tuple[int, int] | None = None
    negative_target_size: tuple[int, int] | None = None
    # SDXL refiner (a model with requires_aesthetics_score): None gives diffusers' 6.0 / 2.5.
    aesthetic_score: float | None = None
    negative_aesthetic_score: float | None = None

    def __post_init__(self) -> None:
        for name in MICRO_CONDITIONING:  # a JSON list and a tuple are the same pair
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def mode(self) -> str:
        """text-to-image, image-to-image or inpainting: it follows from the fields given."""
        if self.init_image is None:
            return "text-to-image"
        return "image-to-image" if self.mask_image is None else "inpainting"


def validate_request(
    request: GenerationRequest,
    *,
    size_multiple: int = 8,
    prompt_required: bool = True,
) -> GenerationRequest:
    """Return the request unchanged, or raise RequestError naming the bad field."""
    r = request
    if not isinstance(r.prompt, str):
        raise RequestError("prompt", r.prompt, "must be a string")
    if prompt_required and not r.prompt.strip():
        raise RequestError("prompt", r.prompt, "is empty; this model needs a prompt")
    if len(r.prompt) > MAX_PROMPT_CHARS:
        raise RequestError("prompt", r.prompt, f"is longer than {MAX_PROMPT_CHARS} characters")
    if r.prompt_2 is not None and not isinstance(r.prompt_2, str):
        raise RequestError("prompt_2", r.prompt_2, "must be a string")
    if r.prompt_2 is not None and len(r.prompt_2) > MAX_PROMPT_CHARS:
        raise RequestError("prompt_2", r.prompt_2, f"is longer than {MAX_PROMPT_CHARS} characters")
    if not isinstance(r.negative_prompt, str):
        raise RequestError("negative_prompt", r.negative_prompt, "must be a string")
    if len(r.negative_prompt) > MAX_PROMPT_CHARS:
        raise RequestError(
            "negative_prompt", r.negative_prompt, f"is longer than {MAX_PROMPT_CHARS} characters"
        )
    if r.seed is not None and (
        not _is_int(r.seed) or not 0 <= r.seed <= MAX_SEED
    ):
        raise RequestError("seed", r.seed, f"must be an integer in [0, {MAX_SEED}]")
    if not _is_number(r.guidance) or not math.isfinite(r.guidance):
        raise RequestError("guidance", r.guidance, "must be a finite number")
    if not 0.0 <= r.guidance <= 100.0:
        raise RequestError("guidance", r.guidance, "must be in [0, 100]")
    if not _is_int(r.steps) or not 1 <= r.steps <= MAX_STEPS:
        raise RequestError("steps", r.steps, f"must be an integer in [1, {MAX_STEPS}]")
    for name in ("height", "width"):
        side = getattr(r, name)
        if side is None and r.init_image is not None:
            continue  # the init image's own size, known once it is read
        if not _is_int(side) or not size_multiple <= side <= MAX_SIDE:
            raise RequestError(name, side, f"must be an integer in [{size_multiple}, {MAX_SIDE}]")
        if side % size_multiple:
            raise RequestError(name, side, f"is not a multiple of {size_multiple}")
    if r.sampler not in SAMPLERS:
        raise RequestError("sampler", r.sampler, f"is not one of {', '.join(SAMPLERS)}")
    if not _is_int(r.num_images) or not 1 <= r.num_images <= MAX_IMAGES_PER_REQUEST:
        raise RequestError(
            "num_images", r.num_images, f"must be an integer in [1, {MAX_IMAGES_PER_REQUEST}]"
        )
    if r.id is not None and (not isinstance(r.id, str) or not r.id):
        raise RequestError("id", r.id, "must be a non-empty string")
    if r.metadata is not None and not isinstance(r.metadata, dict):
        raise RequestError("metadata", r.metadata, "must be a JSON object")
    for name in ("init_image", "mask_image"):
        ref = getattr(r, name)
        if ref is not None and (not isinstance(ref, str) or not ref.strip()):
            raise RequestError(name, ref, "must be a non-empty path or URI")
    for name in MICRO_CONDITIONING:
        _check_pair(name, getattr(r, name))
    for name in AESTHETIC_SCORES:
        score = getattr(r, name)
        if score is not None and (not _is_number(score) or not math.isfinite(score)):
            raise RequestError(name, score, "must be a finite number")
    if r.mask_image is not None and r.init_image is None:
        raise RequestError("mask_image", r.mask_image, "is given without an init_image to repaint")
    if not _is_number(r.strength) or not 0.0 < r.strength <= 1.0:
        raise RequestError("strength", r.strength, "must be a number in (0, 1]: 0 would keep the "
                           "image unchanged, 1 repaints it from pure noise")
    return r


def _check_pair(name: str, value: Any) -> None:
    if value is None:
        return
    low = 0 if "crops" in name else 1
    what = "[top, left]" if "crops" in name else "[height, width]"
    if not isinstance(value, tuple | list) or len(value) != 2 or \
            not all(_is_int(v) and low <= v <= MAX_CONDITIONING_SIDE for v in value):
        raise RequestError(name, value, f"must be a pair {what} of integers in "
                           f"[{low}, {MAX_CONDITIONING_SIDE}]")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


# One row field as it is written outside Python: a CLI flag, a Beam option, a job YAML's
# `defaults`, a manifest cell. Its default is GenerationRequest's.
@dataclasses.dataclass(frozen=True)
class RequestField:
    name: str
    type: type  # what a flag or a CSV cell is parsed to
    help: str
    defaultable: bool  # a job may set it for rows that leave it out (not the row's identity)
    aliases: tuple[str, ...] = ()  # other names a manifest or job YAML may use (diffusers')

    @property
    def default(self) -> Any:
        return GenerationRequest.__dataclass_fields__[self.name].default


REQUEST_FIELDS = (
    RequestField("prompt", str, "what to draw", defaultable=False),
    RequestField("negative_prompt", str, "what to steer away from", defaultable=True),
    RequestField("seed", int, "noise seed; left out, derived from the job seed (stable_seed)",
                 defaultable=False),
    RequestField("guidance", float, "classifier-free guidance scale", defaultable=True,
                 aliases=("guidance_scale",)),
    RequestField("steps", int, "denoising steps", defaultable=True,
                 aliases=("num_inference_steps",)),
    RequestField("height", int, "image height in pixels", defaultable=True),
    RequestField("width", int, "image width in pixels", defaultable=True),
    RequestField("sampler", str, " | ".join(SAMPLERS), defaultable=True),
    RequestField("num_images", int, "images per row, each with its own noise",
                 defaultable=True, aliases=("num_images_per_prompt",)),
    RequestField("id", str, "the row's stable name (an integer is kept as its decimal string)",
                 defaultable=False),
    RequestField("metadata", dict, "a JSON object carried into the row's records",
                 defaultable=False),
    RequestField("init_image", str, "image-to-image: the image to start from (path or URI)",
                 defaultable=False),
    RequestField("strength", float, "image-to-image: how much to repaint, in (0, 1]",
                 defaultable=True),
    RequestField("mask_image", str, "inpainting: white = repaint (path or URI)",
                 defaultable=False),
    RequestField("prompt_2", str, "SDXL: the second text encoder's prompt (default: prompt)",
                 defaultable=False),
    *(RequestField(name, tuple, f"SDXL micro-conditioning: {help}", defaultable=False)
      for name, help in zip(MICRO_CONDITIONING, (
          "[height, width] of the image the model is told it was trained from (default: "
          "height, width)",
          "[top, left] of the crop the model is told was taken (default: [0, 0])",
          "[height, width] the model is told to aim for (default: height, width)",
          "original_size of the negative branch (default: original_size)",
          "crops_coords_top_left of the negative branch (default: crops_coords_top_left)",
          "target_size of the negative branch (default: target_size)"), strict=True)),
    RequestField("aesthetic_score", float, "SDXL refiner: the aesthetic score to aim for "
                 "(default: 6.0)", defaultable=False),
    RequestField("negative_aesthetic_score", float, "SDXL refiner: the negative branch's "
                 "aesthetic score (default: 2.5)", defaultable=False),
)
# Row fields whose default the job may set: prompt, seed and id always come from the row.
DEFAULTABLE_FIELDS = tuple(f.name for f in REQUEST_FIELDS if f.defaultable)
# diffusers' argument names, read as jaxgen's: {"num_inference_steps": "steps", ...}.
FIELD_ALIASES = {alias: f.name for f in REQUEST_FIELDS for alias in f.aliases}


def stable_seed(job_seed: int, row_id: str | None, place: int | GenerationRequest) -> int:
    """The seed of a row or request that gives none: the same on every worker and every rerun.

    Derived from the job seed and, first that applies: the row's id (so an id keeps its seed
    when the manifest is reordered or extended); else `place`, which is the row's global index
    in the manifest (the Beam plan) or, for a request given to the Generator directly, the
    request itself (everything that defines its image).
    blake2b rather than Python's hash(): hash() is salted per process.
    """
    if row_id is not None:
        key = f"id:{row_id}"
    elif isinstance(place, GenerationRequest):
        r = place
        key = f"request:{r.prompt}\x1f{r.negative_prompt}\x1f{r.guidance}\x1f{r.steps}\x1f" \
              f"{r.height}x{r.width}\x1f{r.sampler}"
        if r.init_image is not None:  # text-to-image keys stay as they were
            key += f"\x1f{r.init_image}\x1f{r.strength}\x1f{r.mask_image}"
        if r.prompt_2 is not None:  # and so do those without a second prompt
            key += f"\x1fprompt_2:{r.prompt_2}"
        for name in (*MICRO_CONDITIONING, *AESTHETIC_SCORES):  # and those without these
            value = getattr(r, name)
            if value is not None:
                key += f"\x1f{name}:{list(value) if name in MICRO_CONDITIONING else value}"
    else:
        key = f"row:{place}"
    digest = hashlib.blake2b(f"{job_seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & MAX_SEED
