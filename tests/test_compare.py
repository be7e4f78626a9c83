"""`jaxgen compare`: jaxgen's images against diffusers' from the same noise, row by row; it
passes on a faithful model, fails naming the image on one whose two sides differ, and skips
bad rows with their reason."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from jaxgen.cli import main

SIDE, STEPS = 16, 3


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Three modes, image paths relative to the manifest, and three rows compare must skip."""
    root = tmp_path_factory.mktemp("compare")
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (4, 4, 3), np.uint8)
    Image.fromarray(small).resize((SIDE, SIDE), Image.BILINEAR).save(root / "init.png")
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[4:12, 2:10] = 255
    Image.fromarray(mask, "L").save(root / "mask.png")
    common = dict(steps=STEPS, sampler="ddim")
    rows = [dict(prompt="a red circle", seed=1, **common),
            dict(prompt="a blue square", seed=2, init_image="init.png", strength=0.7, **common),
            dict(prompt="a green triangle", seed=3, init_image="init.png", mask_image="mask.png",
                 strength=1.0, **common),
            dict(prompt="a red square", seed=4, init_image="missing.png", **common),
            dict(prompt="a red square", seed=5, steps=0),
            dict(prompt="a red square", seed=6, steps=STEPS, sampler="euler_ancestral")]
    path = root / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def compare(model, manifest, tmp_path, *flags: str) -> tuple[int, dict]:
    code = main(["compare", "--model", str(model), "--manifest", str(manifest), "--out",
                 str(tmp_path), *flags])
    return code, json.loads((tmp_path / "compare.json").read_text())


def test_compare_passes_on_every_mode_and_skips_bad_rows_with_their_reason(
        tiny_sd1_dir, manifest, tmp_path, capsys):
    code, report = compare(tiny_sd1_dir, manifest, tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert [(d["row"].rsplit(":", 1)[1], d["mode"]) for d in report["images"]] == [
        ("1", "text-to-image"), ("2", "image-to-image"), ("3", "inpainting")]
    assert all(d["max"] <= 2 for d in report["images"])
    assert [(s["row"].rsplit(":", 1)[1], s["field"]) for s in report["skipped"]] == [
        ("4", "init_image"), ("5", "steps"), ("6", "sampler")]
    assert "missing.png" in report["skipped"][0]["reason"]
    assert "PASSED: 3 images compared, 0 above tolerance 2" in out
    assert "3 rows skipped" in out


def test_compare_fails_naming_the_image_when_the_two_sides_differ(
        tiny_sd1_dir, manifest, tmp_path, monkeypatch, capsys):
    import torch
    from diffusers import UNet2DConditionModel

    from jaxgen.eval import diffusers_peer

    # A copy whose UNet differs, given to the diffusers side only; jaxgen reads the original.
    perturbed = shutil.copytree(tiny_sd1_dir, tmp_path / "perturbed")
    unet = UNet2DConditionModel.from_pretrained(perturbed / "unet")
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    unet.save_pretrained(perturbed / "unet")
    real = diffusers_peer.DiffusersPeer
    monkeypatch.setattr(diffusers_peer, "DiffusersPeer", lambda _: real(perturbed))
    code, report = compare(tiny_sd1_dir, manifest, tmp_path / "out", "--limit", "1")
    out = capsys.readouterr().out
    assert code == 1
    assert report["images"][0]["max"] > 2 and not report["passed"]
    assert f"{manifest}:1 image 0 (text-to-image, seed 1): max" in out
    assert "ABOVE TOLERANCE 2" in out and "FAILED: 1 images compared, 1 above" in out


def test_compare_passes_on_a_9_channel_inpainting_model(tiny_inpainting_dir, manifest, tmp_path):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    inpainting = manifest.with_name("inpainting.jsonl")
    inpainting.write_text(json.dumps(rows[2]) + "\n" + json.dumps({**rows[2], "seed": 7,
                                                                   "strength": 0.6}) + "\n")
    code, report = compare(tiny_inpainting_dir, inpainting, tmp_path)
    assert code == 0
    assert [d["mode"] for d in report["images"]] == ["inpainting"] * 2
    assert all(d["max"] <= 2 for d in report["images"])


def test_without_torch_or_diffusers_compare_names_the_extra_to_install(
        tiny_sd1_dir, manifest, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    assert main(["compare", "--model", str(tiny_sd1_dir), "--manifest", str(manifest)]) == 2
    assert "`test` extra" in capsys.readouterr().err
