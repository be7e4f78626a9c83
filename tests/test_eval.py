"""Evaluation: held-out prompts, a metric that passes perfect images and fails noise, and FD."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from jaxgen.cli import main
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
from jaxgen.requests import stable_seed
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


GREEN, RED, GREY = (40, 200, 40), (220, 30, 30), (160, 160, 160)


def test_contact_sheet_with_captions_writes_each_prompt_under_its_image(tmp_path):
    images = np.zeros((3, 64, 64, 3), np.uint8)
    plain = np.asarray(Image.open(contact_sheet(images, [True, False, None], tmp_path / "a.png",
                                                columns=4)))
    long = "a small blue square on the left of a large green triangle " * 4
    path = contact_sheet(images, [True, False, None], tmp_path / "b.png", columns=4,
                         captions=["a red circle", long, ""])
    sheet = np.asarray(Image.open(path))
    assert plain.shape == (68, 4 * 68, 3) and sheet.shape[0] > 68 and sheet.shape[1] == 4 * 68
    # frames: green, red, grey (not scored); the fourth cell is empty
    assert [tuple(sheet[0, 68 * c]) for c in range(4)] == [GREEN, RED, GREY, (128, 128, 128)]
    below = sheet[2 + 64:sheet.shape[0] - 2]  # the caption strips, under the images
    dark = [(below[:, 68 * c + 2:68 * c + 66] < 100).all(axis=-1).sum() for c in range(3)]
    assert dark[0] > 0 and dark[1] > dark[0] and dark[2] == 0


@pytest.fixture(scope="module")
def own_prompts_run(tiny_sd1_dir, tmp_path_factory):
    """`jaxgen eval --prompts FILE` on three prompts: two the parser reads, one it cannot."""
    tmp = tmp_path_factory.mktemp("own-prompts")
    prompts = tmp / "prompts.txt"
    prompts.write_text("a red circle\n\na photo of a cat\na small blue square on a green "
                       "background\n")
    code = main(["eval", "--model", str(tiny_sd1_dir), "--out", str(tmp / "out"), "--prompts",
                 str(prompts), "--steps", "2"])
    return code, tmp / "out"


def test_eval_scores_the_users_own_prompts_and_names_each_one(own_prompts_run):
    code, out = own_prompts_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    entries = report["prompts"]
    assert [e["text"] for e in entries] == [
        "a red circle", "a photo of a cat", "a small blue square on a green background"]
    # a prompt without a seed gets the project's seed rule, from its line (blank lines count)
    assert [e["seed"] for e in entries] == [stable_seed(0, None, i) for i in (0, 2, 3)]
    assert entries[0]["result"] in ("pass", "fail") and entries[2]["result"] in ("pass", "fail")
    assert entries[1]["result"] == "not scored" and "no shape word" in entries[1]["reason"]
    assert report["counts"]["all"] == 2 and report["counts"]["not_scored"] == 1
    assert report["num_prompts"] == 3 and report["prompts_file"].endswith("prompts.txt")
    assert report["passed"][1] == "-" and "fd" not in report


def test_eval_contact_sheet_has_a_captioned_cell_per_prompt(own_prompts_run):
    _, out = own_prompts_run
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    uncaptioned = contact_sheet(np.zeros((3, 64, 64, 3), np.uint8), None, out / "plain.png")
    assert sheet.shape[0] > np.asarray(Image.open(uncaptioned)).shape[0]  # room for captions
    frames = [tuple(sheet[0, 68 * c]) for c in range(16)]
    assert frames[0] in (GREEN, RED) and frames[1] == GREY and frames[2] in (GREEN, RED)
    assert frames[3:] == [(128, 128, 128)] * 13  # three cells, no more


def test_eval_reads_prompts_and_seeds_from_jsonl(tiny_sd1_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a red circle", "seed": 7}\n{"prompt": "a blue square"}\n')
    assert main(["eval", "--model", str(tiny_sd1_dir), "--out", str(tmp_path / "out"),
                 "--prompts", str(prompts), "--steps", "1"]) == 0
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert [(e["text"], e["seed"]) for e in report["prompts"]] == [
        ("a red circle", 7), ("a blue square", stable_seed(0, None, 1))]


def test_eval_prompts_file_errors_name_the_file_and_line(tiny_sd1_dir, tmp_path, capsys):
    run = ["eval", "--model", str(tiny_sd1_dir), "--out", str(tmp_path / "out"), "--prompts"]
    missing = tmp_path / "missing.txt"
    assert main([*run, str(missing)]) == 2
    assert f"--prompts {missing}: no such file" in capsys.readouterr().err
    # the flag's old meaning, a count, is named where the file is missing
    assert main([*run, "256"]) == 2
    assert "(a count of held-out prompts is --num-prompts 256)" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a red circle"}\n{"text": "a blue square"}\n')
    assert main([*run, str(bad)]) == 2
    assert f"{bad} line 2: no \"prompt\" text" in capsys.readouterr().err
    bad.write_text('{"prompt": "a red circle"\n')
    assert main([*run, str(bad)]) == 2
    assert f"{bad} line 1: not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.txt"
    good.write_text("a red circle\n")
    assert main([*run, str(good), "--prompt-set", "tuning"]) == 2
    assert "drop --prompt-set" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_num_prompts_counts_held_out_prompts_and_the_report_names_them(tiny_sd1_dir,
                                                                           tmp_path):
    out = tmp_path / "out"
    assert main(["eval", "--model", str(tiny_sd1_dir), "--out", str(out), "--num-prompts", "2",
                 "--steps", "1", "--no-fd", "--prompt-set", "tuning", "--recall", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    expected = eval_prompts(2, TUNING_SEED_START)
    assert [(e["text"], e["seed"]) for e in report["prompts"]] == [
        (p.text, p.seed) for p in expected]
    assert [e["result"] for e in report["prompts"]] == [
        "pass" if c == "1" else "fail" for c in report["passed"]]
    assert report["counts"]["all"] == 2 and report["prompt_set"] == "tuning"
    # recall beside precision: one prompt of each under-specified kind but the empty prompt,
    # which this model does not take, and the seed rows' sheet
    recall = report["recall"]
    assert recall["per_pattern"] == 1 and recall["images"] == 63
    assert len(recall["families"]) == 63 and "needs a prompt" in recall["left_out"]
    assert all(f["prompts"] == 1 for f in recall["families"].values())
    sheet = Image.open(recall["seed_rows"])
    assert sheet.width == 8 * 68 and sheet.height > 5 * 68  # 8 seeds a row, 5 rows, captions


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
