"""A manifest of rows with and without SDXL's prompt_2 (and with and without a negative
prompt) runs end to end on a tiny SDXL model through the CLI, byte-identical on two Beam
runners; the records carry prompt_2 where a row gave one. (The image modes' parity:
tests/test_sdxl_sampling.py.)"""

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


@pytest.fixture(scope="module")
def outputs(tiny_sdxl_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdxl_runners")
    rows = [{"prompt": "a red circle", "seed": 0},
            {"prompt": "a red circle", "prompt_2": "a blue square", "seed": 1},
            {"prompt": "a green triangle", "negative_prompt": "red", "seed": 2},
            {"prompt": "a blue square", "seed": 3}]
    manifest = tmp / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outs = {}
    for name in ("in_memory", "portable"):
        outs[name] = tmp / name
        assert main(["generate", "--manifest", str(manifest), "--out", str(outs[name]),
                     "--model", str(tiny_sdxl_dir), "--steps", "2", "--sampler", "euler",
                     "--height", str(SIDE), "--width", str(SIDE), "--shard-size", "4",
                     "--no-progress", "--", *RUNNERS[name]]) == 0
    return outs


def test_sdxl_shards_are_byte_identical_across_runners(outputs):
    files = sorted(p.name for p in outputs["in_memory"].iterdir()
                   if p.suffix in (".tar", ".parquet"))
    assert files == ["00000.parquet", "00000.tar"]
    for name in files:
        assert (outputs["portable"] / name).read_bytes() == \
            (outputs["in_memory"] / name).read_bytes()


def test_records_carry_prompt_2_only_where_the_row_gave_one(outputs):
    with tarfile.open(outputs["in_memory"] / "00000.tar") as tar:
        records = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers()
                   if m.name.endswith(".json")]
        images = [np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())))
                  for m in tar.getmembers() if m.name.endswith(".png")]
    by_seed = {r["seed"]: r for r in records}
    assert by_seed[1]["prompt_2"] == "a blue square"
    assert "prompt_2" not in by_seed[0]
    assert len(images) == 4 and all(i.shape == (SIDE, SIDE, 3) for i in images)
