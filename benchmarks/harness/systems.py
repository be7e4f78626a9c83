"""The systems under test, each used inside its own worker process (see worker.py).

Every system answers the same ops: `prepare(batch)` (first call: compile / warm-up),
`time(batch)` (one timed generation of `batch` images, prompts in, host images out),
`unet(batch, repeats)` (one guided UNet evaluation, 2 x batch latents) and
`matmul(repeats)` (the machine's matmul peak seen by that framework).
"""

from __future__ import annotations

import math
import time
from typing import Any

from benchmarks.harness.timing import PeakSystem, best_and_median, torch_matmul

PROMPTS = ["a red circle on a blue background", "a green square", "a photo of a blue triangle",
           "a red square on a green background", "a blue circle", "a green triangle on a red"
           " background", "a photo of a red triangle", "a square on a blue background"]


def make(system: str, config: dict[str, Any]):
    """`diffusers_1t`: diffusers with one thread (see threads_for)."""
    if system.startswith("diffusers_") and system.endswith("t"):
        return DiffusersSystem({**config, "threads": int(system[len("diffusers_"):-1])})
    return {"jaxgen": JaxgenSystem, "diffusers": DiffusersSystem, "peak": PeakSystem,
            "warmstart": JaxgenSystem}[system](config)


def prompts(batch: int, offset: int = 0) -> list[str]:
    return [PROMPTS[(i + offset) % len(PROMPTS)] for i in range(batch)]


