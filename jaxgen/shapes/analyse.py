"""Read a scene back from pixels, and score it against a parsed prompt (GenEval-style).

Exact on rendered scenes and tolerant of mild noise: every pixel is first snapped to its nearest
palette colour, objects are the connected components of non-background pixels, and shapes are
classified by nearest prototype in a two-number geometry space measured on the renderer's own
masks, so the analyser and the renderer cannot drift apart.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from scipy import ndimage

from jaxgen.shapes.render import object_mask
from jaxgen.shapes.scene import (
    COLOURS,
    IMAGE_SIZE,
    PALETTE_ARRAY,
    SHAPES,
    SIZE_PIXELS,
    SIZES,
    Scene,
    SceneSpec,
    ShapeObject,
    cell_position,
    relation_holds,
)

# Components smaller than this (in 64x64 pixels) are noise; the smallest object has 60 pixels.
MIN_AREA = 16
# Bounding-box side halfway between the two sizes. The box side rather than the raw area is used
# because area depends on the shape (a large triangle has less area than a small square's 1.8x).
_SIZE_THRESHOLD = (SIZE_PIXELS["small"] + SIZE_PIXELS["large"]) / 2
_ATTRIBUTES = ("shape", "colour", "size", "position")


def snap_to_palette(image: np.ndarray) -> np.ndarray:
    """Index [H, W] of the nearest palette colour of every pixel of a uint8/float RGB image."""
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[-1] < 3:
        raise ValueError(f"expected an [H, W, 3] RGB image, got shape {pixels.shape}")
    pixels = pixels[..., :3].astype(np.float32)
    if np.issubdtype(np.asarray(image).dtype, np.floating) and pixels.max(initial=0.0) <= 1.0:
        pixels = pixels * 255.0  # float images in [0, 1]
    diff = pixels[:, :, None, :] - PALETTE_ARRAY.astype(np.float32)[None, None]
    return np.einsum("hwpc,hwpc->hwp", diff, diff).argmin(axis=-1)


def _shape_features(mask: np.ndarray) -> np.ndarray:
    """(fill ratio of the bounding box, fraction of the area in the box's top half)."""
    ys, xs = np.nonzero(mask)
    height = ys.max() - ys.min() + 1
    width = xs.max() - xs.min() + 1
    area = ys.size
    # Square ~1.0 / circle ~0.79 / triangle ~0.55 by fill; the apex-up triangle also carries only
    # ~0.28 of its area in the top half where the symmetric shapes carry 0.5.
    top = np.count_nonzero(ys < ys.min() + height / 2)
    return np.array([area / (height * width), top / area])


@lru_cache(maxsize=1)
def _prototypes() -> np.ndarray:
    """Mean features of each shape over the sizes, measured on rendered masks."""
    return np.stack(
        [
            np.mean([_shape_features(object_mask(shape, size, "center")) for size in SIZES], 0)
            for shape in SHAPES
        ]
    )


def analyse(image: np.ndarray, min_area: int = MIN_AREA) -> Scene:
    """Recover the scene drawn in an RGB image (exact on ``render`` output).

    Two objects are returned in the canonical order ("left of" / "above", chosen by the larger
    centroid offset); other counts come in reading order with no relation.
    """
    index = snap_to_palette(image)
    height, width = index.shape
    scale = IMAGE_SIZE / max(height, width)
    background = int(np.bincount(index.ravel(), minlength=len(COLOURS)).argmax())
    labels, count = ndimage.label(index != background)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    found: list[tuple[float, float, ShapeObject]] = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or areas[label] * scale**2 < min_area:
            continue
        mask = labels[box] == label
        colour = np.bincount(index[box][mask], minlength=len(COLOURS)).argmax()
        ys, xs = np.nonzero(mask)
        cy = (ys.mean() + box[0].start + 0.5) / height
        cx = (xs.mean() + box[1].start + 0.5) / width
        side = max(mask.shape) * scale
        features = _shape_features(mask)
        shape = SHAPES[int(np.linalg.norm(_prototypes() - features, axis=1).argmin())]
        row, col = min(int(cy * 3), 2), min(int(cx * 3), 2)
        obj = ShapeObject(
            shape=shape,
            colour=COLOURS[int(colour)],
            size="large" if side >= _SIZE_THRESHOLD else "small",
            position=cell_position(row, col),
        )
        found.append((cy, cx, obj))

    relation = None
    if len(found) == 2:
        (ya, xa, _), (yb, xb, _) = found
        if abs(xb - xa) >= abs(yb - ya):
            found.sort(key=lambda f: f[1])
            relation = "left of"
        else:
            found.sort(key=lambda f: f[0])
            relation = "above"
    else:
        found.sort(key=lambda f: (min(int(f[0] * 3), 2), f[1]))
    return Scene(COLOURS[background], tuple(f[2] for f in found), relation)


def score(spec: SceneSpec, found: Scene) -> dict[str, bool | None]:
    """Per-attribute correctness of ``found`` against ``spec``; None where the spec asks nothing.

    Spec objects are matched to found objects by the assignment with the most correct attributes
    (relation included). ``count`` asks for exactly as many objects as the spec names, and
    ``joint`` is true when every asked attribute, count included, is right.
    """
    k, n = len(spec.objects), len(found.objects)
    # Padding with None lets a spec object stay unmatched when too few objects were found.
    candidates = list(range(n)) + [None] * k
    best: tuple[int, list[dict[str, bool | None]], bool | None] | None = None
    # Sorted so that ties resolve deterministically, preferring spec order matched to found order.
    assignments = sorted(
        set(itertools.permutations(candidates, k)),
        key=lambda a: [n if j is None else j for j in a],
    )
    for assignment in assignments:
        per_object: list[dict[str, bool | None]] = []
        for want, j in zip(spec.objects, assignment, strict=True):
            got = None if j is None else found.objects[j]
            per_object.append(
                {
                    attr: None
                    if getattr(want, attr) is None
                    else got is not None and getattr(got, attr) == getattr(want, attr)
                    for attr in _ATTRIBUTES
                }
            )
        relation: bool | None = None
        if spec.relation is not None:
            a, b = assignment if k == 2 else (None, None)
            relation = (
                a is not None
                and b is not None
                and relation_holds(
                    spec.relation, found.objects[a].position, found.objects[b].position
                )
            )
        total = sum(v is True for m in per_object for v in m.values()) + (relation is True)
        if best is None or total > best[0]:
            best = (total, per_object, relation)
    assert best is not None
    _, per_object, relation = best

    result: dict[str, bool | None] = {}
    for attr in _ATTRIBUTES:
        asked = [m[attr] for m in per_object if m[attr] is not None]
        result[attr] = all(asked) if asked else None
    result["background"] = None if spec.background is None else found.background == spec.background
    result["relation"] = relation
    result["count"] = n == k
    result["joint"] = all(v for v in result.values() if v is not None)
    return result
