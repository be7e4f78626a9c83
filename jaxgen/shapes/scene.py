"""Scene records, the attribute vocabulary and seeded scene sampling.

The domain is deliberately small and discrete so that every attribute of a generated image can be
read back exactly (see ``analyse.py``): a palette of well separated colours, three shapes, two
sizes and a 3x3 grid of positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64

# Saturated colours chosen so that the nearest pair (orange/yellow) is still ~85 RGB units apart:
# snapping a pixel with Gaussian noise of sigma 8 to the wrong colour needs a >5-sigma excursion.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (30, 180, 40),
    "blue": (30, 60, 230),
    "yellow": (245, 225, 30),
    "purple": (140, 40, 190),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "cyan": (30, 210, 220),
    "pink": (250, 130, 190),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
PALETTE_ARRAY = np.array([PALETTE[c] for c in COLOURS], dtype=np.uint8)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
# Side of the bounding box in pixels. Both fit inside one grid cell (64/3 ~ 21 px) with a gap, so
# objects in different cells can never touch and stay separate connected components.
SIZE_PIXELS: dict[str, int] = {"small": 10, "large": 18}

# Row-major 3x3 grid; names double as caption words.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
# Integer cell centres keep the even-sized shapes exactly centred: box = [c - s/2, c + s/2).
CELL_CENTRES: tuple[int, int, int] = (11, 32, 53)

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
INVERSE_RELATION: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[ShapeObject, ...]
    # "A <relation> B" for objects (A, B); None for single-object scenes.
    relation: str | None = None


def position_cell(position: str) -> tuple[int, int]:
    """(row, col) of a named grid position."""
    index = POSITIONS.index(position)
    return divmod(index, 3)


def cell_position(row: int, col: int) -> str:
    return POSITIONS[3 * row + col]


def relation_holds(relation: str, pos_a: str, pos_b: str) -> bool:
    """Whether "A <relation> B" holds for objects in the given grid cells."""
    (ra, ca), (rb, cb) = position_cell(pos_a), position_cell(pos_b)
    if relation == "left of":
        return ca < cb
    if relation == "right of":
        return ca > cb
    if relation == "above":
        return ra < rb
    if relation == "below":
        return ra > rb
    raise ValueError(f"unknown relation {relation!r}")


def canonical(scene: Scene) -> Scene:
    """The unique representative of a scene: two-object scenes are stated as "left of"/"above".

    "A right of B" and "B left of A" are the same picture; the analyser cannot know which the
    sampler chose, so comparisons go through this form.
    """
    if scene.relation in ("right of", "below"):
        a, b = scene.objects
        return Scene(scene.background, (b, a), INVERSE_RELATION[scene.relation])
    return scene


def sample_scene(seed: int, num_objects: int | None = None) -> Scene:
    """A random scene, fully determined by ``seed``.

    Two-object scenes put both objects in the same row (left of / right of) or the same column
    (above / below). Diagonal pairs would make the relation ambiguous and the analyser inexact.
    """
    rng = np.random.default_rng(seed)
    if num_objects is None:
        num_objects = int(rng.integers(1, 3))
    if num_objects not in (1, 2):
        raise ValueError(f"num_objects must be 1 or 2, got {num_objects}")
    background = COLOURS[int(rng.integers(len(COLOURS)))]
    object_colours = [c for c in COLOURS if c != background]

    def random_object(position: str) -> ShapeObject:
        return ShapeObject(
            shape=SHAPES[int(rng.integers(len(SHAPES)))],
            colour=object_colours[int(rng.integers(len(object_colours)))],
            size=SIZES[int(rng.integers(len(SIZES)))],
            position=position,
        )

    if num_objects == 1:
        obj = random_object(POSITIONS[int(rng.integers(len(POSITIONS)))])
        return Scene(background, (obj,), None)

    relation = RELATIONS[int(rng.integers(len(RELATIONS)))]
    pos_a, pos_b = pair_positions(rng, relation)
    return Scene(background, (random_object(pos_a), random_object(pos_b)), relation)


def pair_positions(rng: np.random.Generator, relation: str) -> tuple[str, str]:
    """Cells for "A <relation> B": a random shared row (left/right) or column (above/below)."""
    line = int(rng.integers(3))  # the shared row or column
    first, second = sorted(int(i) for i in rng.choice(3, size=2, replace=False))
    if relation in ("right of", "below"):
        first, second = second, first
    if relation in ("left of", "right of"):
        return cell_position(line, first), cell_position(line, second)
    return cell_position(first, line), cell_position(second, line)


@dataclass(frozen=True)
class ObjectSpec:
    """What a prompt asks of one object; None means "not asked"."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class SceneSpec:
    """What a prompt asks of a scene (the parsed form of a caption); None means "not asked"."""

    background: str | None = None
    objects: tuple[ObjectSpec, ...] = ()
    relation: str | None = None
