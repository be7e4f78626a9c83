"""A small randomly initialised model in diffusers format, built with Flax alone.

It produces noise-like images: it exists to exercise the whole path (benchmarks, smoke
runs, a quickstart before trained weights exist), never to be mistaken for a real model.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from jaxgen.models import CLIPTextConfig, UNetConfig, VAEConfig
from jaxgen.weights.model_dir import DiffusionModel, param_shapes, save_model
from jaxgen.weights.tokenizer import write_clip_tokenizer

SCHEDULER = {"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
             "prediction_type": "epsilon", "set_alpha_to_one": False, "steps_offset": 1,
             "timestep_spacing": "leading"}


def small_configs() -> tuple[UNetConfig, VAEConfig, CLIPTextConfig]:
    """64x64 images, 16x16x4 latents: the size class of the shapes model."""
    unet = UNetConfig(sample_size=16, block_out_channels=(64, 128, 128), layers_per_block=1,
                      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                        "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                      cross_attention_dim=128, attention_head_dim=4, norm_num_groups=32)
    vae = VAEConfig(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=32)
    text = CLIPTextConfig(vocab_size=0, hidden_size=128, intermediate_size=512,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32)
    return unet, vae, text


def write_random_model(out_dir: str | Path, seed: int = 0, words: tuple[str, ...] = ()) -> Path:
    """Write a random small model to `out_dir` and return the path."""
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    tok_dir = out / "tokenizer"
    unet, vae, text = small_configs()
    vocab = write_clip_tokenizer(tok_dir, words, max_length=text.max_position_embeddings)
    text = CLIPTextConfig(**{**text.__dict__, "vocab_size": len(vocab),
                             "eos_token_id": vocab["<|endoftext|>"]})
    shapes = param_shapes(unet, vae, text)
    keys = iter(jax.random.split(jax.random.key(seed), 10_000))

    def init(leaf):  # fan-in scaled normal kernels, small biases, unit norm scales
        if len(leaf.shape) == 1:
            return jax.random.normal(next(keys), leaf.shape) * 0.02
        fan_in = max(1, int(jnp.prod(jnp.array(leaf.shape[:-1]))))
        return jax.random.normal(next(keys), leaf.shape) / jnp.sqrt(fan_in)

    params = jax.tree.map(init, shapes)
    for tree in params.values():
        _unit_scales(tree)
    model = DiffusionModel(name=out.name, hash="random", unet=unet, vae=vae, text_encoder=text,
                           scheduler_config=SCHEDULER,
                           tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
                           params=params, raw_configs={})
    return save_model(model, out)


def _unit_scales(tree: dict) -> None:
    for key, value in tree.items():
        if isinstance(value, dict):
            _unit_scales(value)
        elif key == "scale":
            tree[key] = jnp.ones_like(value)
