"""Will a request's program fit on the device? An estimate made before compiling, so a size no
device can hold is that row's reject, not an out-of-memory crash of the whole job.

The estimate is the largest buffer of a sampling step: the self-attention scores of the
highest-resolution attention layer, (latent tokens)^2 per head, in float32 (softmax runs
there), for the guided batch (two rows per item) of the items one device computes at once.
It grows with the fourth power of the side and dominates everything else at large sizes; a
fused attention (attention="cudnn") never materialises it, so no estimate is made then.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.engine.sharding import MODEL, param_spec
from jaxgen.models import UNetConfig, VAEConfig
from jaxgen.weights.model_dir import DiffusionModel

_SCORE_BYTES = 4  # float32 scores


def attention_score_bytes(unet: UNetConfig, latent_height: int, latent_width: int,
                          items: int) -> int:
    """Bytes of the largest self-attention score matrix for `items` guided items."""
    heads = unet.heads()
    for level, kind in enumerate(unet.down_block_types):
        if kind.startswith("CrossAttn"):
            tokens = (latent_height >> level) * (latent_width >> level)
            return 2 * items * heads[level] * tokens * tokens * _SCORE_BYTES
    return 0


def device_memory_bytes(device: jax.Device) -> int | None:
    """What one device can hold: its own memory (GPU/TPU), or on CPU the host's RAM shared by
    the process's CPU devices; None when unknown."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    return ram // max(1, len(jax.local_devices(backend=device.platform)))


# What `jaxgen info` reports: a per-device estimate for a batch size, before loading a device.
# Buffers held at once in a UNet resnet (its input, the normalised input, the conv output).
_LIVE_MAPS = 3


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes on one device: each component's parameters (as param_spec places them), the
    sampling step's largest live buffers, the VAE decode's; the two phases never overlap."""

    params: dict[str, int]
    step: int
    decode: int
    device: int | None  # what one device holds (device_memory_bytes); None when unknown

    @property
    def total(self) -> int:
        return sum(self.params.values()) + max(self.step, self.decode)

    @property
    def fits(self) -> bool | None:
        return None if self.device is None else self.total <= self.device


def sharded_param_bytes(params: Any, model_parallel: int, itemsize: int,
                        min_shard_size: int = 2**20) -> int:
    """Bytes of `params` on one device of a mesh with `model_parallel` devices on 'model'."""
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        spec = param_spec(getattr(path[-1], "key", ""), leaf.shape, model_parallel,
                          min_shard_size)
        total += int(np.prod(leaf.shape)) * itemsize // (model_parallel if MODEL in spec else 1)
    return total


def unet_step_bytes(unet: UNetConfig, latent_height: int, latent_width: int, items: int,
                    itemsize: int, guided: bool = True) -> int:
    """One sampling step: the largest attention scores (float32), the skip connections the up
    path holds, and a resnet's live feature maps at the finest level."""
    rows = (2 if guided else 1) * items
    layers = unet.layers_per_block
    skips = unet.block_out_channels[0]  # conv_in's output
    for level, channels in enumerate(unet.block_out_channels):
        n = layers[level] if isinstance(layers, tuple | list) else layers
        skips += (n + 1) * channels >> (2 * level)  # n resnets and the downsampler, 4x fewer/level
    tokens = latent_height * latent_width
    maps = (skips + _LIVE_MAPS * unet.block_out_channels[0]) * tokens * rows * itemsize
    scores = attention_score_bytes(unet, latent_height, latent_width, items)
    return (scores if guided else scores // 2) + maps


def vae_decode_bytes(vae: VAEConfig, height: int, width: int, items: int, itemsize: int) -> int:
    """The decoder's mid-block attention scores (one head, float32, latent tokens squared) and
    a resnet's live feature maps at full resolution (block_out_channels[0] channels)."""
    latent_tokens = (height // vae.downscale) * (width // vae.downscale)
    scores = latent_tokens ** 2 * _SCORE_BYTES if vae.mid_block_add_attention else 0
    maps = _LIVE_MAPS * height * width * vae.block_out_channels[0] * itemsize
    return items * (scores + maps)


def estimate_memory(model: DiffusionModel, batch_size: int, height: int, width: int,
                    dtype: Any, model_parallel: int, devices: int, device_bytes: int | None,
                    min_shard_size: int = 2**20) -> MemoryEstimate:
    """Per-device memory of generating `batch_size` images of height x width (guided) on
    `devices` devices, `model_parallel` of them on the 'model' axis."""
    n_data = devices // model_parallel
    if model_parallel < 1 or devices % model_parallel or batch_size % n_data:
        raise ValueError(f"batch_size {batch_size}, model_parallel {model_parallel}, devices "
                         f"{devices}: model_parallel must divide devices, and devices / "
                         "model_parallel divide batch_size")
    itemsize = jnp.dtype(dtype).itemsize
    params = {name: sharded_param_bytes(tree, model_parallel, itemsize, min_shard_size)
              for name, tree in model.params.items()}
    items = batch_size // n_data
    f = model.latent_factor
    step = unet_step_bytes(model.unet, height // f, width // f, items, itemsize)
    upcast = model.family == "sdxl" and jnp.dtype(dtype) == jnp.float16 and \
        model.vae_force_upcast  # as SamplingProgram.build: SDXL's VAE in float32
    decode = vae_decode_bytes(model.vae, height, width, items, 4 if upcast else itemsize)
    return MemoryEstimate(params, step, decode, device_bytes)


def largest_fitting_batch(fits: Callable[[int], bool], step: int, limit: int = 2**16) -> int:
    """The largest multiple of `step` (at most `limit`) for which `fits`, 0 if none; `fits`
    grows false with the batch."""
    if not fits(step):
        return 0
    low, high = 1, 2
    while high * step <= limit and fits(high * step):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid * step) else (low, mid)
    return low * step
