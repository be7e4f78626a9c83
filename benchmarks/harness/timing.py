"""Timing shared by every benchmark: best/median of repeats, and the machine's matmul peak."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def best_and_median(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """The best and the median wall time of `repeats` calls of `fn`, in seconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[0], times[len(times) // 2]


def torch_matmul(torch: Any, dtype: Any, device: str, repeats: int,
                 side: int | None = None) -> dict[str, Any]:
    """PyTorch's best square-matmul rate: 2048^2 on CPU, 8192^2 on CUDA unless `side` is given
    (a bfloat16 2048^2 matmul takes a minute on a CPU without bfloat16 instructions)."""
    n = side or (2048 if device == "cpu" else 8192)
    a = torch.ones(n, n, dtype=dtype, device=device)

    def run() -> None:
        a @ a
        if device == "cuda":
            torch.cuda.synchronize()

    run()
    best, _ = best_and_median(run, repeats)
    return {"flops_per_s": 2 * n**3 / best, "n": n, "dtype": str(dtype)}


class PeakSystem:
    """The machine's limit as JAX sees it: the best square matmul rate over a few sizes."""

    def __init__(self, config: dict[str, Any]):
        import jax

        self.cfg, self.jax = config, jax

    def matmul(self, repeats: int, side: int | None = None) -> dict[str, Any]:
        """The better of side/2 and side squared (default 2048 on CPU, 8192 on GPU)."""
        import jax.numpy as jnp

        gpu = self.cfg["device"] == "gpu" and self.jax.default_backend() == "gpu"
        dtype = jnp.dtype(self.cfg["dtype"])
        side = side or (8192 if gpu else 2048)
        sizes = (side // 2, side)
        best_rate, best_n = 0.0, 0
        for n in sizes:
            a = jnp.ones((n, n), dtype)
            fn = self.jax.jit(lambda a: a @ a)
            fn(a).block_until_ready()
            best, _ = best_and_median(lambda: fn(a).block_until_ready(), repeats)  # noqa: B023
            if 2 * n**3 / best > best_rate:
                best_rate, best_n = 2 * n**3 / best, n
        return {"flops_per_s": best_rate, "n": best_n, "dtype": dtype.name,
                "devices": len(self.jax.local_devices())}


def timed(run: Callable[[], None], rounds: int) -> float:
    """Median seconds of `rounds` calls of `run`, after one untimed call (compile, warm-up)."""
    run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
