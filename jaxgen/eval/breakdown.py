"""Why ShapesEval prompts fail: object counts, shape confusions and the parts of a relation.

ShapesEval's accuracies say how often an attribute is wrong; this says how. Three tables:

- counts: (objects asked, objects found) -> prompts. Extra objects and missing ones differ in
  cause (a layout the sampler did not commit to, against an object the caption did not bring).
- shapes: one-object prompts with one object found, (shape asked, size asked, shape found) ->
  prompts. Small squares read as circles point at blurred corners, not at the caption.
- relation: two-object prompts with two objects found. A relation is right when the
  orientation is (same row for left/right, same column for above/below) and then the order;
  chance is one half for each, so each part shows whether the model learned it at all. Also
  how many of these pairs have the asked colours (the two named objects were drawn).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

from jaxgen.eval.shapes_eval import EvalPrompt
from jaxgen.shapes import analyse, parse_caption, score

_HORIZONTAL = ("left of", "right of")


def failure_breakdown(prompts: Sequence[EvalPrompt], images: np.ndarray) -> dict:
    """The three tables above for generated `images` (uint8 [N, H, W, 3], one per prompt)."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
    counts: collections.Counter = collections.Counter()
    shapes: collections.Counter = collections.Counter()
    orientation_right = order_right = colours_right = pairs = 0
    for prompt, image in zip(prompts, images, strict=True):
        spec, found = parse_caption(prompt.text), analyse(image)
        counts[(len(spec.objects), len(found.objects))] += 1
        if len(spec.objects) == len(found.objects) == 1:
            asked, got = spec.objects[0], found.objects[0]
            shapes[(asked.shape, asked.size, got.shape)] += 1
        if spec.relation is not None and len(found.objects) == 2:
            pairs += 1
            colours_right += (sorted(o.colour for o in spec.objects)
                              == sorted(o.colour for o in found.objects))
            if (spec.relation in _HORIZONTAL) == (found.relation in _HORIZONTAL):
                orientation_right += 1
                order_right += bool(score(spec, found)["relation"])
    return {
        "counts": _rows(counts, ("asked", "found")),
        "shapes": _rows(shapes, ("asked", "size", "found")),
        "relation": {"two_found": pairs, "colours_right": colours_right,
                     "orientation_right": orientation_right,
                     "order_right_given_orientation": order_right},
    }


def _rows(counter: collections.Counter, names: tuple[str, ...]) -> list[dict]:
    return [{**dict(zip(names, key, strict=True)), "prompts": n}
            for key, n in sorted(counter.items())]


def markdown(breakdown: dict) -> str:
    """The three tables as Markdown, for the model card."""
    lines = ["| objects asked | found | prompts |", "|---:|---:|---:|"]
    lines += [f"| {r['asked']} | {r['found']} | {r['prompts']} |" for r in breakdown["counts"]]
    lines += ["", "| shape asked | size | read as | prompts |", "|---|---|---|---:|"]
    lines += [f"| {r['asked']} | {r['size']} | {r['found']} | {r['prompts']} |"
              for r in breakdown["shapes"]]
    rel = breakdown["relation"]
    lines += ["", f"relation, two-object prompts with two objects found: {rel['two_found']}; "
              f"colours right {rel['colours_right']}; orientation right "
              f"{rel['orientation_right']}; order right given orientation "
              f"{rel['order_right_given_orientation']}"]
    return "\n".join(lines)
