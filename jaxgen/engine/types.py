"""Types the Generator hands to its callers (the dataset writers, the Beam transforms)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxgen.requests import GenerationRequest


@dataclass(frozen=True)
class GeneratedImage:
    request: GenerationRequest  # with its seed already filled in (never None)
    index: int  # 0..request.num_images-1
    image: np.ndarray  # uint8 [height, width, 3]
