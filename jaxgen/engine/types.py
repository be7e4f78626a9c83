"""Types the Generator hands to its callers (the dataset writers, the Beam transforms)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxgen.images import ImageInputs
from jaxgen.requests import GenerationRequest


@dataclass(frozen=True)
class GeneratedImage:
    request: GenerationRequest  # final: seed and size filled in (never None)
    index: int  # 0..request.num_images-1
    image: np.ndarray  # uint8 [height, width, 3]
    # The init image and mask as read and fitted (refs, sha256s): None for text-to-image.
    inputs: ImageInputs | None = None
    finite: bool = True  # False: the final latents held a NaN or inf (a broken model)
    watermark: str | None = None  # the invisible watermark it carries (engine.watermark)
