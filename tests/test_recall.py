"""Tests for recall on the shapes domain: free attributes, the measures and the prompt families."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jaxgen.eval.recall import (
    AttributeRecall,
    Reading,
    domain_distribution,
    family_name,
    free_attributes,
    grid_coverage,
    normalised_entropy,
    omission_patterns,
    read_back,
    readings,
    recall,
    recall_by_family,
    recall_prompts,
    vendi_score,
)
from jaxgen.shapes import (
    COLOURS,
    POSITIONS,
    ObjectSpec,
    Scene,
    SceneSpec,
    ShapeObject,
    analyse,
    canonical,
    parse_caption,
    render,
    sample_scene,
    score,
)

ALL_FREE = ("count", "background", "relation", "shape", "colour", "size", "position")


def test_normalised_entropy_is_one_when_uniform_and_zero_for_one_value() -> None:
    assert normalised_entropy([5, 5, 5, 5]) == pytest.approx(1.0)
    assert normalised_entropy([7, 0, 0]) == 0.0
    assert 0.0 < normalised_entropy([9, 1]) < 1.0
    with pytest.raises(ValueError, match="2 bins"):
        normalised_entropy([3])


def test_vendi_score_of_k_equally_frequent_distinct_scenes_is_k() -> None:
    scenes = [sample_scene(seed) for seed in range(5)]
    assert vendi_score(scenes * 4) == pytest.approx(5.0)
    assert vendi_score([scenes[0]] * 10) == pytest.approx(1.0)
    # Uneven frequencies count as fewer scenes than there are distinct ones.
    assert 1.0 < vendi_score([scenes[0]] * 9 + [scenes[1]]) < 2.0


def test_grid_coverage_counts_visited_cells_of_the_grid() -> None:
    axes = [("a", "b"), ("x", "y", "z")]
    assert grid_coverage([("a", "x"), ("a", "x"), ("b", "z")], axes) == pytest.approx(2 / 6)
    assert grid_coverage([(a, x) for a in axes[0] for x in axes[1]], axes) == 1.0
    assert grid_coverage([("c", "x")], axes) == 0.0  # off the grid


def _position_readings(values: list[str]) -> list[Reading]:
    return [Reading("position", v, domain_distribution("position")) for v in values]


def test_chi_square_accepts_draws_from_the_domain_and_rejects_a_constant() -> None:
    rng = np.random.default_rng(0)
    drawn = AttributeRecall.of(_position_readings(list(rng.choice(POSITIONS, size=900))))
    assert drawn.p_value > 0.05 and drawn.normalised_entropy > 0.99
    assert sum(drawn.counts.values()) == 900 and sum(drawn.expected.values()) == pytest.approx(900)
    constant = AttributeRecall.of(_position_readings(["center"] * 900))
    assert constant.p_value < 1e-100 and constant.normalised_entropy == 0.0
    # Every value the domain allows is a bin, the ones never read back included.
    assert constant.counts["top"] == 0 and constant.expected["top"] == pytest.approx(100)
    assert constant.largest_gap == pytest.approx(8 / 9)


def test_domain_distribution_is_what_sample_scene_draws() -> None:
    """The closed form against 8,000 scenes; the pair objects are pooled as readings pool them."""
    report = recall([(SceneSpec(), canonical(sample_scene(seed))) for seed in range(8_000)])
    assert set(report.attributes) == set(ALL_FREE)
    for name, attribute in report.attributes.items():
        assert set(attribute.counts) == set(domain_distribution(name)), name
        assert attribute.largest_gap < 0.015 and attribute.p_value > 0.01, (name, attribute)
        assert math.fsum(domain_distribution(name).values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'colours'"):
        domain_distribution("colours")


def test_rendered_domain_scenes_read_back_spread_as_the_domain() -> None:
    """The measure and the domain agree: the empty prompt answered by the domain itself."""
    pairs = [(parse_caption(""), analyse(render(sample_scene(seed)))) for seed in range(1500)]
    report = recall(pairs)
    assert report.mean_normalised_entropy >= 0.9
    assert report.coverage["shape×colour"] == 1.0
    assert report.coverage["shape×colour×size×position"] > 0.95
    for name in ("count", "size", "position"):
        assert report.attributes[name].largest_gap < 0.05, name
    assert all(a.outside == 0 and a.p_value > 0.001 for a in report.attributes.values())
    assert report.distinct_scenes > 1400 and report.precision == {"joint": 1.0}


def test_free_attributes_follow_the_parsed_prompt() -> None:
    assert free_attributes(parse_caption("")) == ALL_FREE
    assert free_attributes(parse_caption("a white background")) == tuple(
        a for a in ALL_FREE if a != "background")
    assert free_attributes(parse_caption("a red circle")) == ("background", "size", "position")
    # A stated relation implies the positions; without one they are free.
    assert free_attributes(parse_caption("a red circle left of a blue square")) == (
        "background", "size")
    assert free_attributes(parse_caption("two shapes on a black background")) == (
        "relation", "shape", "colour", "size", "position")
    assert free_attributes(parse_caption("a big red circle at the top on a blue background")) == ()
    assert family_name(parse_caption("a red circle")) == "1 object; free background, size, position"
    assert family_name(parse_caption("")) == "any objects; free " + ", ".join(ALL_FREE)
    assert family_name(parse_caption("a small red circle at the top, white background")) == (
        "1 object; fully specified")


def test_a_stated_colour_rules_out_that_background_and_back() -> None:
    (background,) = readings(parse_caption("a red circle"), _circle_scene("blue", "red"))[:1]
    assert background.attribute == "background" and background.value == "blue"
    assert "red" not in background.domain and background.domain["blue"] == pytest.approx(1 / 9)
    colour = next(r for r in readings(parse_caption("a circle on a blue background"),
                                      _circle_scene("blue", "red")) if r.attribute == "colour")
    assert colour.value == "red" and set(colour.domain) == set(COLOURS) - {"blue"}


def _circle_scene(background: str, colour: str) -> Scene:
    return Scene(background, (ShapeObject("circle", colour, "small", "center"),), None)


def test_free_attributes_are_read_from_the_matching_object() -> None:
    spec = SceneSpec(None, (ObjectSpec("circle", "red"), ObjectSpec("square", None, "large")))
    found = Scene("white", (ShapeObject("square", "blue", "large", "left"),
                            ShapeObject("circle", "red", "small", "right")), "left of")
    got = {(r.attribute, r.value) for r in readings(spec, found)}
    assert ("size", "small") in got and ("colour", "blue") in got
    assert ("size", "large") not in got and ("colour", "red") not in got
    assert ("relation", "left of") in got and ("background", "white") in got


def test_counts_outside_the_domain_are_kept_apart() -> None:
    circle = ShapeObject("circle", "red", "small", "left")
    pairs = [(SceneSpec(), Scene("white", (circle,) * k, None)) for k in (0, 1, 1, 3)]
    count = recall(pairs).attributes["count"]
    assert count.outside == 2 and count.counts == {"1": 2, "2": 0}


def test_copies_have_full_precision_and_no_recall() -> None:
    copy = Scene("white", (ShapeObject("circle", "red", "small", "center"),), None)
    report = recall([(parse_caption("a red circle"), copy)] * 50)
    assert report.precision["joint"] == 1.0 and report.precision["colour"] == 1.0
    assert report.mean_normalised_entropy == 0.0 and report.distinct_scenes == pytest.approx(1.0)
    assert report.coverage == {}  # shape and colour are stated
    assert report.attributes["position"].p_value < 1e-30
    assert json.loads(json.dumps(report.to_dict()))["attributes"]["size"]["counts"] == {
        "small": 50, "large": 0}
    assert "position" in report.summary() and "precision" in report.summary()


def test_recall_prompts_are_deterministic_and_say_what_their_pattern_keeps() -> None:
    families = recall_prompts(4)
    assert families == recall_prompts(4)
    assert len(families) == len(omission_patterns()) == 2 * 31 + 2
    # Choosing fewer patterns or prompts changes no prompt.
    pattern = omission_patterns()[40]
    (name, prompts), = recall_prompts(2, [pattern]).items()
    assert prompts == families[name][:2]
    seeds = [p.seed for ps in families.values() for p in ps]
    # Distinct, and above the training scenes' seeds (below 1e9).
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 1_000_000_000
    for name, prompts in families.items():
        for p in prompts:
            spec = parse_caption(p.text)
            assert family_name(spec) == name, p
            assert score(spec, canonical(sample_scene(p.seed, p.num_objects)))["joint"] is True
    assert [p.text for p in families[family_name(SceneSpec())]] == [""] * 4
    with pytest.raises(ValueError, match="omission pattern"):
        recall_prompts(1, [(1, frozenset({"relation"}))])


def test_each_family_answered_by_its_own_scenes_spreads_as_the_domain() -> None:
    """A model that draws free attributes as the domain does: the prompts' own scenes."""
    for name, prompts in recall_prompts(60).items():
        report = recall([(parse_caption(p.text), canonical(sample_scene(p.seed, p.num_objects)))
                         for p in prompts])
        assert report.mean_normalised_entropy >= 0.9, name
        assert all(a.p_value > 1e-4 for a in report.attributes.values()), (name, report.summary())
        assert report.precision["joint"] == 1.0, name


