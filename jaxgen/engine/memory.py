"""Will a request's program fit on the device? An estimate made before compiling, so a size no
device can hold is that row's reject, not an out-of-memory crash of the whole job.

The estimate is the largest buffer of a sampling step: the self-attention scores of the
highest-resolution attention layer, (latent tokens)^2 per head, in float32 (softmax runs
there), for the guided batch (two rows per item) of the items one device computes at once.
It grows with the fourth power of the side and dominates everything else at large sizes; a
fused attention (attention="cudnn") never materialises it, so no estimate is made then.
"""

from __future__ import annotations

import os

import jax

from jaxgen.models import UNetConfig

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
