"""diffusers as a peer engine on a jaxgen model directory, from jaxgen's own noise.

`DiffusersPeer(model_dir).images(request, inputs)` runs one request through diffusers'
pipeline for its mode (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline or
StableDiffusionInpaintPipeline; their StableDiffusionXL* versions for an SDXL model, its
watermark off) and the scheduler of its sampler; `jaxgen compare` and
`jaxgen eval --engine diffusers` call it. Each image starts from the initial noise jaxgen
draws for it, and image-to-image and inpainting use jaxgen's unit noise for the VAE samples
of the init (and masked) image, patched into the pipeline where it draws its own; everything
else (VAE encode, start step, add_noise, mask processing, the loop, decode) is diffusers'.
Ancestral samplers' per-step noise comes from a torch generator seeded with the request's
seed, so a rerun is identical but differs from jaxgen's.

Imported only where a peer is asked for: torch and diffusers come with the `test` extra.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from jaxgen.default_model import RECOMMENDED
from jaxgen.engine import sdxl
from jaxgen.engine.denoise import ENCODE_NOISE, MASKED_ENCODE_NOISE, initial_noise
from jaxgen.engine.inputs import noise_ids
from jaxgen.eval.shapes_eval import Generate
from jaxgen.images import ImageInputs
from jaxgen.requests import MICRO_CONDITIONING, GenerationRequest
from jaxgen.weights.model_dir import SDXL_PIPELINES as SDXL_CLASSES
from jaxgen.weights.model_dir import model_root

# jaxgen's sampler names -> diffusers' scheduler class and the options that make it so.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2,
                         "use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
}
PIPELINES = {"text-to-image": "StableDiffusionPipeline",
             "image-to-image": "StableDiffusionImg2ImgPipeline",
             "inpainting": "StableDiffusionInpaintPipeline"}
SDXL_PIPELINES = {mode: name.replace("StableDiffusion", "StableDiffusionXL")
                  for mode, name in PIPELINES.items()}


def _import_diffusers() -> tuple[Any, Any]:
    try:
        import diffusers
        import torch
    except ImportError as err:
        raise ImportError("the diffusers peer needs torch and diffusers: "
                          "pip install -e '.[test]'") from err
    return torch, diffusers


class DiffusersPeer:
    """diffusers' pipelines on one model directory, in float32 (torch's CPU half-precision
    kernels are slow or missing); built once, called per request."""

    def __init__(self, model_dir: str | Path):
        self.torch, self.diffusers = _import_diffusers()
        index = json.loads((model_root(model_dir) / "model_index.json").read_text())
        self.sdxl = index.get("_class_name") in SDXL_CLASSES
        self._force_zeros = index.get("force_zeros_for_empty_prompt", True)
        # A refiner: Img2Img and Inpaint pipelines with aesthetic-score time ids.
        self._aesthetic = bool(index.get("requires_aesthetics_score", False))
        if self.sdxl:
            # An invisible watermark would alter the images jaxgen is compared with.
            loader = self.diffusers.StableDiffusionXLImg2ImgPipeline if self._aesthetic else \
                self.diffusers.StableDiffusionXLPipeline
            base = loader.from_pretrained(str(model_dir), add_watermarker=False,
                                          dtype=self.torch.float32)
        else:
            base = self.diffusers.StableDiffusionPipeline.from_pretrained(
                str(model_dir), safety_checker=None, requires_safety_checker=False,
                dtype=self.torch.float32)
        self.components = base.components
        self.latent_channels = base.vae.config.latent_channels
        self.vae_factor = base.vae_scale_factor
        self._pipes: dict[tuple[str, str], Any] = {}

    def pipeline(self, mode: str, sampler: str) -> Any:
        """diffusers' pipeline for `mode`, its scheduler the one `sampler` names."""
        if (mode, sampler) not in self._pipes:
            name, options = SCHEDULERS[sampler]
            config = self.components["scheduler"].config
            scheduler = getattr(self.diffusers, name).from_config(config, **options)
            names, extra = PIPELINES, {}
            if self.sdxl:
                names, extra = SDXL_PIPELINES, {
                    "add_watermarker": False,
                    "force_zeros_for_empty_prompt": self._force_zeros}
                if mode != "text-to-image":
                    extra["requires_aesthetics_score"] = self._aesthetic
            pipe = getattr(self.diffusers, names[mode])(
                **{**self.components, "scheduler": scheduler}, **extra)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[(mode, sampler)] = pipe
        return self._pipes[(mode, sampler)]

    def images(self, request: GenerationRequest, inputs: ImageInputs | None = None,
               indices: list[int] | None = None) -> np.ndarray:
        """uint8 [N, H, W, 3]: the request's images `indices` (default all) as diffusers makes
        them. `request` is final (seed and size filled in, as GeneratedImage.request);
        `inputs` are its init image and mask as read (GeneratedImage.inputs)."""
        if request.seed is None or request.height is None or request.width is None:
            raise ValueError("the peer needs a final request (seed, height and width filled "
                             "in): GeneratedImage.request")
        if (inputs is None) != (request.mode == "text-to-image"):
            raise ValueError(f"a {request.mode} request needs its ImageInputs exactly when it "
                             "has an init_image")
        indices = list(range(request.num_images)) if indices is None else indices
        return np.stack([self._one(request, inputs, k) for k in indices])

    @staticmethod
    def _micro_conditioning(r: GenerationRequest) -> dict[str, Any]:
        """All six pairs, filled in as jaxgen fills them, when the request gives any: diffusers'
        own defaults for the negatives differ between its pipelines (the base pipeline ignores
        negative sizes unless both are given; Img2Img's negative crop is (0, 0))."""
        if all(getattr(r, name) is None for name in MICRO_CONDITIONING):
            return {}
        return sdxl.micro_conditioning(r)

    def _one(self, r: GenerationRequest, inputs: ImageInputs | None, index: int) -> np.ndarray:
        torch = self.torch
        f = self.vae_factor
        shape = (r.height // f, r.width // f, self.latent_channels)
        ids = noise_ids(np.array([r.seed], np.uint64), np.array([index]))
        tensor = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())  # noqa: E731
        noise = tensor(initial_noise(ids, shape))
        pipe = self.pipeline(r.mode, r.sampler)
        common = dict(prompt=r.prompt, negative_prompt=r.negative_prompt or None,
                      **({"prompt_2": r.prompt_2} if r.prompt_2 is not None else {}),
                      **self._micro_conditioning(r),
                      num_inference_steps=r.steps, guidance_scale=r.guidance,
                      generator=torch.Generator().manual_seed(int(r.seed)), output_type="np")
        with torch.inference_mode():
            if inputs is None:
                out = pipe(height=r.height, width=r.width, latents=noise, **common)
            else:
                from PIL import Image

                eps = [tensor(initial_noise(ids, shape, ENCODE_NOISE))]
                if r.mode == "inpainting":
                    # The order diffusers encodes in: the init image only when a 4-channel UNet
                    # blends it back or strength < 1 noises it, then the masked image.
                    masked = tensor(initial_noise(ids, shape, MASKED_ENCODE_NOISE))
                    uses_image = pipe.unet.config.in_channels == 4 or r.strength < 1
                    eps = [*eps, masked] if uses_image else [masked]
                image = Image.fromarray(inputs.image)
                extra: dict[str, Any] = dict(image=image, strength=r.strength)
                if self._aesthetic:
                    score, negative = sdxl.aesthetic_scores(r)
                    extra |= dict(aesthetic_score=score, negative_aesthetic_score=negative)
                if r.mode == "inpainting":
                    mask = np.round(np.asarray(inputs.mask) * 255).astype(np.uint8)
                    extra |= dict(mask_image=Image.fromarray(mask, "L"), height=r.height,
                                  width=r.width)
                with _jaxgen_noise(pipe, noise, eps):
                    out = pipe(**extra, **common)
        return np.round(np.clip(out.images[0], 0, 1) * 255).astype(np.uint8)


