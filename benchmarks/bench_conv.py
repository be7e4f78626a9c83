"""Where jaxgen's train step loses to PyTorch on CPU: one 3x3 conv, forward and both gradients.

    .venv/bin/python -m benchmarks.bench_conv            # the default model's UNet conv shapes
    .venv/bin/python -m benchmarks.bench_conv --batch 16 --by-hand   # + kernel gradients by hand

For each (side, in channels, out channels) at batch 32 (stage 2's): XLA's convolution
forward, its input gradient and its kernel gradient (each jitted alone), against PyTorch's
conv2d forward and forward + backward (oneDNN). Medians of --repeats, milliseconds.
--by-hand adds two hand-written kernel gradients to set against XLA's, checked to agree with
it: nine dots of a shifted slice of the input with the output gradient, and one matmul of
the input's 3x3 patches with it.
docs/benchmarks.md ("Training") holds the figures.
"""

from __future__ import annotations

import argparse

from benchmarks.harness.timing import best_and_median

# The default model's UNet: 16x16 at 64 channels (and the skip concatenations into it), 8x8
# and 4x4 at 128.
SHAPES = ((16, 64, 64), (16, 192, 64), (16, 128, 128), (8, 128, 128), (8, 256, 128),
          (4, 128, 128))


def _median_ms(fn, repeats: int) -> float:
    fn()  # compile / oneDNN primitive creation
    return 1e3 * best_and_median(fn, repeats)[1]


def kernel_grad_by_slices(x, dy):
    """dW[i, j] = sum over batch and pixels of x_pad[shifted by i, j] (x) dy: nine dots."""
    import jax
    import jax.numpy as jnp

    b, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    dots = [[jax.lax.dot_general(jax.lax.slice(xp, (0, i, j, 0), (b, i + h, j + w, c)), dy,
                                 (((0, 1, 2), (0, 1, 2)), ((), ()))) for j in range(3)]
            for i in range(3)]
    return jnp.stack([jnp.stack(row) for row in dots])


def kernel_grad_by_patches(x, dy):
    """The same as one matmul: the input's 3x3 patches (9 x channels wide) with dy."""
    import jax
    import jax.numpy as jnp

    b, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([jax.lax.slice(xp, (0, i, j, 0), (b, i + h, j + w, c))
                               for i in range(3) for j in range(3)], axis=-1)
    grad = jax.lax.dot_general(patches.reshape(-1, 9 * c), dy.reshape(-1, dy.shape[-1]),
                               (((0,), (0,)), ((), ())))
    return grad.reshape(3, 3, c, -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--by-hand", action="store_true",
                   help="also time the kernel gradient as nine dots and as one patches matmul")
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
    by_hand = {"dw by 9 dots": jax.jit(kernel_grad_by_slices),
               "dw by patches": jax.jit(kernel_grad_by_patches)} if args.by_hand else {}
    print(f"batch {args.batch}, {args.repeats} repeats, ms (medians)\n")
    print("| conv | GFLOP | jax fwd | jax dx | jax dw | jax total | torch fwd | torch fwd+bwd "
          "| jax / torch |" + "".join(f" {name} |" for name in by_hand))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(by_hand))
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
        cells, want = [], np.asarray(dw(x, w, dy)) if by_hand else None
        for name, fn in by_hand.items():
            got = np.asarray(fn(x, dy))
            err = np.linalg.norm(got - want) / np.linalg.norm(want)
            if err > 1e-5:
                raise AssertionError(f"{name} differs from XLA's kernel gradient: rel {err:.1e}")
            ms = _median_ms(lambda fn=fn, x=x, dy=dy: fn(x, dy).block_until_ready(),
                            args.repeats)
            cells.append(f" {ms:.1f} |")
        print(f"| {side}x{side}, {cin}->{cout} | {gflop:.2f} | {j_f:.1f} | {j_dx:.1f} | "
              f"{j_dw:.1f} | {total:.1f} | {t_f:.1f} | {t_b:.1f} | {total / t_b:.2f} |"
              + "".join(cells))


if __name__ == "__main__":
    main()
