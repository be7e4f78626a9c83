"""The same job on three local Beam runners writes byte-identical shards (real tiny model)."""

from __future__ import annotations

import json

import pytest

from jaxgen.cli import main

RUNNERS = {
    "in_memory": ["--runner", "FnApiRunner", "--direct_running_mode", "in_memory"],
    "multi_processing": ["--runner", "FnApiRunner", "--direct_running_mode",
                         "multi_processing", "--direct_num_workers", "2"],
    # Beam's portable runner with its in-process job service: no Java, no network.
    "portable": ["--runner", "PortableRunner", "--job_endpoint", "embed",
                 "--environment_type", "LOOPBACK"],
}


@pytest.fixture(scope="module")
def outputs(tiny_sd1_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runners")
    manifest = tmp / "rows.jsonl"
    manifest.write_text("".join(json.dumps({"prompt": f"a blue square {i}", "seed": i}) + "\n"
                                for i in range(6)) + "{not json\n")
    outs = {}
    for name, flags in RUNNERS.items():
        outs[name] = tmp / name
        assert main(["generate", "--manifest", str(manifest), "--out", str(outs[name]),
                     "--model", str(tiny_sd1_dir), "--steps", "2", "--shard-size", "3",
                     "--no-progress", "--", *flags]) == 0
    return outs


@pytest.mark.parametrize("runner", ["multi_processing", "portable"])
def test_shards_are_byte_identical_across_runners(outputs, runner):
    files = sorted(p.name for p in outputs["in_memory"].iterdir()
                   if p.suffix in (".tar", ".parquet"))
    assert files == ["00000.parquet", "00000.tar", "00001.parquet", "00001.tar",
                     "00002.parquet", "00002.tar"]
    for name in files:
        assert (outputs[runner] / name).read_bytes() == (outputs["in_memory"] / name).read_bytes()
    summary = json.loads((outputs[runner] / "_dataset.json").read_text())
    assert summary["counts"]["rows_read"] == 7 and summary["counts"]["rows_rejected"] == 1


def test_hosts_split_the_shards_and_the_last_one_writes_the_summary(tiny_sd1_dir, outputs,
                                                                     tmp_path, capsys):
    manifest = next(outputs["in_memory"].parent.glob("rows.jsonl"))
    out = tmp_path / "pod"
    base = ["generate", "--manifest", str(manifest), "--out", str(out), "--model",
            str(tiny_sd1_dir), "--steps", "2", "--shard-size", "3", "--no-progress",
            "--host-count", "2"]
    assert main([*base, "--host-index", "1"]) == 0
    assert "host 1 of 2: wrote 1 shards" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.tar")) == ["00001.tar"]
    assert not (out / "_dataset.json").exists()
    assert main([*base, "--host-index", "0"]) == 0
    for name in ("00000.tar", "00001.tar", "00002.tar"):
        assert (out / name).read_bytes() == (outputs["in_memory"] / name).read_bytes()
    assert json.loads((out / "_dataset.json").read_text())["counts"]["rows_generated"] == 6


def test_run_inference_with_the_real_generator_spec(tiny_sd1_dir):
    import apache_beam as beam
    import numpy as np
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.util import assert_that, equal_to

    from jaxgen.beam import GenerationModelHandler
    from jaxgen.engine.spec import GeneratorSpec
    from jaxgen.requests import GenerationRequest

    spec = GeneratorSpec(str(tiny_sd1_dir))
    requests = [GenerationRequest(f"a red circle {i}", seed=i, height=16, width=16, steps=2,
                                  num_images=1 + i % 2) for i in range(3)]
    handler = GenerationModelHandler(spec, size_multiple=spec.size_multiple(), max_batch_size=8)
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = (p | beam.Create(requests) | RunInference(handler)
               | beam.Map(lambda g: (g.request.seed, g.index, g.image.shape,
                                     bool(np.asarray(g.image).std() > 0))))
        assert_that(out, equal_to([(0, 0, (16, 16, 3), True), (1, 0, (16, 16, 3), True),
                                   (1, 1, (16, 16, 3), True), (2, 0, (16, 16, 3), True)]))
