"""One seed rule: a row or request without a seed gets the same seed on every path, every run.

The pinned numbers are the seeds jaxgen has always derived; a change to any of them changes
every image of every dataset made without explicit seeds.
"""

from __future__ import annotations

import json

import jax
import pyarrow.parquet as pq
import pytest

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig
from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import GenerationRequest
from jaxgen.weights.model_dir import load_model
from tests.fake_generator import FakeSpec

SIZE = dict(height=16, width=16, steps=2)
# (job seed, request without a seed) -> the seed the Generator gives it.
GENERATOR_SEEDS = [
    (0, GenerationRequest("a red circle", **SIZE), 3150183409964514504),
    (7, GenerationRequest("a red circle", **SIZE), 2047566017875617435),
    (0, GenerationRequest("a red circle", "blurry", guidance=3.0, **SIZE), 5867226159822198147),
    (0, GenerationRequest("a red circle", id="row-1", **SIZE), 3140944886413496608),
    (7, GenerationRequest("a blue square", id="row-1", **SIZE), 9157808076433027766),
]
# Manifest rows with job seed 7 -> the seeds the Beam plan gives them (by row, in order).
PLAN_ROWS = [
    {"prompt": "a red circle"},
    {"prompt": "a blue square", "id": "row-1"},
    {"prompt": "a green triangle", "seed": 42},
    {"prompt": "a red circle"},
    {"prompt": "a cat", "id": 12},
]
PLAN_SEEDS = [2030542585994654855, 9157808076433027766, 42, 5583879172392209328,
              2049155657941198757]


@pytest.fixture(scope="module")
def model(tiny_sd1_dir):
    return load_model(tiny_sd1_dir)


@pytest.mark.parametrize("job_seed,request_,seed", GENERATOR_SEEDS)
def test_generator_derives_the_pinned_seed(model, job_seed, request_, seed):
    gen = Generator(model, mesh=make_mesh(devices=jax.local_devices()[:1]), job_seed=job_seed,
                    compilation_cache=False)
    assert gen.prepare(request_).seed == seed


@pytest.fixture(scope="module")
def plan_seeds(tmp_path_factory: pytest.TempPathFactory) -> list[int]:
    """The seeds of PLAN_ROWS's records, from a real pipeline run with job seed 7."""
    tmp = tmp_path_factory.mktemp("plan")
    manifest = tmp / "m.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in PLAN_ROWS))
    config = JobConfig(manifest=str(manifest), output=str(tmp / "out"), job_seed=7,
                       output_format="parquet", defaults=SIZE)
    run_pipeline(config, FakeSpec())
    table = pq.read_table(tmp / "out" / "00000.parquet", columns=["prompt", "seed"])
    assert table.column("prompt").to_pylist() == [row["prompt"] for row in PLAN_ROWS]
    return table.column("seed").to_pylist()


def test_beam_plan_derives_the_pinned_seeds(plan_seeds: list[int]):
    assert plan_seeds == PLAN_SEEDS


def test_a_row_id_gives_the_same_seed_in_the_generator_and_the_beam_plan(model, plan_seeds):
    gen = Generator(model, mesh=make_mesh(devices=jax.local_devices()[:1]), job_seed=7,
                    compilation_cache=False)
    request = GenerationRequest(PLAN_ROWS[1]["prompt"], id=PLAN_ROWS[1]["id"], **SIZE)
    assert gen.prepare(request).seed == plan_seeds[1]
