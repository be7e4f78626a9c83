"""benchmarks/bench_img2img.py times text-to-image, image-to-image per strength and diffusers'
image-to-image in one run.

Structure and sanity only: timings on a shared 2-core machine say nothing in a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_img2img  # noqa: E402


def test_steps_run_follow_diffusers_get_timesteps():
    assert [bench_img2img.steps_run(25, s) for s in (None, 0.25, 0.5, 0.75, 1.0)] == [
        25, 6, 12, 18, 25]


def test_bench_img2img_has_a_row_per_case_and_strength(tiny_sd1_dir, capsys):
    # The shapes of tests/test_compare.py's programs: the compile cache serves both.
    rows = bench_img2img.main(["--model", str(tiny_sd1_dir), "--steps", "3", "--sampler", "ddim",
                               "--strengths", "0.5,1.0", "--images", "2", "--batch", "8",
                               "--rounds", "1"])
    assert [(r["case"], r["strength"], r["steps run"]) for r in rows] == [
        ("text-to-image", None, 3), ("jaxgen image-to-image", 0.5, 1),
        ("jaxgen image-to-image", 1.0, 3), ("diffusers image-to-image", 0.5, 1),
        ("diffusers image-to-image", 1.0, 3)]
    assert all(r["img/s"] > 0 for r in rows) and rows[0]["x text-to-image"] == 1
    assert "| jaxgen image-to-image | 0.5 | 1 |" in capsys.readouterr().out
