"""Evaluation: held-out prompts, a metric that passes perfect images and fails noise, and FD."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxgen.eval.fd import (
    frechet_distance,
    rendered,
    scene_labels,
    shapes_fd,
    train_feature_net,
)
from jaxgen.eval.shapes_eval import (
    EVAL_SEED_START,
    TUNING_SEED_START,
    ShapesEval,
    contact_sheet,
    eval_prompts,
)
from jaxgen.shapes import (
    COLOURS,
    ObjectSpec,
    Scene,
    SceneSpec,
    ShapeObject,
    parse_caption,
    render,
    sample_scene,
)
from jaxgen.shapes.split import TRAIN_SEED_LIMIT

# Where a rendering "generator" puts the two objects of each relation (A, B).
_PAIR_POSITIONS = {"left of": ("left", "right"), "right of": ("right", "left"),
                   "above": ("top", "bottom"), "below": ("bottom", "top")}


def scene_asked_for(spec: SceneSpec) -> Scene:
    """The scene a perfect model would draw for a parsed prompt (defaults where nothing asked)."""
    positions = (_PAIR_POSITIONS[spec.relation] if spec.relation
                 else [o.position or "center" for o in spec.objects])

    def obj(o: ObjectSpec, position: str) -> ShapeObject:
        return ShapeObject(o.shape or "circle", o.colour or "red", o.size or "large", position)

    objects = tuple(obj(o, p) for o, p in zip(spec.objects, positions, strict=True))
    used = {o.colour for o in objects}
    background = spec.background or next(c for c in COLOURS if c not in used)
    return Scene(background, objects, spec.relation)


def rendering_generator(prompts: list[str], seeds: np.ndarray) -> np.ndarray:
    return np.stack([render(scene_asked_for(parse_caption(p))) for p in prompts])


def noise_generator(prompts: list[str], seeds: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(len(prompts), 64, 64, 3), dtype=np.uint8)


def test_eval_prompts_are_held_out_deterministic_and_cover_all_wordings():
    prompts = eval_prompts(60)
    assert prompts == eval_prompts(60)
    assert min(p.seed for p in prompts) >= EVAL_SEED_START > TRAIN_SEED_LIMIT
    assert [p.num_objects for p in prompts[:4]] == [1, 2, 1, 2]
    assert {p.template for p in prompts if p.num_objects == 1} == set(range(6))
    assert {p.template for p in prompts if p.num_objects == 2} == set(range(5))
    assert any(p.new_wording for p in prompts) and not all(p.new_wording for p in prompts)


def test_tuning_prompts_share_no_scene_with_the_evaluation_or_training():
    tuning, evaluation = eval_prompts(300, TUNING_SEED_START), eval_prompts(300)
    assert not {p.seed for p in tuning} & {p.seed for p in evaluation}
    assert min(p.seed for p in tuning) >= TUNING_SEED_START > TRAIN_SEED_LIMIT
    # the same mix of one/two objects and wordings, so settings chosen on one carry over
    assert [p.template for p in tuning] == [p.template for p in evaluation]


def test_images_that_render_the_prompt_score_100_percent_joint():
    report, images = ShapesEval(num_prompts=80).run(rendering_generator)
    assert images.shape == (80, 64, 64, 3)
    for group in ("all", "single", "two", "seen_wording", "new_wording"):
        assert report.accuracy[group]["joint"] == 1.0, group
    assert report.accuracy["single"]["position"] == 1.0
    assert report.accuracy["two"]["relation"] == 1.0
    assert report.counts["single"] == report.counts["two"] == 40
    assert all(report.passed)


def test_noise_images_score_near_zero_so_the_metric_can_fail():
    report, _ = ShapesEval(num_prompts=80).run(noise_generator)
    assert report.accuracy["all"]["joint"] <= 0.02
    assert report.accuracy["all"]["colour"] <= 0.2
    # Noise snaps to one ragged blob, which the analyser reads as whichever of the 3 shapes
    # fits it best (it has no "none"): about chance, 1/3 of one-object prompts, fewer of two.
    assert report.accuracy["all"]["shape"] <= 0.4
    assert report.accuracy["two"]["relation"] <= 0.1
    assert "relation" not in report.accuracy["single"]  # only asked of two-object prompts


def test_one_fixed_image_for_every_prompt_scores_near_zero_joint():
    image = render(scene_asked_for(parse_caption("a small blue square at the top left")))
    report, _ = ShapesEval(num_prompts=80).run(lambda prompts, seeds: np.stack([image] * 80))
    assert report.accuracy["all"]["joint"] <= 0.05


def test_contact_sheet_frames_passes_green_and_failures_red(tmp_path):
    images = np.zeros((5, 64, 64, 3), np.uint8)
    path = contact_sheet(images, [True, False, True, True, False], tmp_path / "sheet.png",
                         columns=4, border=2)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (2 * 68, 4 * 68, 3)
    assert tuple(sheet[0, 0]) == (40, 200, 40) and tuple(sheet[0, 68]) == (220, 30, 30)


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = 2.0 * rng.normal(size=(20000, 3)) + np.array([1.0, 0.0, 0.0])
    # |mu|^2 + tr(I + 4I - 2 * 2I) = 1 + 3
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fd_between_render_sets_is_far_below_fd_of_renders_to_noise():
    net = train_feature_net(steps=150, batch_size=32)
    n = 200
    reference = rendered(np.arange(EVAL_SEED_START, EVAL_SEED_START + n))
    other = rendered(np.arange(EVAL_SEED_START + 10_000, EVAL_SEED_START + 10_000 + n))
    noise = noise_generator([""] * n, np.zeros(n))
    to_noise = shapes_fd(net, noise, reference, other)
    to_renders = shapes_fd(net, other, reference, other)
    assert to_renders.fd == to_renders.floor  # the same sets: the floor is this comparison
    assert to_noise.floor == to_renders.floor
    assert to_noise.fd > 20 * to_noise.floor, to_noise
    # It learned something: beyond always answering each attribute's most common class.
    labels = np.stack([scene_labels(sample_scene(s)) for s in range(2000)])
    majority = np.mean([np.bincount(col).max() / len(col) for col in labels.T])
    assert net.accuracy > majority + 0.1, (net.accuracy, majority)