@contextlib.contextmanager
def _jaxgen_noise(pipe: Any, noise: Any, eps: list[Any]) -> Iterator[None]:
    """Within: the pipeline's module draws `noise` where it draws its initial noise, and
    `eps` (in order) as the unit noise of its VAE latent samples."""
    module = type(pipe).__module__
    queue = list(eps)

    def sample(encoder_output: Any, generator: Any = None, sample_mode: str = "sample") -> Any:
        dist = encoder_output.latent_dist
        return dist.mean + dist.std * queue.pop(0)

    def randn(shape: Any, *args: Any, **kwargs: Any) -> Any:
        if tuple(shape) != tuple(noise.shape):
            raise ValueError(f"the pipeline drew noise of shape {tuple(shape)}, "
                             f"jaxgen's is {tuple(noise.shape)}")
        return noise.clone()

    with mock.patch(f"{module}.retrieve_latents", sample), mock.patch(f"{module}.randn_tensor",
                                                                      randn):
        yield
    if queue:
        raise RuntimeError(f"{type(pipe).__name__} encoded fewer images than the peer expected: "
                           "its diffusers version samples the VAE differently")


def diffusers_generator(model_dir: str | Path, *, guidance: float = RECOMMENDED["guidance"],
                        steps: int = RECOMMENDED["steps"],
                        sampler: str = RECOMMENDED["sampler"]) -> Generate:
    """ShapesEval's Generate through the peer (`DiffusersPeer`, the code `jaxgen compare` runs):
    diffusers' StableDiffusionPipeline with the scheduler of `sampler`, at the model's native
    size, each prompt's image from jaxgen's initial noise for its seed."""
    peer = DiffusersPeer(model_dir)
    side = peer.components["unet"].config.sample_size * peer.vae_factor

    def generate(prompts: list[str], seeds: np.ndarray) -> np.ndarray:
        return np.concatenate([
            peer.images(GenerationRequest(prompt, seed=int(seed), guidance=guidance,
                                          steps=steps, height=side, width=side,
                                          sampler=sampler))
            for prompt, seed in zip(prompts, seeds, strict=True)])

    return generate
