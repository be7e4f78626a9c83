"""benchmarks/bench_unet_step.py times a UNet variant's train step and attributes its ops to blocks.

Structure and sanity only: timings on a shared 2-core machine say nothing in a test.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_unet_step  # noqa: E402


def test_op_blocks_follows_metadata_into_fused_computations():
    hlo = "\n".join([
        "%fused_computation.3 (param_0: f32[2]) -> f32[2] {",
        '  ROOT %c = f32[2] convolution(%p), metadata={op_name="jit(step)/UNet2DConditionModel'
        '/up_blocks_1/resnets_0/conv1/conv_general_dilated"}',
        "}",
        "ENTRY %main {",
        "  %ynn_fusion.3 = f32[2] fusion(%x), kind=kCustom, calls=%fused_computation.3",
        '  %add.1 = f32[2] add(%a, %b), metadata={op_name="jit(step)/AutoencoderKL.encode)/x"}',
        "  %all-reduce.2 = f32[2] all-reduce(%g)",
        "}",
    ])
    blocks = bench_unet_step.op_blocks(hlo)
    assert blocks["ynn_fusion.3"] == "up_blocks_1"
    assert blocks["add.1"] == "AutoencoderKL"
    assert blocks["all-reduce.2"].startswith("unattributed")


def test_bench_unet_step_times_a_variant_and_profiles_it(capsys, tiny_sd2_dir):
    bench_unet_step.main(["--model", str(tiny_sd2_dir), "--batch", "2", "--rounds", "1",
                          "--profile", '{"attention_head_dim": 1}'])
    out = capsys.readouterr().out
    line = re.search(r"UNet params, ([\d.]+) GFLOP/step, ([\d.]+) s/step", out)
    assert line and float(line.group(1)) > 0 and float(line.group(2)) > 0
    shares = dict((name.strip(), float(ms)) for ms, name in
                  re.findall(r"^\s+([\d.]+)\s+(\S.*)$", out, flags=re.M))
    assert any(name.startswith(("down_blocks", "up_blocks")) and ms > 0
               for name, ms in shares.items()), out
