"""benchmarks/bench_sdxl.py times jaxgen and diffusers' StableDiffusionXLPipeline on the same
SDXL-style model in one run. Structure and sanity only: timings on a shared 2-core machine
say nothing in a test."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_sdxl  # noqa: E402
from benchmarks.harness import sdxl  # noqa: E402


def test_bench_sdxl_reports_both_systems_and_their_ratio(tmp_path):
    out = tmp_path / "sdxl.json"
    result = bench_sdxl.main(["--cases", "tiny", "--size", "16", "--steps", "1", "--images",
                              "2", "--batch", "2", "--rounds", "1", "--root", str(tmp_path),
                              "--json", str(out)])
    (row,) = result["cases"]
    assert row["case"] == "tiny" and row["jaxgen_img_s"] > 0 and row["diffusers_img_s"] > 0
    assert abs(row["ratio"] - row["jaxgen_img_s"] / row["diffusers_img_s"]) < 1e-9
    assert set(row["params"]) == {"unet", "vae", "text_encoder", "text_encoder_2"}
    assert json.loads(out.read_text()) == result


def test_base_case_is_sdxl_base_unet_layout():
    unet = sdxl.unet_config("base")
    assert unet["block_out_channels"] == (320, 640, 1280)
    assert unet["transformer_layers_per_block"] == (1, 2, 10)
    assert unet["projection_class_embeddings_input_dim"] == 1280 + 6 * 256
    assert bench_sdxl.DEVICES["gpu"][1] == {"base": 1024}
