"""Built-in filters for `jaxgen augment` (recipe key `filter: module:function`).

`shapes_label` is the default model's: the shapes analyser reads the image back, and the image
is kept only when what it reads is the asked label. A label that names a shape is compared with
the objects' shapes, a colour with their colours (the classes a shapes dataset is labelled by).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxgen.dataset.filter import Verdict
from jaxgen.shapes.analyse import analyse
from jaxgen.shapes.scene import COLOURS, SHAPES


def shapes_label(image: np.ndarray, record: dict[str, Any]) -> Verdict:
    """Keep an image whose read-back objects all show its label (score: the share that do)."""
    label = record.get("label")
    if label in SHAPES:
        attribute = "shape"
    elif label in COLOURS:
        attribute = "colour"
    else:
        return Verdict(False, f"label {label!r} is neither a shape nor a colour of the shapes "
                       "domain", None)
    found = [getattr(o, attribute) for o in analyse(image).objects]
    if not found:
        return Verdict(False, "no object read back", 0.0)
    share = sum(f == label for f in found) / len(found)
    if share < 1.0:
        return Verdict(False, f"read back {attribute} {', '.join(found)}, asked {label}", share)
    return Verdict(True, "", share)
