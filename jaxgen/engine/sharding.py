"""The device mesh, parameter partition rules and batch shardings.

Each process builds a mesh over its OWN local devices (axes 'data', 'model'): inference
needs no cross-host collectives, and a multi-host job splits its work by process index.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, MODEL = "data", "model"


def cpu_device_count(max_devices: int = 8) -> int:
    """How many XLA CPU devices use_all_cpu_cores asks for: one per core, at most
    `max_devices`."""
    return max(1, min(os.cpu_count() or 1, max_devices))


def use_all_cpu_cores(max_devices: int = 8) -> None:
    """On CPU, one XLA device per core (at most `max_devices`): a batch split over them keeps
    every core busy (docs/benchmarks.md, "One XLA device per core"). Entry points call this
    before any JAX work; it does nothing if XLA_FLAGS sets a device count or JAX has started.
    Accelerator backends are unaffected."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", cpu_device_count(max_devices))
    except RuntimeError:  # JAX already started in this process: keep its devices
        pass


def devices_dividing(batch_size: int, devices: list | None = None) -> list:
    """The first of `devices` (default: the local ones), as many as divide `batch_size`: a
    batch of 32 on 6 CPU devices splits over 2, so any machine runs a fixed batch."""
    devices = list(devices if devices is not None else jax.local_devices())
    return devices[:math.gcd(batch_size, len(devices))]


def make_mesh(model_parallel: int = 1, devices: list | None = None) -> Mesh:
    """A ('data', 'model') mesh over the local devices; by default every device on 'data'."""
    devices = list(devices if devices is not None else jax.local_devices())
    if model_parallel < 1 or len(devices) % model_parallel:
        raise ValueError(f"model_parallel {model_parallel}: must be >= 1 and divide the "
                         f"{len(devices)} local devices")
    grid = np.array(devices).reshape(len(devices) // model_parallel, model_parallel)
    return Mesh(grid, (DATA, MODEL))


def param_spec(name: str, shape: tuple[int, ...], model_parallel: int,
               min_shard_size: int = 2**20) -> P:
    """How one parameter is placed: a kernel of at least `min_shard_size` elements whose output
    dimension divides over 'model' is split along it (tensor parallel); all else replicated."""
    if (model_parallel > 1 and name == "kernel" and np.prod(shape) >= min_shard_size
            and shape[-1] % model_parallel == 0):
        return P(*([None] * (len(shape) - 1)), MODEL)
    return P()


def param_shardings(params: Any, mesh: Mesh, min_shard_size: int = 2**20) -> Any:
    """Each parameter's NamedSharding over `mesh`, by param_spec."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: NamedSharding(mesh, param_spec(
            getattr(path[-1], "key", ""), leaf.shape, mesh.shape[MODEL], min_shard_size)),
        params)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) axis over 'data'; other axes whole."""
    return NamedSharding(mesh, P(DATA))


def check_backend(expected: str | None) -> str:
    """Fail fast when JAX did not get the accelerator the job expects: a second process on a
    TPU host, or a missing CUDA plugin, silently falls back to CPU."""
    backend = jax.default_backend()
    if expected is not None and backend != expected:
        raise RuntimeError(f"expected JAX backend {expected!r} but got {backend!r} "
                           f"(devices: {jax.local_devices()}); is another process holding the "
                           "accelerator, or is the jax plugin for it missing?")
    return backend


def per_device_micro_batches(sample: Callable[[Any, Any], Any], mesh: Mesh,
                             micro_batch: int) -> Callable[[Any, Any], Any]:
    """`sample(params, inputs)` computed `micro_batch` items per device at a time, whatever the
    batch: XLA picks kernels (and so the rounding) by shape, and here every device only ever
    sees `micro_batch` items, so an image's bytes do not depend on the batch size or the mesh
    (docs/determinism.md). The batch [B] becomes [B / (K * D), K * D] with its inner axis split
    over 'data' (K per device), and the outer axis is looped over."""
    group = micro_batch * mesh.shape[DATA]
    inner = NamedSharding(mesh, P(None, DATA))

    def run(params: Any, inputs: Any) -> Any:
        n = jax.tree.leaves(inputs)[0].shape[0]
        if n % group:
            raise ValueError(f"batch {n}: not a multiple of micro_batch {micro_batch} x "
                             f"{mesh.shape[DATA]} devices")

        def split(a: jax.Array) -> jax.Array:
            grouped = a.reshape(n // group, group, *a.shape[1:])
            return jax.lax.with_sharding_constraint(grouped, inner)

        out = jax.lax.map(lambda x: sample(params, x), jax.tree.map(split, inputs))
        return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), out)

    return run
