"""Types the Generator hands to its callers (the dataset writers, the Beam transforms)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from jaxgen.requests import GenerationRequest

if TYPE_CHECKING:
    from jaxgen.images import ImageInputs


@dataclass(frozen=True)
class GeneratedImage:
    request: GenerationRequest  # as generated: seed and size filled in (never None)
    index: int  # 0..request.num_images-1
    image: np.ndarray  # uint8 [height, width, 3]
    inputs: ImageInputs | None = None  # image-to-image / inpainting: what was read
