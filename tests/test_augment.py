"""`jaxgen augment`'s parts without a model: inputs, recipes, the plan, the shapes filter."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from jaxgen.augment.filters import shapes_label
from jaxgen.augment.inputs import read_labelled
from jaxgen.augment.plan import manifest_bytes, plan_rows
from jaxgen.augment.recipe import parse_recipe
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.records import ImageRecord
from jaxgen.requests import ConfigError
from tests import augment_inputs

FORMATS = ("folders", "metadata", "webdataset", "parquet")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_input_format_reads_the_same_labels_and_hashes(fmt, tmp_path):
    found = read_labelled(augment_inputs.write(tmp_path, fmt))
    want = augment_inputs.images()
    assert [(i.key, i.label) for i in found] == [(k, label) for k, label, _ in want]
    assert [i.sha256 for i in found] == [hashlib.sha256(d).hexdigest() for _, _, d in want]


def test_an_input_without_labels_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "a.png").write_bytes(augment_inputs.images()[0][2])
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "colour": "red"}\n')
    with pytest.raises(ValueError, match=r"metadata.jsonl line 1: no label column"):
        read_labelled(str(tmp_path))


def recipe(**overrides):
    base = {"prompt": "a {label}", "entries": [
        {"kind": "img2img", "n": 2, "strength": [0.25, 0.75]},
        {"kind": "text2img", "n": 3, "prompts": ["a {colour} {label}"],
         "words": {"colour": ["red", "green", "blue"]}}]}
    return parse_recipe({**base, **overrides})


@pytest.mark.parametrize("values, message", [
    ({"promt": "x"}, r"promt: unknown recipe key; did you mean prompt\?"),
    ({"entries": [{"kind": "img2img", "strenght": 0.5}]},
     r"entries\[0\]\.strenght: unknown recipe key; did you mean strength\?"),
    ({"entries": [{"kind": "img2img", "strength": 1.5}]}, r"entries\[0\]\.strength 1\.5"),
    ({"entries": [{"kind": "outpaint"}]}, r"entries\[0\]\.kind 'outpaint'"),
    ({"entries": [{"kind": "text2img", "prompts": ["a {colr} {label}"]}]}, r"\{colr\}"),
    ({"entries": [{"kind": "img2img", "words": {"a": ["b"]}}]}, r"only a text2img entry"),
])
def test_a_bad_recipe_names_the_key_and_value(values, message):
    with pytest.raises(ConfigError, match=message):
        recipe(**values)


def test_defaults_fill_what_a_recipe_leaves_out():
    r = parse_recipe({"entries": [{"kind": "img2img"}]})
    assert (r.prompt, r.seed, r.steps, r.filter) == ("a photo of a {label}", 0, None, None)
    assert (r.entries[0].name, r.entries[0].n, r.entries[0].strength) == ("img2img", 1, (0.5,))


def test_plan_counts_and_carries_label_source_and_entry(tmp_path):
    items = read_labelled(augment_inputs.write(tmp_path, "webdataset"))
    sources = {i.key: f"/src/{i.key}.png" for i in items}
    rows = list(plan_rows(recipe(phrases={"circle": "round disc"}), items, sources))
    img2img = [r for r in rows if "init_image" in r]
    text2img = [r for r in rows if "init_image" not in r]
    assert len(img2img) == len(items) * 2 and all(r["num_images"] == 2 for r in img2img)
    assert len(text2img) == 3 * len(augment_inputs.LABELS)
    first = img2img[0]
    assert first["prompt"] == "a round disc" and first["strength"] == 0.25
    assert first["metadata"] == {"label": "circle", "recipe_entry": "img2img",
                                 "kind": "img2img", "source_key": "circle_0",
                                 "source_sha256": items[0].sha256}
    assert first["init_image"] == "/src/circle_0.png"
    assert {r["metadata"]["label"] for r in text2img} == set(augment_inputs.LABELS)
    assert all(r["prompt"].split()[1] in ("red", "green", "blue") for r in text2img)
    again = manifest_bytes(plan_rows(recipe(phrases={"circle": "round disc"}), items, sources))
    assert manifest_bytes(iter(rows)) == again


def _record(label: str) -> dict:
    return {"label": label}


def test_shapes_filter_keeps_the_asked_shape_and_drops_another():
    image = augment_inputs.shape_image("circle", 0)
    assert shapes_label(image, _record("circle")).keep
    verdict = shapes_label(image, _record("square"))
    assert not verdict.keep and verdict.reason == "read back shape circle, asked square"
    blank = np.full((64, 64, 3), 245, np.uint8)
    assert shapes_label(blank, _record("circle")).reason == "no object read back"


def bad_verdict(image, record):
    return "keep"


def broken_filter(image, record):
    raise ValueError("the scorer broke")


def test_a_filter_with_a_bad_verdict_or_an_error_is_not_taken_for_a_verdict():
    """A verdict of another type names the filter; an error is the job's, not a drop: it
    propagates (and fails the shard) instead of being recorded as a reason."""
    from types import SimpleNamespace

    from jaxgen.dataset.filter import judge

    image = augment_inputs.shape_image("circle", 0)
    record = SimpleNamespace(to_json=lambda: _record("circle"))  # what judge reads of a record
    with pytest.raises(TypeError, match="filter 'tests.test_augment:bad_verdict' returned 'keep'"):
        judge("tests.test_augment:bad_verdict", image, record)
    with pytest.raises(ValueError, match="the scorer broke"):
        judge("tests.test_augment:broken_filter", image, record)
    assert judge("jaxgen.augment.filters:shapes_label", image, record).keep


def test_a_labelled_record_carries_label_and_class_index():
    from jaxgen.dataset.plan import PlannedRow
    from jaxgen.requests import GenerationRequest

    row = PlannedRow("k", 0, 0, "m", 1, GenerationRequest("a square", seed=1,
                                                         metadata={"label": "square"}))
    record = ImageRecord.build(row, 0, "m", "h").with_label(("circle", "square"))
    assert (record.to_json()["label"], record.to_json()["cls"]) == ("square", 1)
    assert "label" not in ImageRecord.build(row, 0, "m", "h").to_json()
    with pytest.raises(ValueError, match="label 'square' is not one of"):
        ImageRecord.build(row, 0, "m", "h").with_label(("circle",))


def test_a_job_without_labels_or_filter_records_the_same_settings_as_before():
    d = JobConfig(manifest="m.jsonl", output="o").to_dict()
    assert "labels" not in d and "filter" not in d
    with pytest.raises(ConfigError, match="filter 'nocolon'"):
        JobConfig(manifest="m.jsonl", output="o", filter="nocolon")
