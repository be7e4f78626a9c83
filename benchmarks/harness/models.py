"""The benchmark's models: diffusers-format directories that both jaxgen and diffusers open.

`small` is jaxgen's default-model size class (`write_random_model`: the architecture and size
the shipped default model will have). `sd15` is the Stable Diffusion 1.5 architecture
(UNet 859.5M, VAE 83.7M, CLIP-L-sized text encoder 123.1M) with random weights, built with the
diffusers/transformers PyTorch classes. `tiny` is a few-kB SD-style model for smoke tests.
Random weights time exactly like trained ones: the work is fixed by the shapes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CASES = ("tiny", "small", "sd15")
WORDS = ["a", "red", "green", "blue", "circle", "square", "triangle", "on", "background", "photo"]


def cache_root() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jaxgen" / "bench-models"


def model_dir(case: str, root: Path | None = None) -> Path:
    """Build the case's model directory once (it is cached under `root`) and return it."""
    if case not in CASES:
        raise ValueError(f"case {case!r}: must be one of {CASES}")
    path = (root or cache_root()) / case
    done = path / ".complete"
    if done.is_file():
        return path
    if case == "small":
        from jaxgen.weights.random_model import write_random_model

        write_random_model(path, words=tuple(WORDS))
        _complete_small_configs(path)
    else:
        _build_torch_model(path, case)
    done.write_text("ok\n")
    return path


def _complete_small_configs(path: Path) -> None:
    """Fill in what `write_random_model` leaves out, so diffusers builds the same model.

    Without the block types diffusers builds a one-block VAE (and ignores most weights); a
    tokenizer longer than the text model's 32 positions overflows its position table.
    """
    def patch(rel: str, **values) -> None:
        f = path / rel
        f.write_text(json.dumps({**json.loads(f.read_text()), **values}, indent=2) + "\n")

    vae = json.loads((path / "vae/config.json").read_text())
    n = len(vae["block_out_channels"])
    patch("vae/config.json", down_block_types=["DownEncoderBlock2D"] * n,
          up_block_types=["UpDecoderBlock2D"] * n)
    text = json.loads((path / "text_encoder/config.json").read_text())
    eos = text["eos_token_id"]
    patch("text_encoder/config.json", bos_token_id=eos - 1, pad_token_id=eos)
    patch("tokenizer/tokenizer_config.json", model_max_length=text["max_position_embeddings"])


def _torch_configs(case: str) -> tuple[dict, dict, dict]:
    """(unet, vae, text) constructor kwargs; sd15 values are SD 1.5's published configs."""
    if case == "sd15":
        unet = dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                    cross_attention_dim=768, attention_head_dim=8,
                    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
        vae = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512,
                   down_block_types=("DownEncoderBlock2D",) * 4,
                   up_block_types=("UpDecoderBlock2D",) * 4)
        text = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12)
        return unet, vae, text
    unet = dict(sample_size=8, block_out_channels=(32, 64), layers_per_block=1,
                cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = dict(block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=8, sample_size=16,
               down_block_types=("DownEncoderBlock2D",) * 2,
               up_block_types=("UpDecoderBlock2D",) * 2)
    text = dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4)
    return unet, vae, text


def _build_torch_model(path: Path, case: str) -> None:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from diffusers import UNet2DConditionModel as TorchUNet
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from jaxgen.weights.random_model import SCHEDULER
    from jaxgen.weights.tokenizer import write_clip_tokenizer

    unet_kw, vae_kw, text_kw = _torch_configs(case)
    torch.manual_seed(0)
    tok_dir = path.parent / f"_{case}_tokenizer"
    vocab = write_clip_tokenizer(tok_dir, WORDS)
    eos = vocab["<|endoftext|>"]
    # A small BPE vocabulary, but the embedding table keeps the real model's size.
    text_kw["vocab_size"] = max(text_kw["vocab_size"], len(vocab))
    text = CLIPTextModel(CLIPTextConfig(max_position_embeddings=77, hidden_act="quick_gelu",
                                        bos_token_id=vocab["<|startoftext|>"],
                                        eos_token_id=eos, pad_token_id=eos, **text_kw))
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(latent_channels=4, **vae_kw), text_encoder=text,
        tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)), unet=TorchUNet(**unet_kw),
        scheduler=DDIMScheduler.from_config({k: v for k, v in SCHEDULER.items()
                                             if not k.startswith("_")}),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    with torch.no_grad():
        pipe.save_pretrained(path, safe_serialization=True)


def param_counts(path: Path, components: tuple[str, ...] = ("unet", "vae", "text_encoder")
                 ) -> dict[str, int]:
    """Parameters per component, read from the safetensors headers (no tensors loaded)."""
    counts = {}
    for comp in components:
        total = 0
        for f in sorted((path / comp).glob("*.safetensors")):
            with open(f, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
            for name, meta in header.items():
                if name != "__metadata__":
                    n = 1
                    for d in meta["shape"]:
                        n *= d
                    total += n
        counts[comp] = total
    return counts
