"""The watermark as a generation setting: off by default (images untouched, no record key);
on, each image at least 256 px wide is the unmarked image through embed_watermark, and its
record and the job record say so: `--watermark` -> GeneratorSpec -> Generator -> record."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgen.cli import main
from jaxgen.dataset.records import ImageRecord
from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.engine.spec import GeneratorSpec
from jaxgen.engine.watermark import SDXL_WATERMARK, embed_watermark
from jaxgen.requests import GenerationRequest
from jaxgen.weights.model_dir import load_model

SIDE = 256  # the smallest width the watermark takes


@pytest.fixture(scope="module")
def generator(tiny_sdxl_dir):
    return Generator(load_model(tiny_sdxl_dir), batch_size=1, compilation_cache=False,
                     mesh=make_mesh(devices=jax.local_devices()[:1]))


def test_watermark_is_applied_after_decode_only_when_asked(generator):
    request = GenerationRequest("a red circle", seed=0, steps=1, height=SIDE, width=SIDE)
    assert not generator.watermark
    plain = next(iter(generator.generate([request])))
    assert plain.watermark is None
    generator.watermark = True
    try:
        marked = next(iter(generator.generate([request])))
    finally:
        generator.watermark = False
    assert marked.watermark == SDXL_WATERMARK
    np.testing.assert_array_equal(marked.image, embed_watermark(plain.image))
    assert not np.array_equal(marked.image, plain.image)
    assert generator.compiled_programs == 1  # the mark costs no program of its own


def test_the_setting_reaches_the_generator_the_job_record_and_each_record(tiny_sdxl_dir,
                                                                          capsys):
    spec = GeneratorSpec(model=str(tiny_sdxl_dir), watermark=True)
    assert spec.job_record()["watermark"] == SDXL_WATERMARK
    assert "watermark" not in GeneratorSpec(model=str(tiny_sdxl_dir)).job_record()
    assert spec.build().watermark
    fields = dict(key="k", id="k", prompt="p", negative_prompt="", seed=0, image_index=0,
                  num_images=1, steps=1, guidance=7.5, sampler="euler", width=SIDE,
                  height=SIDE, model_name="m", model_hash="h", jaxgen_version="0",
                  metadata={})
    assert ImageRecord(**fields, watermark=SDXL_WATERMARK).to_json()["watermark"] == \
        SDXL_WATERMARK
    assert "watermark" not in ImageRecord(**fields).to_json()
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "--watermark" in capsys.readouterr().out
