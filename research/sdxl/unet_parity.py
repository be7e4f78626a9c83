"""SDXL base's UNet architecture, jaxgen against diffusers, random weights, float32.

    python -m research.sdxl.unet_parity                       # the full 2.57B-parameter UNet
    python -m research.sdxl.unet_parity --depth 1 --width 0.5 # scaled to fit a small machine

Builds diffusers' UNet2DConditionModel from SDXL base 1.0's config
(benchmarks/harness/sdxl.py; --depth sets the deepest level's transformer depth, 10 in SDXL,
--width scales every channel count, heads kept 64 wide), converts its weights with jaxgen's
loader, runs both on the same inputs (a 16x16 latent, two items with different
micro-conditioning) and prints relative L2, max abs and the process's peak RSS. The torch
output is computed and the torch model freed before jaxgen's parameters go on the device, so
the peak is about two copies of the float32 weights, not three.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time

import numpy as np


def config(depth: int, width: float) -> dict:
    from benchmarks.harness.sdxl import unet_config

    cfg = unet_config("base")
    channels = tuple(int(c * width) // 64 * 64 for c in cfg["block_out_channels"])
    return {**cfg, "block_out_channels": channels,
            "attention_head_dim": tuple(c // 64 for c in channels),
            "transformer_layers_per_block": (*cfg["transformer_layers_per_block"][:2], depth)}


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=10, help="deepest level's transformer depth")
    p.add_argument("--width", type=float, default=1.0, help="channel scale (1: SDXL's)")
    p.add_argument("--latent", type=int, default=16, help="latent side")
    args = p.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import torch
    from diffusers import UNet2DConditionModel as TorchUNet

    from jaxgen.models import UNet2DConditionModel, UNetConfig
    from jaxgen.weights.convert import torch_to_flax

    raw = config(args.depth, args.width)
    torch.manual_seed(0)
    with torch.no_grad():
        reference = TorchUNet(**raw).eval()
        for p_ in reference.parameters():  # zero-initialised layers would hide a wrong mapping
            p_.add_(torch.randn_like(p_) * 0.02)
    n_params = sum(p_.numel() for p_ in reference.parameters())
    g = torch.Generator().manual_seed(1)
    n = args.latent
    sample = torch.randn(2, 4, n, n, generator=g)
    context = torch.randn(2, 77, raw["cross_attention_dim"], generator=g)
    text_embeds = torch.randn(2, 1280, generator=g)
    time_ids = torch.tensor([[1024., 1024., 0., 0., 1024., 1024.],
                             [768., 1344., 32., 16., 1024., 1024.]])
    t = torch.tensor([981, 17])
    start = time.perf_counter()
    with torch.no_grad():
        ref = reference(sample, t, encoder_hidden_states=context, added_cond_kwargs={
            "text_embeds": text_embeds, "time_ids": time_ids}).sample.numpy()
    torch_s = time.perf_counter() - start

    cfg = UNetConfig.from_dict(raw)
    unet = UNet2DConditionModel(cfg)
    inputs = (jnp.asarray(sample.permute(0, 2, 3, 1).numpy()), jnp.asarray(t.numpy()),
              jnp.asarray(context.numpy()), jnp.asarray(text_embeds.numpy()),
              jnp.asarray(time_ids.numpy()))
    shapes = jax.eval_shape(unet.init, jax.random.key(0), *inputs)["params"]
    params = torch_to_flax({k: v.numpy() for k, v in reference.state_dict().items()}, shapes,
                           "UNet2DConditionModel")
    del reference
    gc.collect()
    params = jax.tree.map(jnp.asarray, params)
    start = time.perf_counter()
    ours = np.asarray(jax.jit(unet.apply)({"params": params}, *inputs)).transpose(0, 3, 1, 2)
    jax_s = time.perf_counter() - start
    result = {"depth": args.depth, "width": args.width,
              "block_out_channels": raw["block_out_channels"], "latent": n,
              "unet_params": n_params, "float32_gb": round(n_params * 4 / 1e9, 2),
              "rel_l2": float(np.linalg.norm(ours - ref) / np.linalg.norm(ref)),
              "max_abs": float(np.abs(ours - ref).max()), "ref_max_abs": float(np.abs(ref).max()),
              "torch_s": round(torch_s, 1), "jaxgen_s_with_compile": round(jax_s, 1),
              "peak_rss_gib": round(peak_gib(), 2)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