class JaxgenSystem:
    def __init__(self, config: dict[str, Any]):
        import jax

        from jaxgen.engine.generator import Generator  # noqa: F401  (import cost counted here)
        from jaxgen.weights.model_dir import load_model

        self.cfg = config
        self.jax = jax
        t = time.perf_counter()
        self.model = load_model(config["model"])
        self.model_load_s = time.perf_counter() - t
        self.gen = None
        self.calls = 0

    def _generator(self, batch: int):
        import jax.numpy as jnp

        from jaxgen.engine.generator import Generator
        from jaxgen.engine.sharding import make_mesh

        if self.gen is None or self.gen.batch_size != batch:
            self.gen = None  # free the previous program's params before placing new ones
            devices = self.jax.local_devices()
            mesh = make_mesh(devices=devices[:math.gcd(batch, len(devices))])
            self.gen = Generator(self.model, mesh=mesh, dtype=jnp.dtype(self.cfg["dtype"]),
                                 batch_size=batch, compilation_cache=self.cfg["cache_dir"],
                                 attention=self.cfg.get("attention"))
        return self.gen

    def _requests(self, batch: int):
        from jaxgen.requests import GenerationRequest

        c = self.cfg
        self.calls += 1  # fresh seeds each call: nothing can be reused between repeats
        return [GenerationRequest(p, seed=self.calls * 1000 + i, guidance=c["guidance"],
                                  steps=c["steps"], height=c["size"], width=c["size"],
                                  sampler=c["sampler"])
                for i, p in enumerate(prompts(batch, self.calls))]

    def _generate(self, batch: int) -> None:
        images = [g.image for g in self._generator(batch).generate(self._requests(batch))]
        assert len(images) == batch and images[0].shape == (self.cfg["size"],) * 2 + (3,)

    def prepare(self, batch: int) -> dict[str, Any]:
        from jaxgen.models.layers import record_attention

        t = time.perf_counter()
        with record_attention() as choices:
            self._generate(batch)
        first = time.perf_counter() - t
        return {"first_call_s": first, "model_load_s": self.model_load_s,
                "attention": _count(choices), **self._flops(batch)}

    def time(self, batch: int) -> dict[str, Any]:
        t = time.perf_counter()
        self._generate(batch)
        return {"seconds": time.perf_counter() - t}

    def _flops(self, batch: int) -> dict[str, float]:
        """XLA's counts: the whole program (loop body once) and each part per image."""
        import jax.numpy as jnp

        from benchmarks.harness.flops import attention_matmul_flops, unet_flops
        from jaxgen.engine.grouping import SamplingSpec

        c, gen = self.cfg, self._generator(batch)
        spec = SamplingSpec(c["size"], c["size"], c["steps"], c["sampler"])
        program = gen.compile(spec).cost_analysis()["flops"]
        unet_m, vae_m, text_m = self.model.modules(gen.dtype)
        f, t_len = self.model.latent_factor, self.model.tokenizer.model_max_length
        lat = jnp.zeros((2, c["size"] // f, c["size"] // f, self.model.unet.in_channels),
                        gen.dtype)
        ctx = jnp.zeros((2, t_len, self.model.unet.cross_attention_dim), gen.dtype)
        ids = jnp.zeros((2, t_len), jnp.int32)
        p = gen.params

        def count(fn, *args) -> float:  # params go in as arguments: closed over, they would
            return float(self.jax.jit(fn).lower(*args).cost_analysis()["flops"]) / 2  # be consts

        unet = count(lambda w, x, k: unet_m.apply({"params": w}, x, jnp.array(1), k),
                     p["unet"], lat, ctx) * 2  # two latents (guided) per image
        text = count(lambda w, i: text_m.apply({"params": w}, i), p["text_encoder"], ids) * 2
        vae = count(lambda w, z: vae_m.apply({"params": w}, z, method=vae_m.decode), p["vae"],
                    lat)
        side = c["size"] // f
        return {"xla_program_flops_loop_once": float(program),
                "xla_unet_flops_per_image_step": unet, "xla_text_flops_per_image": text,
                "xla_vae_flops_per_image": vae,
                "flops_per_image": text + c["steps"] * unet + vae,
                "analytic_unet_flops_per_image_step":
                    2 * unet_flops(self.model.unet, side, side, t_len),
                "analytic_unet_attention_share":
                    attention_matmul_flops(self.model.unet, side, side, t_len)
                    / unet_flops(self.model.unet, side, side, t_len)}

    def unet(self, batch: int, repeats: int) -> dict[str, Any]:
        """One guided UNet evaluation (2 x batch latents) under jit, as the loop runs it."""
        import jax.numpy as jnp

        from jaxgen.engine.sharding import batch_sharding

        c, gen = self.cfg, self._generator(batch)
        f, t_len = self.model.latent_factor, self.model.tokenizer.model_max_length
        unet_m = self.model.modules(gen.dtype)[0]
        side = c["size"] // f
        data = batch_sharding(gen.mesh)  # split over the devices, as the program splits it
        x = self.jax.device_put(
            jnp.ones((2 * batch, side, side, self.model.unet.in_channels), gen.dtype), data)
        ctx = self.jax.device_put(
            jnp.ones((2 * batch, t_len, self.model.unet.cross_attention_dim), gen.dtype), data)
        fn = self.jax.jit(lambda p, x, k: unet_m.apply({"params": p}, x, jnp.array(500), k))
        params = gen.params["unet"]
        fn(params, x, ctx).block_until_ready()
        best, median = best_and_median(lambda: fn(params, x, ctx).block_until_ready(), repeats)
        return {"best_s": best, "median_s": median}

    def matmul(self, repeats: int, side: int | None = None) -> dict[str, Any]:
        return PeakSystem(self.cfg).matmul(repeats, side)

    def first_image(self, process_start: float) -> dict[str, Any]:
        """Warm start: import + load (done in __init__) + first image of batch 1."""
        t = time.perf_counter()
        self._generate(1)
        now = time.perf_counter()
        return {"first_image_s": now - t, "start_to_first_image_s": now - process_start,
                "model_load_s": self.model_load_s}


class DiffusersSystem:
    def __init__(self, config: dict[str, Any]):
        import torch
        from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

        self.cfg, self.torch = config, torch
        self.device = "cuda" if config["device"] == "gpu" else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(config["threads"])
        self.dtype = getattr(torch, config["torch_dtype"])
        t = time.perf_counter()
        pipe = StableDiffusionPipeline.from_pretrained(config["model"], torch_dtype=self.dtype)
        if config["sampler"] == "dpmpp_2m":
            pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        elif config["sampler"] != "ddim":
            raise ValueError(f"sampler {config['sampler']!r}: the benchmark runs ddim or dpmpp_2m")
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.model_load_s = time.perf_counter() - t
        self.calls = 0

    def _sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def _generate(self, batch: int) -> None:
        c = self.cfg
        self.calls += 1
        gens = [self.torch.Generator(self.device).manual_seed(self.calls * 1000 + i)
                for i in range(batch)]
        with self.torch.inference_mode():
            images = self.pipe(prompts(batch, self.calls), height=c["size"], width=c["size"],
                               num_inference_steps=c["steps"], guidance_scale=c["guidance"],
                               generator=gens, output_type="np").images
        self._sync()
        assert images.shape == (batch, c["size"], c["size"], 3)

    def prepare(self, batch: int) -> dict[str, Any]:
        t = time.perf_counter()
        self._generate(batch)
        return {"first_call_s": time.perf_counter() - t, "model_load_s": self.model_load_s,
                "attention": type(self.pipe.unet.attn_processors[
                    next(iter(self.pipe.unet.attn_processors))]).__name__}

    def time(self, batch: int) -> dict[str, Any]:
        t = time.perf_counter()
        self._generate(batch)
        return {"seconds": time.perf_counter() - t}

    def unet(self, batch: int, repeats: int) -> dict[str, Any]:
        torch, c, unet = self.torch, self.cfg, self.pipe.unet
        side = c["size"] // self.pipe.vae_scale_factor
        x = torch.ones(2 * batch, unet.config.in_channels, side, side, dtype=self.dtype,
                       device=self.device)
        ctx = torch.ones(2 * batch, self.pipe.tokenizer.model_max_length,
                         unet.config.cross_attention_dim, dtype=self.dtype, device=self.device)
        t = torch.tensor(500, device=self.device)

        def run() -> None:
            with torch.inference_mode():
                unet(x, t, encoder_hidden_states=ctx)
            self._sync()

        run()
        best, median = best_and_median(run, repeats)
        return {"best_s": best, "median_s": median}

    def matmul(self, repeats: int, side: int | None = None) -> dict[str, Any]:
        return torch_matmul(self.torch, self.dtype, self.device, repeats, side)


def _count(choices: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for impl, head_dim in choices:
        key = f"{impl}:d{head_dim}"
        out[key] = out.get(key, 0) + 1
    return out
