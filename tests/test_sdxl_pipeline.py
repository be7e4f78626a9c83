"""A manifest mixing SD 1.x-style rows (plain, a negative prompt under diffusers' names, several
images) with SDXL-only settings (prompt_2, micro-conditioning) and image rows (image-to-image,
inpainting) runs end to end on a tiny SDXL model through the CLI, byte-identical on every Beam
runner; records carry prompt_2 and micro-conditioning where a row gave them, and a row with a
field the model cannot use (a refiner's aesthetic_score) is rejected with its reason. (The
modes' parity: tests/test_sdxl_sampling.py, tests/test_sdxl_conditioning.py.)"""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from jaxgen.cli import main
from tests.test_runners import RUNNERS

SIDE = 16
ROWS = [
    {"prompt": "a red circle", "seed": 0},
    {"prompt": "a red circle", "prompt_2": "a blue square", "seed": 1},
    {"prompt": "a green triangle", "negative_prompt": "red", "guidance_scale": 5.0, "seed": 2},
    {"prompt": "a blue square", "seed": 3, "original_size": [64, 64],
     "crops_coords_top_left": [8, 0], "negative_target_size": [8, 8]},
    {"prompt": "a red square", "seed": 4, "init_image": "init.png", "strength": 0.7},
    {"prompt": "a green circle", "seed": 5, "init_image": "init.png", "mask_image": "mask.png",
     "strength": 1.0, "target_size": [32, 32]},
    {"prompt": "a red circle", "seed": 6, "aesthetic_score": 7.0},
    {"prompt": "a blue circle", "seed": 7, "num_images_per_prompt": 2},
]


@pytest.fixture(scope="module")
def outputs(tiny_sdxl_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdxl_runners")
    small = np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8)
    Image.fromarray(small).resize((SIDE, SIDE), Image.BILINEAR).save(tmp / "init.png")
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[4:12, 2:10] = 255
    Image.fromarray(mask, "L").save(tmp / "mask.png")
    manifest = tmp / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    outs = {}
    for name, flags in RUNNERS.items():
        outs[name] = tmp / name
        assert main(["generate", "--manifest", str(manifest), "--out", str(outs[name]),
                     "--model", str(tiny_sdxl_dir), "--steps", "2", "--sampler", "euler",
                     "--height", str(SIDE), "--width", str(SIDE), "--shard-size", "8",
                     "--no-progress", "--", *flags]) == 0
    return outs


@pytest.fixture(scope="module")
def records(outputs):
    with tarfile.open(outputs["in_memory"] / "00000.tar") as tar:
        jsons = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers()
                 if m.name.endswith(".json")]
        images = [np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())))
                  for m in tar.getmembers() if m.name.endswith(".png")]
    assert len(images) == len(jsons) == 8  # 7 rows, one with two images
    assert all(i.shape == (SIDE, SIDE, 3) and i.std() > 0 for i in images)
    return {(r["seed"], r["image_index"]): r for r in jsons}


@pytest.mark.parametrize("runner", ["multi_processing", "portable"])
def test_sdxl_shards_are_byte_identical_across_runners(outputs, runner):
    files = sorted(p.name for p in outputs["in_memory"].iterdir()
                   if p.suffix in (".tar", ".parquet"))
    assert files == ["00000.parquet", "00000.tar"]
    for name in files:
        assert (outputs[runner] / name).read_bytes() == \
            (outputs["in_memory"] / name).read_bytes()


def test_records_carry_prompt_2_only_where_the_row_gave_one(records):
    assert records[(1, 0)]["prompt_2"] == "a blue square"
    assert "prompt_2" not in records[(0, 0)]


def test_records_carry_the_micro_conditioning_the_row_gave(records):
    assert records[(3, 0)]["original_size"] == [64, 64]
    assert records[(3, 0)]["crops_coords_top_left"] == [8, 0]
    assert records[(3, 0)]["negative_target_size"] == [8, 8]
    assert "target_size" not in records[(3, 0)]
    assert records[(5, 0)]["target_size"] == [32, 32] and "mask_image" in records[(5, 0)]
    assert "init_image" in records[(4, 0)] and "original_size" not in records[(4, 0)]
    assert records[(2, 0)]["guidance"] == 5.0 and records[(7, 1)]["num_images"] == 2


def test_a_field_the_model_cannot_use_is_rejected_with_its_reason(outputs):
    lines = [json.loads(line) for f in sorted((outputs["in_memory"] / "_rejects").iterdir())
             for line in f.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in lines] == [(7, "aesthetic_score")]
    assert "takes no aesthetic score" in lines[0]["reason"]
