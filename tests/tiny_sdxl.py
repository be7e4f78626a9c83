"""A tiny random Stable Diffusion XL pipeline built with the PyTorch reference classes."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from jaxgen.weights.tokenizer import write_clip_tokenizer
from tests.tiny_models import WORDS, perturb

# Two encoders of different widths, so a swapped concatenation cannot pass.
TEXT_1, TEXT_2, PROJECTION, TIME_DIM = 24, 32, 16, 8


def unet_config(in_channels: int = 4, time_ids: int = 6,
                context: int = TEXT_1 + TEXT_2) -> dict:
    """SDXL's UNet choices at a tiny size: no attention at the finest level, per-block
    transformer depth and heads, linear projections, text_time added embedding. A refiner's:
    5 time ids, the context of text_encoder_2 alone."""
    return dict(
        sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64),
        layers_per_block=1, norm_num_groups=8, cross_attention_dim=context,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=TIME_DIM,
        projection_class_embeddings_input_dim=PROJECTION + time_ids * TIME_DIM)


def build(out_dir: Path, seed: int = 0, in_channels: int = 4, refiner: bool = False) -> Path:
    """in_channels 9: an SDXL-inpainting-style UNet (latents, mask, masked-image latents).
    refiner: the refiner's layout, a StableDiffusionXLImg2ImgPipeline without text_encoder and
    tokenizer, requires_aesthetics_score."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**(unet_config(time_ids=5, context=TEXT_2) if refiner else
                                   unet_config(in_channels)))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=2,
        latent_channels=4, norm_num_groups=8, sample_size=16, scaling_factor=0.13025,
        force_upcast=True,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    tok_dir = Path(out_dir) / "_tokenizer_src"
    vocab = write_clip_tokenizer(tok_dir, WORDS)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    ids = dict(vocab_size=len(vocab), max_position_embeddings=77,
               bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
               pad_token_id=vocab["<|endoftext|>"])
    # SDXL's ViT-L encoder (quick_gelu) and its OpenCLIP bigG encoder (gelu, projected).
    text = CLIPTextModel(CLIPTextConfig(hidden_size=TEXT_1, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        hidden_act="quick_gelu", **ids))
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=TEXT_2, intermediate_size=41, num_hidden_layers=2, num_attention_heads=4,
        hidden_act="gelu", projection_dim=PROJECTION, **ids))
    for i, m in enumerate((unet, vae, text, text_2)):
        perturb(m, seed + i)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading", prediction_type="epsilon")
    pipeline = StableDiffusionXLPipeline if in_channels == 4 else StableDiffusionXLInpaintPipeline
    name = "tiny-sdxl" if in_channels == 4 else "tiny-sdxl-inpainting"
    if refiner:
        pipe = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, text_encoder_2=text_2, tokenizer=None,
            tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
            requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
        name = "tiny-sdxl-refiner"
    else:
        pipe = pipeline(vae=vae, text_encoder=text, text_encoder_2=text_2, tokenizer=tokenizer,
                        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    path = Path(out_dir) / name
    pipe.save_pretrained(path)
    # SDXL base's scheduler file also carries DDIM's keys (off), which its other samplers read.
    config_file = path / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config.update(clip_sample=False, set_alpha_to_one=False, sample_max_value=1.0)
    config_file.write_text(json.dumps(config, indent=2))
    return path
