"""SDXL-style models for the benchmarks: StableDiffusionXLPipeline directories of random weights.

`base` is Stable Diffusion XL base 1.0's published configs (UNet 2.57B parameters, the SDXL
VAE, CLIP ViT-L and OpenCLIP bigG text encoders). `medium` is the same UNet layout (no
attention at the finest level, transformer depth growing with depth, linear projections, 64-
wide heads, text_time conditioning) scaled down to run on a CPU. `tiny` is tests/tiny_sdxl.py's
size. Random weights time exactly like trained ones: the work is fixed by the shapes.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import models
from benchmarks.harness.models import WORDS, cache_root

CASES = ("tiny", "medium", "base")
TIME_IDS = 6  # original size, crop top-left, target size


def unet_config(case: str) -> dict:
    """diffusers UNet2DConditionModel kwargs; `base` is SDXL base 1.0's unet/config.json."""
    if case == "base":
        return dict(
            sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280), cross_attention_dim=2048,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
            norm_num_groups=32)
    text, projection, time_dim = _text_widths(case)
    if case == "medium":
        return dict(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(64, 128, 256), cross_attention_dim=text[0] + text[1],
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 4), attention_head_dim=(1, 2, 4),
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            projection_class_embeddings_input_dim=projection + TIME_IDS * time_dim,
            norm_num_groups=32)
    return dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=1, norm_num_groups=8, cross_attention_dim=text[0] + text[1],
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=projection + TIME_IDS * time_dim)


def _text_widths(case: str) -> tuple[tuple[int, int], int, int]:
    """((text_encoder width, text_encoder_2 width), projection_dim, addition_time_embed_dim)."""
    return {"base": ((768, 1280), 1280, 256), "medium": ((128, 256), 256, 32),
            "tiny": ((24, 32), 16, 8)}[case]


def vae_config(case: str) -> dict:
    channels = {"base": (128, 256, 512, 512), "medium": (32, 64, 128, 128),
                "tiny": (32, 64)}[case]
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=channels,
                layers_per_block=2, norm_num_groups=8 if case == "tiny" else 32,
                sample_size=1024 if case == "base" else 128, scaling_factor=0.13025,
                force_upcast=True, down_block_types=("DownEncoderBlock2D",) * len(channels),
                up_block_types=("UpDecoderBlock2D",) * len(channels))


def text_configs(case: str) -> tuple[dict, dict]:
    """CLIPTextConfig kwargs of text_encoder (ViT-L-style) and text_encoder_2 (bigG-style)."""
    (width, width_2), projection, _ = _text_widths(case)
    layers = {"base": (12, 32), "medium": (4, 4), "tiny": (2, 2)}[case]
    heads = {"base": (12, 20), "medium": (2, 4), "tiny": (4, 4)}[case]
    text = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers[0],
                num_attention_heads=heads[0], hidden_act="quick_gelu", vocab_size=49408)
    text_2 = dict(hidden_size=width_2, intermediate_size=4 * width_2,
                  num_hidden_layers=layers[1], num_attention_heads=heads[1], hidden_act="gelu",
                  projection_dim=projection, vocab_size=49408)
    if case != "base":  # a small BPE vocabulary: the tables need not be the real size
        text["vocab_size"] = text_2["vocab_size"] = 1000
    return text, text_2


def model_dir(case: str, root: Path | None = None) -> Path:
    """Build the case's StableDiffusionXLPipeline directory once (cached) and return it."""
    if case not in CASES:
        raise ValueError(f"case {case!r}: must be one of {CASES}")
    path = (root or cache_root()) / f"sdxl-{case}"
    done = path / ".complete"
    if not done.is_file():
        _build(path, case)
        done.write_text("ok\n")
    return path


def _build(path: Path, case: str) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from jaxgen.weights.tokenizer import write_clip_tokenizer

    torch.manual_seed(0)
    tok_dir = path.parent / f"_sdxl-{case}_tokenizer"
    vocab = write_clip_tokenizer(tok_dir, WORDS)
    eos = vocab["<|endoftext|>"]
    ids = dict(max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
               eos_token_id=eos, pad_token_id=eos)
    text_kw, text_2_kw = text_configs(case)
    with torch.no_grad():
        pipe = StableDiffusionXLPipeline(
            vae=AutoencoderKL(**vae_config(case)),
            text_encoder=CLIPTextModel(CLIPTextConfig(**text_kw, **ids)),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text_2_kw, **ids)),
            tokenizer=CLIPTokenizer.from_pretrained(str(tok_dir)),
            tokenizer_2=CLIPTokenizer.from_pretrained(str(tok_dir)),
            unet=UNet2DConditionModel(**unet_config(case)),
            scheduler=EulerDiscreteScheduler(
                beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                steps_offset=1, timestep_spacing="leading", prediction_type="epsilon"),
            add_watermarker=False)
        pipe.save_pretrained(path, safe_serialization=True)


def param_counts(path: Path) -> dict[str, int]:
    """Parameters per component of an SDXL directory (both text encoders)."""
    return models.param_counts(path, ("unet", "vae", "text_encoder", "text_encoder_2"))
