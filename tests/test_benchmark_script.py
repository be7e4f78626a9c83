"""benchmarks/benchmark.py runs end to end on a tiny model and writes the report it promises.

Structure only: timings on a shared 2-core machine say nothing in a test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import benchmark  # noqa: E402

ROW_KEYS = {"median_s", "min_s", "max_s", "images_per_s", "images_per_s_best", "loadavg"}
FLOP_KEYS = {"flops_per_image", "xla_unet_flops_per_image_step", "xla_vae_flops_per_image",
             "xla_text_flops_per_image", "xla_program_flops_loop_once",
             "analytic_unet_flops_per_image_step"}


@pytest.mark.parametrize("device_args", [[], ["--device", "gpu", "--dry-run-on-cpu"]])
def test_benchmark_writes_json_with_every_figure(tmp_path, monkeypatch, capsys, device_args):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the tiny model goes here
    out, png = tmp_path / "bench.json", tmp_path / "plot.png"
    benchmark.main([*device_args, "--cases", "tiny", "--batches", "1", "--steps", "1",
                    "--size", "16", "--repeats", "2", "--no-one-thread", "--peak-repeats", "2",
                    "--peak-side", "256",
                    "--out", str(out), "--plot", str(png)])
    report = json.loads(out.read_text())
    assert report["systems"] == ["jaxgen", "diffusers"]
    assert report["peak_flops_per_s"] > 0
    assert report["gpu_figures_measured"] is False  # never claimed from a CPU run
    assert {"date", "cpu", "versions", "loadavg_at_start"} <= set(report["environment"])
    case = report["cases"]["tiny"]
    row = case["batches"]["1"]
    for system in ("jaxgen", "diffusers"):
        assert ROW_KEYS <= set(row[system]["summary"])
        assert len(row[system]["runs"]) == 2
        assert row[system]["unet"]["median_s"] > 0
        assert case["peak_rss_mb"][system] > 0
    assert FLOP_KEYS <= set(row["jaxgen"]["prepare"])
    # XLA's count and the analytic count of the same UNet agree to within padding effects
    prep = row["jaxgen"]["prepare"]
    assert 0.7 < prep["xla_unet_flops_per_image_step"] / \
        prep["analytic_unet_flops_per_image_step"] < 1.3
    assert case["warm_start"]["first_image_s"] > 0
    if device_args:
        assert case["settings"]["dtype"] == "bfloat16"
        assert case["settings"]["attention"] == "cudnn"
    assert "| tiny 16px 1 steps | 1 |" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
