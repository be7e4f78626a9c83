"""One chain of defaults: built-in < the model's recommended settings < job YAML < flags <
row, the same however the model is named; --help shows it; the Python API follows it."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from jaxgen.cli import main
from jaxgen.default_model import PACKAGED


def _defaults(tmp_path: Path, name: str, *flags: str) -> dict:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"prompt": "a red circle"}) + "\n")
    out = tmp_path / name
    assert main(["generate", "--manifest", str(manifest), "--out", str(out), "--dry-run",
                 *flags]) == 0
    return json.loads((out / "_plan.json").read_text())["config"]["defaults"]


def test_naming_the_default_model_by_its_path_gives_the_same_defaults(tmp_path):
    unnamed = _defaults(tmp_path, "unnamed")
    assert unnamed == {"guidance": 2.5, "height": 64, "sampler": "dpmpp_2m", "steps": 25,
                       "width": 64}
    assert _defaults(tmp_path, "by-path", "--model", str(PACKAGED)) == unnamed


def test_job_yaml_over_the_model_and_flags_over_the_job_yaml(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("defaults:\n  guidance: 4.0\n  steps: 10\n")
    got = _defaults(tmp_path, "chain", "--job-config", str(job), "--steps", "12")
    assert (got["guidance"], got["steps"], got["sampler"]) == (4.0, 12, "dpmpp_2m")


def test_help_shows_every_default_and_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "{ddim,dpmpp_2m,dpmpp_2m_karras,euler,euler_ancestral,ddpm}" in text
    assert "{webdataset,parquet,imagefolder}" in text and "{png,webp,jpeg}" in text
    for shown in ("(default: webdataset)", "(default: png)", "(default: 10000)",
                  "(default: reject)", "built-in: 7.5", "built-in: 25"):
        assert shown in text
    assert "built-in defaults < the model's recommended settings" in text
    assert "< the job YAML (--job-config) < these flags < the manifest row's own fields" in text


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxgen {metadata.version('jaxgen')}"


def test_a_model_in_the_hf_cache_is_known_by_its_repo_id(tmp_path, capsys):
    snapshot = tmp_path / "hub" / "models--shapes-lab--tiny-shapes" / "snapshots" / "0a1b2c3d"
    shutil.copytree(PACKAGED, snapshot)
    assert main(["info", "--model", str(snapshot)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model: shapes-lab/tiny-shapes (hash ")
    assert f"  at {snapshot.resolve()}\n" in out
    assert "recommended: guidance 2.5, sampler dpmpp_2m, steps 25" in out
    # Its recommended settings travel with it, as for the packaged directory.
    assert _defaults(tmp_path, "cached", "--model", str(snapshot))["guidance"] == 2.5


def test_the_python_example_draws_what_the_prompt_asks():
    import jaxgen

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native size: no warning
        (image,) = jaxgen.generate("a large red circle in the center on a blue background",
                                   seed=1)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    center = image[24:40, 24:40].reshape(-1, 3).mean(0)
    corners = np.concatenate([image[:6, :6], image[-6:, -6:]]).reshape(-1, 3).mean(0)
    assert center[0] > 150 and center[2] < 100, center  # red
    assert corners[2] > 150 and corners[0] < 100, corners  # blue


def test_a_size_far_from_the_native_one_warns():
    import jaxgen
    from jaxgen.requests import RequestError

    # 16px: a quarter of the native side, and (cheaply) refused after the warning.
    with pytest.warns(UserWarning, match="16x16 is far from this model's native 64x64"), \
            pytest.raises(RequestError, match="height 16"):
        jaxgen.generate("a red circle", seed=1, height=16, width=16, num_inference_steps=1)


def test_the_generator_warns_far_from_native_too():
    from jaxgen.default_model import default_model_path
    from jaxgen.engine.generator import Generator
    from jaxgen.requests import GenerationRequest, RequestError

    gen = Generator.from_pretrained(default_model_path(), compilation_cache=False)
    request = GenerationRequest("a red circle", seed=1, height=16, width=16, steps=1)
    with pytest.warns(UserWarning, match="16x16 is far from this model's native 64x64"), \
            pytest.raises(RequestError, match="height 16"):
        list(gen.generate([request]))
