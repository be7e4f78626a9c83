"""`jaxgen info`'s per-device memory estimate: parameters as the mesh really splits them, and
a total that grows with the batch."""

from __future__ import annotations

import jax
import pytest

from jaxgen.cli import main
from jaxgen.engine.generator import Generator
from jaxgen.engine.memory import estimate_memory, largest_fitting_batch
from jaxgen.engine.sharding import make_mesh
from jaxgen.weights.model_dir import load_model

SHARD = 64  # min_shard_size: low enough that the tiny model's kernels split


@pytest.fixture(scope="module")
def model(tiny_sdxl_dir):
    return load_model(tiny_sdxl_dir)


def test_param_bytes_are_the_sharded_arrays_per_device_shards(model):
    gen = Generator(model, mesh=make_mesh(model_parallel=2), dtype="float32",
                    compilation_cache=False, min_shard_size=SHARD)
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(gen.params)]
    assert any("model" in str(spec) for spec in specs)  # the rule really split some kernels
    device = gen.mesh.devices.flat[0]
    on_device = {name: sum(s.data.nbytes for leaf in jax.tree.leaves(tree)
                           for s in leaf.addressable_shards if s.device == device)
                 for name, tree in gen.params.items()}
    est = estimate_memory(model, 8, 16, 16, "float32", 2, 8, None, min_shard_size=SHARD)
    assert est.params == on_device
    unsplit = estimate_memory(model, 8, 16, 16, "float32", 1, 8, None, min_shard_size=SHARD)
    assert sum(est.params.values()) < sum(unsplit.params.values())


def test_total_grows_with_batch_size_and_halves_params_in_bfloat16(model):
    totals = [estimate_memory(model, b, 32, 32, "float32", 1, 4, None).total
              for b in (4, 8, 16)]
    assert totals[0] < totals[1] < totals[2]
    f32 = estimate_memory(model, 4, 32, 32, "float32", 1, 4, None)
    bf16 = estimate_memory(model, 4, 32, 32, "bfloat16", 1, 4, None)
    assert sum(bf16.params.values()) * 2 == sum(f32.params.values())


def test_largest_fitting_batch_is_the_last_multiple_that_fits():
    assert largest_fitting_batch(lambda b: b <= 37, 4) == 36
    assert largest_fitting_batch(lambda b: b <= 3, 4) == 0


def test_info_prints_the_estimate_per_device(tiny_sdxl_dir, capsys):
    assert main(["info", "--model", str(tiny_sdxl_dir), "--batch-size", "8", "--size", "32x32",
                 "--model-parallel", "2"]) == 0
    out = capsys.readouterr().out
    assert "batch 8 at 32x32, float32, 8 devices (data 4 x model 2)" in out
    for line in ("unet params", "text_encoder_2 params", "sampling step", "VAE decode", "total",
                 "largest batch that fits"):
        assert line in out
    with pytest.raises(SystemExit, match="--batch-size: batch_size 6"):
        main(["info", "--model", str(tiny_sdxl_dir), "--batch-size", "6"])
