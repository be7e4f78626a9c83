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

SAMPLERS = ("ddim", "dpmpp_2m", "dpmpp_2m_karras", "euler", "euler_ancestral", "ddpm")

MAX_PROMPT_CHARS = 4000
MAX_STEPS = 1000
MAX_SIDE = 4096
MAX_IMAGES_PER_REQUEST = 64
MAX_SEED = 2**63 - 1


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
    share a compiled program when their jaxgen.engine.spec.SamplingSpec is equal."""

    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    guidance: float = 7.5
    steps: int = 25  # (shape: the loop length is static)
    height: int = 512  # (shape)
    width: int = 512  # (shape)
    sampler: str = "dpmpp_2m"  # (shape: a different program)
    num_images: int = 1
    id: str | None = None
    metadata: dict[str, Any] | None = None


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
    return r


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def derive_seed(job_seed: int, key: str) -> int:
    """A seed in [0, MAX_SEED] that depends only on the job seed and a stable row key.

    blake2b rather than Python's hash(): hash() is salted per process, and the seed
    must be the same on every worker and every rerun.
    """
    digest = hashlib.blake2b(f"{job_seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & MAX_SEED
