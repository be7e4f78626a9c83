"""Pure-numpy renderer: a scene becomes a crisp 64x64 uint8 RGB image.

Every (shape, size, position) mask is computed once and cached, so rendering a scene is a
background fill plus one boolean-index assignment per object (~10 us per scene).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from jaxgen.shapes.scene import (
    CELL_CENTRES,
    IMAGE_SIZE,
    PALETTE,
    SIZE_PIXELS,
    Scene,
    position_cell,
)


def shape_mask(shape: str, side: float, cy: float, cx: float,
               height: int = IMAGE_SIZE, width: int = IMAGE_SIZE) -> np.ndarray:
    """Boolean [height, width] mask of a shape whose bounding box, `side` wide, centres on (cy, cx).

    The one place the shapes' geometry lives: the renderer draws with it and the analyser fits
    it to what it finds, so the two cannot drift apart.
    """
    # Pixel centres relative to the object's centre; sides are even, so offsets are +-0.5, +-1.5..
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    top, left = cy - side / 2, cx - side / 2
    dy, dx = ys - cy, xs - cx
    inside_box = (ys > top) & (ys < top + side) & (xs > left) & (xs < left + side)
    half = side / 2
    if shape == "square":
        return inside_box
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "triangle":
        # Apex up. The half-width is measured at each row's lower pixel edge so the top row still
        # holds two pixels: an empty apex row would shrink the bounding box and blur the sizes.
        depth = (ys + 0.5 - top) / side
        return inside_box & (np.abs(dx) <= depth * half)
    raise ValueError(f"unknown shape {shape!r}")


@cache
def object_mask(shape: str, size: str, position: str) -> np.ndarray:
    """Boolean [64, 64] mask of one object; read-only because it is shared through the cache."""
    row, col = position_cell(position)
    mask = np.ascontiguousarray(
        shape_mask(shape, SIZE_PIXELS[size], CELL_CENTRES[row], CELL_CENTRES[col]))
    mask.setflags(write=False)
    return mask


def render(scene: Scene) -> np.ndarray:
    """Render ``scene`` to a uint8 array of shape [64, 64, 3]."""
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[...] = PALETTE[scene.background]
    for obj in scene.objects:
        image[object_mask(obj.shape, obj.size, obj.position)] = PALETTE[obj.colour]
    return image