def test_read_back_and_families_of_a_generated_dataset() -> None:
    texts = ["a red circle", "", "a blue square on a white background"]
    scenes = [Scene("green", (ShapeObject("circle", "red", "large", "top"),), None),
              sample_scene(3),
              Scene("white", (ShapeObject("square", "blue", "small", "left"),), None)]
    pairs = read_back(texts, [render(s) for s in scenes])
    assert [found for _, found in pairs] == [canonical(s) for s in scenes]
    reports = recall_by_family(pairs + pairs)
    assert sorted(reports) == sorted(family_name(parse_caption(t)) for t in texts)
    assert all(r.prompts == 2 for r in reports.values())
    with pytest.raises(ValueError, match="hello"):
        read_back(["hello"], [render(scenes[0])])


@pytest.mark.parametrize("output_format", ["webdataset", "parquet", "imagefolder"])
def test_eval_dataset_reads_back_every_image_of_a_generated_dataset(tmp_path, output_format,
                                                                     capsys) -> None:
    """`jaxgen eval --dataset OUT`: recall and precision of images already made, any format."""
    from jaxgen.beam.pipeline import run_pipeline
    from jaxgen.cli import main
    from jaxgen.dataset.config import JobConfig
    from tests.scene_generator import SceneSpec

    # Every kind but the empty prompt, which rows cannot carry yet (a model must say it takes one)
    patterns = [p for p in omission_patterns() if p[0] is not None or "background" not in p[1]]
    prompts = [p for members in recall_prompts(2, patterns).values() for p in members]
    rows = [{"prompt": p.text, "seed": p.seed, "id": str(i)} for i, p in enumerate(prompts)]
    rows.append({"prompt": "a photo of a cat", "seed": 1, "id": "cat"})  # not readable
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "data"
    run_pipeline(JobConfig(manifest=str(manifest), output=str(out), shard_size=50,
                           output_format=output_format,
                           defaults={"height": 64, "width": 64}), SceneSpec())
    assert main(["eval", "--dataset", str(out), "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval/report.json").read_text())["recall"]
    assert result["images"] == len(prompts) and result["not_read"] == 1
    assert result["overall"]["precision"]["joint"] == 1.0  # every scene answers its prompt
    assert set(result["families"]) == set(recall_prompts(1, patterns))
    assert "1 object; free shape" in capsys.readouterr().out
    # a background-only prompt's two scenes are told apart
    anything = result["families"][family_name(parse_caption("an orange background"))]
    assert anything["prompts"] == 2 and anything["distinct_scenes"] == 2.0
