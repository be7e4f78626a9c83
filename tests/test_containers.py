"""The worker images are built with the Beam and Python versions the launcher resolves: a
Dataflow worker with another Beam (or Python) than the launcher cannot unpickle its work."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "configs" / "containers").glob("*.Dockerfile"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _arg(dockerfile: Path, name: str) -> str:
    found = re.findall(rf"^ARG {name}=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert len(found) == 1, f"{dockerfile.name}: expected one `ARG {name}=...`"
    return found[0]


def _requirement(package: str) -> SpecifierSet:
    for dep in PYPROJECT["dependencies"]:
        if re.match(rf"{package}\b", dep):
            return SpecifierSet(dep[len(package):].split(";")[0].strip())
    raise AssertionError(f"pyproject.toml does not depend on {package}")


def test_there_are_worker_images():
    assert {p.name for p in DOCKERFILES} >= {"gpu.Dockerfile", "tpu.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_beam_version_is_the_one_installed(dockerfile):
    beam = _arg(dockerfile, "BEAM")
    assert beam == metadata.version("apache-beam"), (
        f"{dockerfile.name} builds Beam {beam}; the launcher resolves "
        f"{metadata.version('apache-beam')}")
    assert Version(beam) in _requirement("apache-beam")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_python_version_is_one_pyproject_allows(dockerfile):
    py = _arg(dockerfile, "PY")
    assert Version(py) in SpecifierSet(PYPROJECT["requires-python"])
    # The README promises the lowest supported Python; the images use that one.
    minimum = re.search(r">=\s*(\d+\.\d+)", PYPROJECT["requires-python"]).group(1)
    assert py == minimum


def test_all_images_agree():
    assert len({(_arg(p, "PY"), _arg(p, "BEAM")) for p in DOCKERFILES}) == 1
