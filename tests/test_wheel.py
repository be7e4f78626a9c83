"""An installed wheel works from any directory: its recipes, runner profiles and default model
travel inside the package, not beside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from a copy of this checkout (no stale build/ folder can leak into it),
    unpacked alone into a folder of its own."""
    source = tmp_path_factory.mktemp("source") / "jaxgen"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "out", "runs", "*.egg-info", "__pycache__", ".*_cache"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(source)], check=True, capture_output=True)
    (wheel,) = dist.glob("jaxgen-*.whl")
    target = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(target)
    return target


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # The unpacked wheel comes first on the path, ahead of the checkout's editable install.
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "jaxgen.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_wheel_carries_its_configs_and_default_model(installed):
    names = {p.relative_to(installed).as_posix() for p in installed.rglob("*") if p.is_file()}
    assert "jaxgen/configs/runners/local.yaml" in names
    assert "jaxgen/configs/train/shapes.yaml" in names
    assert "jaxgen/assets/default-model/unet/diffusion_pytorch_model.safetensors" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "research/", "scripts/"))
                   for n in names)


def test_installed_wheel_generates_with_a_runner_profile_from_elsewhere(installed, tmp_path):
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(json.dumps({"id": "a", "prompt": "a red circle", "seed": 1}) + "\n")
    result = _run(installed, tmp_path, "generate", "--manifest", str(manifest), "--out",
                  str(tmp_path / "out"), "--runner-profile", "local", "--steps", "2",
                  "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    imported = _run(installed, tmp_path, "info")
    assert str(installed) in imported.stdout, imported.stdout  # the wheel's model, not the repo's
    summary = json.loads((tmp_path / "out" / "_dataset.json").read_text())
    assert summary["counts"]["rows_generated"] == 1


def test_installed_wheel_explains_training_from_elsewhere(installed, tmp_path):
    result = _run(installed, tmp_path, "train", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--recipe" in result.stdout and "--set" in result.stdout
