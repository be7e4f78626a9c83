"""The peer engine for ShapesEval: diffusers' StableDiffusionPipeline on a jaxgen model directory.

Imported only for `jaxgen eval --engine diffusers`; torch and diffusers come with the `test`
extra. The pipeline uses the directory's own scheduler (DPM-Solver++ 2M for the default model)
and starts each image from the very initial noise jaxgen draws for its seed (`initial_noise`),
so the two engines' scores differ only by what the implementations compute, not by two
different samples of noise. Ancestral samplers' per-step noise comes from a torch generator
seeded with the prompt's seed, so a rerun is identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxgen.default_model import RECOMMENDED
from jaxgen.engine.denoise import initial_noise
from jaxgen.engine.inputs import noise_ids
from jaxgen.eval.shapes_eval import Generate


def diffusers_generator(model_dir: str | Path, *, guidance: float = RECOMMENDED["guidance"],
                        steps: int = RECOMMENDED["steps"], batch_size: int = 32) -> Generate:
    try:
        import torch
        from diffusers import StableDiffusionPipeline
    except ImportError as err:
        raise ImportError("engine 'diffusers' needs torch and diffusers: "
                          "pip install -e '.[test]'") from err

    # float32 whatever the files hold: torch's CPU half-precision kernels are slow or missing.
    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None,
                                                   requires_safety_checker=False,
                                                   dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    side = pipe.unet.config.sample_size  # the model's native latent size, as diffusers samples
    shape = (side, side, pipe.vae.config.latent_channels)

    def generate(prompts: list[str], seeds: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(prompts), batch_size):
            chunk = seeds[i:i + batch_size]
            gens = [torch.Generator().manual_seed(int(s)) for s in chunk]
            noise = initial_noise(noise_ids(chunk, np.zeros(len(chunk), np.int64)), shape)
            latents = torch.from_numpy(noise.transpose(0, 3, 1, 2).copy())  # NHWC -> NCHW
            with torch.inference_mode():
                images = pipe(prompts[i:i + batch_size], num_inference_steps=steps,
                              guidance_scale=guidance, generator=gens, latents=latents,
                              output_type="np").images
            out.append(np.round(np.clip(images, 0, 1) * 255).astype(np.uint8))
        return np.concatenate(out)

    return generate
