"""The captioned-shapes domain: seeded scenes, a renderer, captions, a parser and an analyser.

Typical use::

    scene = sample_scene(seed)
    image = render(scene)                       # uint8 [64, 64, 3]
    text = caption(scene, seed)                 # "a small red circle at the top left on ..."
    result = score(parse_caption(text), analyse(image))   # {"shape": True, ..., "joint": True}
"""

from jaxgen.shapes.analyse import analyse, score, snap_to_palette
from jaxgen.shapes.captions import PAIR_TEMPLATES, SINGLE_TEMPLATES, caption, parse_caption
from jaxgen.shapes.render import render
from jaxgen.shapes.scene import (
    COLOURS,
    IMAGE_SIZE,
    PALETTE,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    Scene,
    SceneSpec,
    ShapeObject,
    canonical,
    relation_holds,
    sample_scene,
)

__all__ = [
    "COLOURS",
    "IMAGE_SIZE",
    "PAIR_TEMPLATES",
    "PALETTE",
    "POSITIONS",
    "RELATIONS",
    "SHAPES",
    "SINGLE_TEMPLATES",
    "SIZES",
    "ObjectSpec",
    "Scene",
    "SceneSpec",
    "ShapeObject",
    "analyse",
    "canonical",
    "caption",
    "parse_caption",
    "relation_holds",
    "render",
    "sample_scene",
    "score",
    "snap_to_palette",
]
