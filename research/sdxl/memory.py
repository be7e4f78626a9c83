"""`jaxgen info`'s memory estimate for SDXL base at 1024x1024, without its weights.

    python -m research.sdxl.memory

The parameter tree comes from jax.eval_shape over SDXL base's configs
(benchmarks/harness/sdxl.py), so the figures need no 7 GB download: per device, for a few
batch sizes, precisions and model splits, against an 80 GB device.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp

from benchmarks.harness.sdxl import text_configs, unet_config, vae_config
from jaxgen.engine.memory import estimate_memory, largest_fitting_batch
from jaxgen.models import (
    AutoencoderKL,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTextWithProjectionConfig,
    UNet2DConditionModel,
    UNetConfig,
    VAEConfig,
)
from jaxgen.weights.model_dir import DiffusionModel

DEVICE_BYTES = 80 * 10**9  # an 80 GB accelerator


def as_json(config: dict) -> dict:
    """The config as its config.json reads back (lists, not tuples)."""
    return json.loads(json.dumps(config))


def sdxl_base_shapes() -> DiffusionModel:
    unet_raw, vae_raw = as_json(unet_config("base")), as_json(vae_config("base"))
    unet, vae = UNetConfig.from_dict(unet_raw), VAEConfig.from_dict(vae_raw)
    text_kw, text_2_kw = text_configs("base")
    text = CLIPTextConfig.from_dict(text_kw)
    text_2 = CLIPTextWithProjectionConfig.from_dict(text_2_kw, "text_encoder_2/config.json")
    key, ids = jax.random.key(0), jnp.zeros((1, 77), jnp.int32)
    latents = jnp.zeros((1, 128, 128, 4))
    params = {
        "unet": jax.eval_shape(UNet2DConditionModel(unet).init, key, latents, jnp.zeros((1,)),
                               jnp.zeros((1, 77, 2048)), jnp.zeros((1, 1280)),
                               jnp.zeros((1, 6)))["params"],
        "vae": jax.eval_shape(AutoencoderKL(vae).init, key, jnp.zeros((1, 64, 64, 3)))["params"],
        "text_encoder": jax.eval_shape(CLIPTextModel(text).init, key, ids)["params"],
        "text_encoder_2": jax.eval_shape(CLIPTextModelWithProjection(text_2).init, key,
                                         ids)["params"]}
    return DiffusionModel("sdxl-base (shapes)", "-", unet, vae, text, {}, None, params,
                          {"vae": vae_raw}, text_encoder_2=text_2)


def main() -> None:
    model = sdxl_base_shapes()
    gib = 2**30
    print("| dtype | batch | devices (data x model) | params/device | step | decode | total | "
          "fits 80 GB | largest batch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype, batch, devices, k in (("bfloat16", 1, 1, 1), ("bfloat16", 8, 1, 1),
                                     ("float16", 8, 1, 1), ("float32", 8, 1, 1),
                                     ("bfloat16", 8, 8, 2), ("bfloat16", 8, 8, 8)):
        def estimate(b: int, dtype=dtype, devices=devices, k=k):
            return estimate_memory(model, b, 1024, 1024, dtype, k, devices, DEVICE_BYTES)

        est = estimate(batch)
        largest = largest_fitting_batch(lambda b, f=estimate: f(b).fits, devices // k)
        print(f"| {dtype} | {batch} | {devices // k} x {k} | "
              f"{sum(est.params.values()) / gib:.2f} GiB | {est.step / gib:.2f} GiB | "
              f"{est.decode / gib:.2f} GiB | {est.total / gib:.2f} GiB | "
              f"{'yes' if est.fits else 'no'} | {largest} |")


if __name__ == "__main__":
    main()
