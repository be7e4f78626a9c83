"""Where jaxgen's train step loses to PyTorch on CPU: one 3x3 conv, forward and both gradients.

    .venv/bin/python scripts/bench_conv.py            # the default model's UNet conv shapes

For each (side, in channels, out channels) at batch 32 (stage 2's): XLA's convolution
forward, its input gradient and its kernel gradient (each jitted alone), against PyTorch's
conv2d forward and forward + backward (oneDNN). Medians of --repeats, milliseconds.
docs/benchmarks.md ("Training") holds the figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench.systems import _best_and_median  # noqa: E402

# The default model's UNet: 16x16 at 64 channels (and the skip concatenations into it), 8x8
# and 4x4 at 128.
SHAPES = ((16, 64, 64), (16, 192, 64), (16, 128, 128), (8, 128, 128), (8, 256, 128),
          (4, 128, 128))


def _median_ms(fn, repeats: int) -> float:
    fn()  # compile / oneDNN primitive creation
    return 1e3 * _best_and_median(fn, repeats)[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = p.parse_args()

    import jax
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    fwd = jax.jit(conv)
    dx = jax.jit(lambda x, w, dy: jax.vjp(conv, x, w)[1](dy)[0])
    dw = jax.jit(lambda x, w, dy: jax.vjp(conv, x, w)[1](dy)[1])
    print(f"batch {args.batch}, {args.repeats} repeats, ms (medians)\n")
    print("| conv | GFLOP | jax fwd | jax dx | jax dw | jax total | torch fwd | torch fwd+bwd "
          "| jax / torch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for side, cin, cout in SHAPES:
        x = rng.standard_normal((args.batch, side, side, cin), np.float32)
        w = 0.05 * rng.standard_normal((3, 3, cin, cout), np.float32)
        dy = rng.standard_normal((args.batch, side, side, cout), np.float32)
        x, w, dy = (jax.device_put(a) for a in (x, w, dy))
        j_f = _median_ms(lambda: fwd(x, w).block_until_ready(), args.repeats)  # noqa: B023
        j_dx = _median_ms(lambda: dx(x, w, dy).block_until_ready(), args.repeats)  # noqa: B023
        j_dw = _median_ms(lambda: dw(x, w, dy).block_until_ready(), args.repeats)  # noqa: B023
        tx = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous().requires_grad_()
        tw = torch.from_numpy(np.array(w)).permute(3, 2, 0, 1).contiguous().requires_grad_()
        tdy = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2).contiguous()

        def torch_fwd(tx=tx, tw=tw):
            with torch.no_grad():
                torch.nn.functional.conv2d(tx, tw, padding=1)

        def torch_both(tx=tx, tw=tw, tdy=tdy):
            y = torch.nn.functional.conv2d(tx, tw, padding=1)
            torch.autograd.grad(y, (tx, tw), tdy)

        t_f = _median_ms(torch_fwd, args.repeats)
        t_b = _median_ms(torch_both, args.repeats)
        gflop = 2 * args.batch * side * side * 9 * cin * cout / 1e9
        total = j_f + j_dx + j_dw
        print(f"| {side}x{side}, {cin}->{cout} | {gflop:.2f} | {j_f:.1f} | {j_dx:.1f} | "
              f"{j_dw:.1f} | {total:.1f} | {t_f:.1f} | {t_b:.1f} | {total / t_b:.2f} |")


if __name__ == "__main__":
    main()
