"""Read a scene back from pixels, and score it against a parsed prompt (GenEval-style).

Exact on rendered scenes and tolerant of blur and soft edges: every pixel is first snapped to its
nearest palette colour, objects are the connected components of non-background pixels, and each
object's shape is the one whose template, drawn by the renderer's own `shape_mask` with the
object's area and centroid, overlaps it best, so the analyser and the renderer cannot drift
apart.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import ndimage

from jaxgen.shapes.render import shape_mask
from jaxgen.shapes.scene import (
    COLOURS,
    IMAGE_SIZE,
    PALETTE_ARRAY,
    SHAPES,
    SIZE_PIXELS,
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


# Each shape's bounding-box side for a given area, and how far below the box centre its
# centroid lies (in sides): the apex-up triangle's centroid is 2/3 of the way down.
_SIDE_FOR_AREA = {"square": 1.0, "circle": math.sqrt(4 / math.pi), "triangle": math.sqrt(2.0)}
_CENTROID_BELOW_CENTRE = {"square": 0.0, "circle": 0.0, "triangle": 1 / 6}


def shape_fits(mask: np.ndarray) -> dict[str, float]:
    """IoU of an object's mask with each shape of the same area drawn at the same centroid.

    Why templates rather than bounding-box ratios: a generated or VAE-decoded square has soft,
    slightly wavy edges, and one stray pixel row grows its bounding box enough to read it as a
    circle; area and centroid barely move. On crisp renders the right shape fits exactly (IoU 1).
    """
    ys, xs = np.nonzero(mask)
    area, cy, cx = ys.size, ys.mean() + 0.5, xs.mean() + 0.5
    # A margin so that no template is clipped by the crop (the triangle's side is 1.41 sqrt(A)).
    margin = math.ceil(math.sqrt(2.0 * area)) + 1
    padded = np.pad(mask, margin)
    fits = {}
    for shape in SHAPES:
        side = _SIDE_FOR_AREA[shape] * math.sqrt(area)
        template = shape_mask(shape, side, cy + margin - _CENTROID_BELOW_CENTRE[shape] * side,
                              cx + margin, *padded.shape)
        fits[shape] = np.count_nonzero(padded & template) / np.count_nonzero(padded | template)
    return fits


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
        fits = shape_fits(mask)
        shape = max(fits, key=fits.get)
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


def match_objects(spec: SceneSpec, found: Scene) -> tuple[int | None, ...]:
    """Which found object each spec object is (None: unmatched), as ``score`` matches them.

    The assignment with the most correct attributes (relation included); ties go to the one
    that pairs spec order with found order.
    """
    k, n = len(spec.objects), len(found.objects)
    # Padding with None lets a spec object stay unmatched when too few objects were found.
    candidates = list(range(n)) + [None] * k
    best: tuple[int, tuple[int | None, ...]] | None = None
    # Sorted so that ties resolve deterministically, preferring spec order matched to found order.
    assignments = sorted(
        set(itertools.permutations(candidates, k)),
        key=lambda a: [n if j is None else j for j in a],
    )
    for assignment in assignments:
        per_object, relation = _judge(spec, found, assignment)
        total = sum(v is True for m in per_object for v in m.values()) + (relation is True)
        if best is None or total > best[0]:
            best = (total, assignment)
    assert best is not None
    return best[1]


def _judge(
    spec: SceneSpec, found: Scene, assignment: tuple[int | None, ...]
) -> tuple[list[dict[str, bool | None]], bool | None]:
    """Per spec object, each attribute right (None: not asked); and the relation."""
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
        a, b = assignment if len(spec.objects) == 2 else (None, None)
        relation = (
            a is not None
            and b is not None
            and relation_holds(spec.relation, found.objects[a].position, found.objects[b].position)
        )
    return per_object, relation


def score(spec: SceneSpec, found: Scene) -> dict[str, bool | None]:
    """Per-attribute correctness of ``found`` against ``spec``; None where the spec asks nothing.

    Spec objects are matched to found objects by ``match_objects``. ``count`` asks for exactly
    as many objects as the spec names (None for a spec with no objects: the empty prompt leaves
    the count free), and ``joint`` is true when every asked attribute, count included, is right.
    """
    per_object, relation = _judge(spec, found, match_objects(spec, found))
    result: dict[str, bool | None] = {}
    for attr in _ATTRIBUTES:
        asked = [m[attr] for m in per_object if m[attr] is not None]
        result[attr] = all(asked) if asked else None
    result["background"] = None if spec.background is None else found.background == spec.background
    result["relation"] = relation
    result["count"] = len(found.objects) == len(spec.objects) if spec.objects else None
    result["joint"] = all(v for v in result.values() if v is not None)
    return result
