"""Which requests share one compiled program: `SamplingSpec.of(request)`, the one rule.

The Generator batches by it and a shard orders its rows by it. No JAX here, so the dataset
planner can use it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jaxgen.requests import GenerationRequest


@dataclasses.dataclass(frozen=True, order=True)
class SamplingSpec:
    """The shape-changing choices: requests with equal specs share one compiled program.

    Ordered field by field, so sorting by it groups a shard's rows by program.
    """

    height: int
    width: int
    steps: int  # the loop length is static
    sampler: str  # a different step function
    # text-to-image, image-to-image or inpainting: which inputs the program takes (strength
    # is not here: a start step per item is an input, so it never recompiles).
    mode: str = "text-to-image"
    # Classifier-free guidance runs the UNet on a doubled batch; at scale 1, or when both
    # branches have the same text (an empty prompt: the unconditional branch), it reduces to
    # the conditional prediction alone, one pass: a program of half the UNet work.
    guided: bool = True

    @classmethod
    def of(cls, request: GenerationRequest) -> SamplingSpec:
        same_text = request.prompt == request.negative_prompt and \
            request.prompt_2 in (None, request.prompt) and all(  # SDXL's second prompt too
                getattr(request, f"negative_{name}") in (None, getattr(request, name))
                for name in ("original_size", "crops_coords_top_left", "target_size"))
        guided = request.guidance != 1 and not same_text
        return cls(request.height, request.width, request.steps, request.sampler, request.mode,
                   guided)
