"""Tiny random Stable Diffusion models built with the PyTorch reference classes."""

from __future__ import annotations

from pathlib import Path

import torch

from jaxgen.weights.tokenizer import write_clip_tokenizer

WORDS = ["red", "green", "blue", "circle", "square", "triangle", "left", "of", "on", "a",
         "large", "small", "background", "cat", "photo"]

_STYLES = {
    "sd1": dict(heads=4, linear=False, upcast=False, cross=32, act="quick_gelu",
                prediction="epsilon", spacing="leading"),
    "sd2": dict(heads=(2, 4, 4), linear=True, upcast=True, cross=48, act="gelu",
                prediction="v_prediction", spacing="trailing"),
}


def perturb(module: torch.nn.Module, seed: int) -> None:
    # Default inits leave norms at 1 and many biases at 0, which would hide a wrong mapping.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def build(out_dir: Path, style: str = "sd1", seed: int = 0, in_channels: int = 4) -> Path:
    """in_channels 9: an SD-inpainting-style UNet (latents, mask, masked-image latents)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    s = _STYLES[style]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64, 64),
        layers_per_block=2, norm_num_groups=8, cross_attention_dim=s["cross"],
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=s["heads"], use_linear_projection=s["linear"],
        upcast_attention=s["upcast"])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=2,
        latent_channels=4, norm_num_groups=8, sample_size=16,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    tok_dir = Path(out_dir) / "_tokenizer_src"
    vocab = write_clip_tokenizer(tok_dir, WORDS)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=s["cross"], intermediate_size=37,
        num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77,
        hidden_act=s["act"], bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]))
    for i, m in enumerate((unet, vae, text)):
        perturb(m, seed + i)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1, prediction_type=s["prediction"],
        timestep_spacing=s["spacing"])
    pipeline = StableDiffusionPipeline if in_channels == 4 else StableDiffusionInpaintPipeline
    pipe = pipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                    scheduler=scheduler, safety_checker=None, feature_extractor=None,
                    requires_safety_checker=False)
    path = Path(out_dir) / (f"tiny-{style}" if in_channels == 4 else f"tiny-{style}-inpainting")
    pipe.save_pretrained(path)
    return path
