"""benchmarks/bench_train.py runs both training systems on a tiny model and reports every figure.

Structure and sanity only: timings on a shared 2-core machine say nothing in a test.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_train  # noqa: E402
from benchmarks.harness.flops import unet_flops  # noqa: E402
from jaxgen.models import UNetConfig  # noqa: E402

SUMMARY_KEYS = {"median_s_per_step", "best_s_per_step", "worst_s_per_step", "images_per_s",
                "flops_per_s", "of_peak", "stage2_minutes"}


def test_bench_train_reports_both_systems(tmp_path, capsys, tiny_sd2_dir):
    out = tmp_path / "bench-train.json"
    batch = 2
    bench_train.main(["--model", str(tiny_sd2_dir), "--batch", str(batch), "--steps", "1",
                      "--rounds", "2", "--distinct", "1", "--threads", "1",
                      "--host-devices", "1", "2", "--precision", "float32",
                      "--peak-repeats", "2", "--peak-side", "256", "--out", str(out)])
    report = json.loads(out.read_text())
    # (bfloat16 systems are the same code at another precision: tests/test_train.py checks
    # bfloat16 training; one precision keeps this test's time down.)
    assert set(report["systems"]) == {"train_jaxgen_1dev", "train_jaxgen_2dev", "train_diffusers"}
    for system in report["systems"].values():
        assert len(system["runs"]) == 2
        assert SUMMARY_KEYS <= set(system["summary"])
        assert system["peak_rss_mb"] > 0
        assert all(math.isfinite(r["loss"]) for r in system["runs"])
    # the batch split over two devices is the same step: same losses up to float rounding
    one, two = (report["systems"][f"train_jaxgen_{n}dev"]["runs"] for n in (1, 2))
    for a, b in zip(one, two, strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4)
    for precision in ("float32", "bfloat16"):
        assert report["peak_flops_per_s"][precision] > 0
        assert report["torch_matmul"][precision]["flops_per_s"] > 0
    # XLA's count covers the backward pass: one step is ~3 UNet forwards (forward, and the
    # gradients of activations and of weights), plus the frozen encoders' forwards.
    raw = json.loads((Path(tiny_sd2_dir) / "unet" / "config.json").read_text())
    shapes = report["systems"]["train_jaxgen_1dev"]["prepare"]
    side = shapes["latent_side"]
    forward = batch * unet_flops(UNetConfig.from_dict(raw, "unet"), side, side,
                                 shapes["text_len"])
    assert 2.5 < report["flops_per_step"] / forward < 5
    printed = capsys.readouterr().out
    assert "| jaxgen, 2 XLA devices |" in printed and "| diffusers, torch 1 thread |" in printed
