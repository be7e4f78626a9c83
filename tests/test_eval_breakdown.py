"""The failure breakdown reads counts, shape confusions and relation parts correctly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jaxgen.eval.breakdown import failure_breakdown, markdown
from jaxgen.eval.shapes_eval import eval_prompts
from jaxgen.shapes import parse_caption, render
from jaxgen.shapes.scene import INVERSE_RELATION
from tests.test_eval import scene_asked_for

_TRANSPOSED = {"left of": "above", "right of": "below", "above": "left of", "below": "right of"}


def _draw(prompts, relation_map=None) -> np.ndarray:
    images = []
    for p in prompts:
        spec = parse_caption(p.text)
        if spec.relation is not None and relation_map is not None:
            spec = dataclasses.replace(spec, relation=relation_map[spec.relation])
        images.append(render(scene_asked_for(spec)))
    return np.stack(images)


@pytest.fixture(scope="module")
def prompts():
    return eval_prompts(40)


def test_images_that_render_the_prompt_break_down_as_all_right(prompts):
    b = failure_breakdown(prompts, _draw(prompts))
    assert all(r["asked"] == r["found"] for r in b["counts"])
    assert sum(r["prompts"] for r in b["counts"]) == 40
    assert all(r["asked"] == r["found"] for r in b["shapes"])
    assert b["relation"] == {"two_found": 20, "colours_right": 20, "orientation_right": 20,
                             "order_right_given_orientation": 20}
    assert "| 2 | 2 | 20 |" in markdown(b)


def test_reversed_relations_keep_the_orientation_and_lose_the_order(prompts):
    b = failure_breakdown(prompts, _draw(prompts, INVERSE_RELATION))
    # Only a pair of identical objects still reads right with its order reversed.
    twins = sum(1 for p in prompts if p.num_objects == 2
                and len(set(parse_caption(p.text).objects)) == 1)
    assert b["relation"] == {"two_found": 20, "colours_right": 20, "orientation_right": 20,
                             "order_right_given_orientation": twins}
    assert twins < 5


def test_transposed_relations_lose_the_orientation(prompts):
    b = failure_breakdown(prompts, _draw(prompts, _TRANSPOSED))
    assert b["relation"]["orientation_right"] == 0


def test_extra_objects_and_image_count_mismatch(prompts):
    single = [p for p in prompts if p.num_objects == 1][:3]
    two = _draw([p for p in prompts if p.num_objects == 2][:3])
    b = failure_breakdown(single, two)  # two objects drawn where one was asked
    assert b["counts"] == [{"asked": 1, "found": 2, "prompts": 3}] and b["shapes"] == []
    with pytest.raises(ValueError, match="2 images for 3 prompts"):
        failure_breakdown(single, two[:2])
