"""benchmarks/bench_augment.py runs end to end in a tiny version: one shot, one seed, the default
model at two sampler steps, a few classifier steps. Structure only: its accuracies say nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_augment  # noqa: E402
from jaxgen.shapes import SHAPES, analyse  # noqa: E402


def test_real_sets_are_balanced_one_object_scenes_of_their_class():
    found = bench_augment.scenes_by_class(bench_augment.REAL_SEED_START, 2)
    assert sorted(found) == sorted(SHAPES) and all(len(v) == 2 for v in found.values())
    for shape, images in found.items():
        assert all([o.shape for o in analyse(im).objects] == [shape] for im in images)


def test_standard_augmentation_keeps_the_image_range_and_size():
    import jax

    image = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    out = np.asarray(bench_augment.standard_augment(jax.random.key(0), image))
    assert out.shape == image.shape and 0.0 <= out.min() <= out.max() <= 1.0
    assert not np.allclose(out, image)


def test_the_classifier_sees_no_background_colour():
    """Each image less its border's median: a plain image of any colour gives the same
    logits, and an object on it does not."""
    import jax

    plain = np.ones((3, 64, 64, 3), np.float32) * np.array([[0.1], [0.5], [0.9]])[:, :, None, None]
    params = bench_augment.MODEL.init(jax.random.key(0), plain[:1])
    logits = np.asarray(bench_augment.MODEL.apply(params, plain))
    np.testing.assert_allclose(logits[1:], logits[:1].repeat(2, 0), atol=1e-6)
    plain[0, 20:30, 20:30] = 1.0
    assert not np.allclose(bench_augment.MODEL.apply(params, plain[:1]), logits[:1])


def test_a_tiny_run_writes_every_cell_fidelity_json_and_plot(tmp_path):
    result = bench_augment.main([
        "--shots", "1", "--seeds", "1", "--steps", "2", "--variants", "1",
        "--strengths", "0.5", "--train-steps", "3", "--test-size", "6",
        "--out", str(tmp_path / "work"), "--json", str(tmp_path / "r.json"),
        "--plot", str(tmp_path / "r.png")])
    assert result["arms"] == ["standard", "img2img@0.5", "img2img@0.5+filter", "text2img",
                              "text2img+filter"]
    cells = result["accuracy"]["1"]
    assert set(cells) == set(result["arms"])
    assert all(len(c["per_seed"]) == 1 and 0 <= c["mean"] <= 100 for c in cells.values())
    assert cells["img2img@0.5"]["synthetic_images"] == len(SHAPES)  # one per real image
    assert set(result["fidelity"]) == {"img2img@0.5", "text2img"}
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["seeds"] == 1
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "| standard |" in bench_augment.table(result)
