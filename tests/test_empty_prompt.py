"""An empty prompt is a request for a model that says it takes one (jaxgen.json "empty_prompt":
true, a model trained with caption dropout): it draws from the unconditional branch, in one
UNet pass per step; rows may leave the prompt out. Any other model refuses it, naming why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig
from jaxgen.engine.generator import Generator
from jaxgen.engine.grouping import SamplingSpec
from jaxgen.engine.sharding import make_mesh
from jaxgen.engine.spec import GeneratorSpec
from jaxgen.requests import GenerationRequest, RequestError
from jaxgen.weights.model_dir import load_model, takes_empty_prompt
from tests.fake_generator import FakeSpec


@pytest.fixture(scope="module")
def unconditional_dir(tiny_sd1_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uncond") / "tiny-sd1-dropout"
    shutil.copytree(tiny_sd1_dir, out)
    (out / "jaxgen.json").write_text(json.dumps({"empty_prompt": True}))
    return out


def test_the_model_directory_says_whether_it_takes_an_empty_prompt(tiny_sd1_dir,
                                                                   unconditional_dir):
    assert takes_empty_prompt(unconditional_dir) and not takes_empty_prompt(tiny_sd1_dir)
    assert GeneratorSpec(str(unconditional_dir)).empty_prompt()
    assert takes_empty_prompt(Path(__file__).parents[1] / "jaxgen/assets/default-model")


def test_an_empty_prompt_is_one_unet_pass_whatever_the_guidance():
    assert SamplingSpec.of(GenerationRequest("", guidance=7.5)).guided is False
    assert SamplingSpec.of(GenerationRequest("a red circle", guidance=7.5)).guided is True


def test_a_model_that_takes_it_draws_an_empty_prompt_and_another_refuses(tiny_sd1_dir,
                                                                         unconditional_dir):
    request = GenerationRequest("", seed=1, steps=2, height=16, width=16)
    mesh = make_mesh(devices=jax.devices()[:1])
    gen = Generator(load_model(unconditional_dir), mesh=mesh, compilation_cache=False)
    [result] = gen.generate([request])
    assert result.image.shape == (16, 16, 3) and np.asarray(result.image).std() > 0
    refusing = Generator(load_model(tiny_sd1_dir), mesh=mesh, compilation_cache=False)
    with pytest.raises(RequestError, match="prompt '': is empty; this model needs a prompt"):
        list(refusing.generate([request]))


@pytest.mark.parametrize("empty_prompt", [True, False])
def test_rows_without_a_prompt_are_generated_only_for_such_a_model(tmp_path, empty_prompt):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "prompt": "a red circle"}\n{"id": "b"}\n'
                        '{"id": "c", "prompt": ""}\n')
    config = JobConfig(manifest=str(manifest), output=str(tmp_path / "out"), shard_size=10,
                       defaults={"height": 8, "width": 8, "steps": 2})
    # The job learns it from the model (the spec), as it learns its size multiple.
    counts = run_pipeline(config, FakeSpec(takes_empty_prompt=empty_prompt))["counts"]
    assert (counts["rows_generated"], counts["rows_rejected"]) == ((3, 0) if empty_prompt
                                                                   else (1, 2))
    if not empty_prompt:
        rejects = [json.loads(line) for line in (tmp_path / "out/_rejects/00000.jsonl").open()]
        assert [r["field"] for r in rejects] == ["prompt", "prompt"]
        assert "does not take an empty one" in rejects[0]["reason"]
