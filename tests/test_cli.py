"""`jaxgen` commands end to end on a real (tiny) model: no fake generator here."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from PIL import Image

from jaxgen.cli import main

ROWS = [
    {"id": "a", "prompt": "a red circle", "seed": 1},
    {"id": "b", "prompt": "a blue square", "seed": 2, "num_images": 2, "guidance": 3.0},
    {"id": "c", "prompt": "a green triangle", "height": 20},  # not a multiple of 8
    {"prompt": "a cat", "metadata": {"split": "train"}},
]


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_generate_writes_a_webdataset_shard_from_a_real_model(tiny_sd1_dir, manifest, tmp_path):
    out = tmp_path / "ds"
    code = main(["generate", "--manifest", str(manifest), "--out", str(out), "--model",
                 str(tiny_sd1_dir), "--steps", "3", "--batch-size", "8", "--no-progress"])
    assert code == 0
    summary = json.loads((out / "_dataset.json").read_text())
    assert summary["counts"]["rows_read"] == 4
    assert summary["counts"]["rows_generated"] == 3
    assert summary["counts"]["rows_rejected"] == 1
    with tarfile.open(out / "00000.tar") as tar:
        pngs = [m for m in tar.getmembers() if m.name.endswith(".png")]
        assert len(pngs) == 4  # a, b_0, b_1, the unnamed row
        image = Image.open(io.BytesIO(tar.extractfile(pngs[0]).read()))
        assert image.size == (16, 16)  # the model's native size
        assert "Steps: 3" in image.info["parameters"]
    rejects = (out / "_rejects").glob("*.jsonl")
    reasons = [json.loads(line)["reason"] for f in rejects for line in f.read_text().splitlines()]
    assert len(reasons) == 1 and "height 20" in reasons[0]


def test_rerunning_a_finished_job_generates_nothing(tiny_sd1_dir, manifest, tmp_path, capsys):
    args = ["generate", "--manifest", str(manifest), "--out", str(tmp_path / "ds"), "--model",
            str(tiny_sd1_dir), "--steps", "2", "--no-progress"]
    assert main(args) == 0
    first = (tmp_path / "ds" / "00000.tar").read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    assert "0 written now, 1 already complete" in capsys.readouterr().out
    assert (tmp_path / "ds" / "00000.tar").read_bytes() == first


def test_dry_run_plans_without_generating(manifest, tmp_path, tiny_sd1_dir):
    out = tmp_path / "plan"
    assert main(["generate", "--manifest", str(manifest), "--out", str(out), "--model",
                 str(tiny_sd1_dir), "--dry-run"]) == 0
    assert not list(out.glob("*.tar"))
    assert json.loads((out / "_plan.json").read_text())["counts"]["rows_rejected"] == 1


def test_bad_model_path_stops_at_once_with_a_message(manifest, tmp_path, capsys):
    code = main(["generate", "--manifest", str(manifest), "--out", str(tmp_path / "x"),
                 "--model", str(tmp_path / "no-such-model")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "never downloads" in err
    assert not (tmp_path / "x").exists()


def test_batch_size_that_does_not_fit_the_devices_stops_before_the_pipeline(
        tiny_sd1_dir, manifest, tmp_path, capsys):
    code = main(["generate", "--manifest", str(manifest), "--out", str(tmp_path / "x"),
                 "--model", str(tiny_sd1_dir), "--batch-size", "4"])
    assert code == 2
    assert "batch_size 4: must be a positive multiple" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_info_and_preview(tiny_sd1_dir, tmp_path, capsys):
    assert main(["info", "--model", str(tiny_sd1_dir)]) == 0
    assert "native size: 16px" in capsys.readouterr().out
    out = tmp_path / "p.png"
    assert main(["preview", "a red circle", "--model", str(tiny_sd1_dir), "--steps", "2",
                 "--out", str(out)]) == 0
    assert Image.open(out).size == (16, 16)


def test_entry_points_use_one_cpu_device_per_core():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = ("from jaxgen.engine.sharding import use_all_cpu_cores; use_all_cpu_cores(); "
            "import jax; print(jax.local_device_count())")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                         text=True).stdout
    assert int(out) == min(os.cpu_count(), 8)
    pinned = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True, env={**env, "XLA_FLAGS":
                                            "--xla_force_host_platform_device_count=3"}).stdout
    assert int(pinned) == 3  # an explicit XLA_FLAGS count wins
