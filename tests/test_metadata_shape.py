"""User metadata has one shape in every output format: a JSON string, which HF `datasets`
and pyarrow read back the same way, even when rows carry different metadata keys."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig
from tests.fake_generator import FakeSpec

ROWS = [
    {"id": "a", "prompt": "a red circle", "seed": 1, "metadata": {"label": 1}},
    {"id": "b", "prompt": "a blue square", "seed": 2, "metadata": {"source": "web", "n": [1, 2]}},
    {"id": "c", "prompt": "a green star", "seed": 3},
]
EXPECTED = {"a": {"label": 1}, "b": {"n": [1, 2], "source": "web"}, "c": {}}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("shape")
    manifest = tmp / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    outs = {}
    for fmt in ("webdataset", "parquet", "imagefolder"):
        config = JobConfig(manifest=str(manifest), output=str(tmp / fmt), output_format=fmt,
                           defaults={"height": 16, "width": 16, "steps": 2})
        run_pipeline(config, FakeSpec())
        outs[fmt] = tmp / fmt
    return outs


def _hf(fmt: str, out: Path, cache: Path):
    import datasets

    if fmt == "imagefolder":
        return datasets.load_dataset("imagefolder", data_dir=str(out), split="train",
                                     cache_dir=str(cache))
    ext = "tar" if fmt == "webdataset" else "parquet"
    files = sorted(str(p) for p in out.glob(f"*.{ext}"))
    return datasets.load_dataset(fmt, data_files={"train": files}, split="train",
                                 cache_dir=str(cache))


@pytest.mark.parametrize("fmt", ["webdataset", "parquet", "imagefolder"])
def test_hf_datasets_reads_metadata_back_whole_in_every_format(outputs, fmt, tmp_path):
    ds = _hf(fmt, outputs[fmt], tmp_path)
    records = ds["json"] if fmt == "webdataset" else ds.to_list()
    got = {r["id"]: r["metadata"] for r in records}
    assert all(isinstance(m, str) for m in got.values()), got  # one column type
    assert {k: json.loads(m) for k, m in got.items()} == EXPECTED


def test_pyarrow_reads_the_same_metadata_from_parquet_and_webdataset(outputs):
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(outputs["parquet"].glob("*.parquet"))[0],
                          columns=["id", "metadata"]).to_pylist()
    with tarfile.open(outputs["webdataset"] / "00000.tar") as tar:
        records = [json.load(tar.extractfile(m)) for m in tar if m.name.endswith(".json")]
    assert {r["id"]: r["metadata"] for r in records} == {r["id"]: r["metadata"] for r in table}
