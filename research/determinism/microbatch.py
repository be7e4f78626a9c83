"""Prototype: a fixed per-device micro-batch, so an image's bytes never depend on the batch.

XLA picks kernels (and their summation order) by array shape, so the same item computed in
a batch of 1 or of 8 per device can round differently. Here every device takes its slice of
the global batch (shard_map over 'data') and runs the sampling program over it K items at a
time (lax.map over [n/K, K, ...]): the only shapes the kernels ever see have K items, whatever
the global batch or the device count.

Not the product: the Generator is patched from outside (`use_micro_batches`).
"""

from __future__ import annotations

import jax
from jax.sharding import PartitionSpec as P

from jaxgen.engine.generator import Generator
from jaxgen.engine.sampling import SamplingProgram
from jaxgen.engine.sharding import batch_sharding


def micro_batched(program: SamplingProgram, mesh, k: int):
    """program(params, inputs) computed K items at a time on every device."""

    def local(params, inputs):
        n = jax.tree.leaves(inputs)[0].shape[0]
        if n % k:
            raise ValueError(f"per-device batch {n} is not a multiple of micro-batch {k}")
        split = jax.tree.map(lambda a: a.reshape(n // k, k, *a.shape[1:]), inputs)
        out = jax.lax.map(lambda x: program(params, x), split)
        return out.reshape(n, *out.shape[2:])

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"),
                         check_vma=False)


def use_micro_batches(gen: Generator, k: int) -> None:
    """Make `gen` build micro-batched programs (params must be replicated)."""

    def build(spec):
        if spec not in gen._programs:
            program = SamplingProgram.build(gen.model, spec, gen.dtype, gen.attention)
            data = batch_sharding(gen.mesh)
            gen._programs[spec] = jax.jit(micro_batched(program, gen.mesh, k),
                                          in_shardings=(gen._param_shardings, data),
                                          out_shardings=data)
        return gen._programs[spec]

    gen._program = build
