"""The training benchmark's systems: one stage-2 train step of the default model, two ways.

Both train the UNet of a model directory (float32 weights, computing in config["precision"])
on the denoising loss, reading its VAE and text encoder frozen, on the same batches of shapes
scenes: VAE posterior sample, random timestep, MSE against the model scheduler's target (v
for the default model), gradients clipped at 1.0, AdamW, EMA of the weights; optimiser
settings are stage 2's. jaxgen runs the step `jaxgen train` runs
(jaxgen.train.loop.make_train_step under one jax.jit); diffusers runs the same step written
the way diffusers' train_text_to_image.py example writes it.

Ops: `prepare()` (first step: compile / warm-up), `time(steps)` (that many steps, seconds),
`flops()` (XLA's count for one step; jaxgen only) and `matmul(repeats, dtype)` (the
framework's square-matmul rate on this machine).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

from benchmarks.harness.timing import PeakSystem, torch_matmul
from jaxgen.train.recipe import CONFIG_DIR

STAGE_CONFIG = CONFIG_DIR / "shapes_unet.yaml"


def make(system: str, config: dict[str, Any]):
    return {"train_jaxgen": JaxgenTrain, "train_diffusers": DiffusersTrain}[system](config)


def stage2_batches(config: dict[str, Any], tokenizer: Any) -> list[dict[str, Any]]:
    """`config["distinct"]` batches of stage 2's data, built before timing (the loop builds
    each while the previous step runs; it takes ~6 ms of a ~0.8 s step here)."""
    from jaxgen.shapes.split import ShapesData
    from jaxgen.train.data import shapes_batch

    return [shapes_batch(ShapesData(), s, config["batch"], tokenizer)
            for s in range(config["distinct"])]


def stage2_train_config(precision: str | None = None) -> Any:
    """Stage 2's optimiser settings, computing in `precision` if given (jaxgen.train.config
    imports no jax: torch's RSS stays its own)."""
    from jaxgen.train.config import TrainConfig, from_section, read_yaml

    cfg = from_section(TrainConfig, read_yaml(STAGE_CONFIG)["train"], str(STAGE_CONFIG))
    return dataclasses.replace(cfg, precision=precision) if precision else cfg


class _Timed:
    """prepare/time around a system's `_run(steps)`, which leaves `last_loss` behind."""

    last_loss: float
    facts: dict[str, Any] = {}  # reported with the first step

    def _run(self, steps: int) -> None:
        raise NotImplementedError

    def _timed(self, steps: int) -> dict[str, Any]:
        t = time.perf_counter()
        self._run(steps)
        return {"seconds": time.perf_counter() - t, "steps": steps, "loss": self.last_loss}

    def prepare(self) -> dict[str, Any]:
        out = self._timed(1)
        return {"first_step_s": out["seconds"], "loss": out["loss"], **self.facts}

    def time(self, steps: int) -> dict[str, Any]:
        return self._timed(steps)


class JaxgenTrain(_Timed):
    def __init__(self, config: dict[str, Any]):
        import jax
        import numpy as np

        from jaxgen.schedulers import SchedulerConfig
        from jaxgen.train.diffusion import diffusion_loss_fn
        from jaxgen.train.loop import data_mesh, make_train_step, shard_train_step
        from jaxgen.train.state import create_state
        from jaxgen.weights.model_dir import load_model

        self.jax = jax
        model = load_model(config["model"])
        cfg = stage2_train_config(config.get("precision"))
        unet, vae, text = model.modules(cfg.compute_dtype())
        schedule = SchedulerConfig.from_dict(model.scheduler_config)  # diffusers reads it too
        loss = diffusion_loss_fn(unet, text, vae, schedule, model.vae.scaling_factor)
        self.step = shard_train_step(make_train_step(loss, cfg),
                                     data_mesh(batch_size=config["batch"]))
        p = jax.tree.map(lambda a: np.asarray(a, np.float32), model.params)
        frozen = {"vae": p["vae"], "text_encoder": p["text_encoder"]}
        self.state = self.step.place_state(
            create_state({"unet": p["unet"]}, cfg, frozen=frozen))
        batches = stage2_batches(config, model.tokenizer)
        self.batches = [self.step.place_batch(b) for b in batches]
        # what one UNet call sees, for FLOP cross-checks
        self.facts = {"latent_side": batches[0]["images"].shape[1] // model.vae.downscale,
                       "text_len": batches[0]["input_ids"].shape[1]}
        self.done = 0

    def _run(self, steps: int) -> None:
        metrics = None
        for _ in range(steps):
            batch = self.batches[self.done % len(self.batches)]
            self.state, metrics = self.step(self.state, batch)
            self.done += 1
        self.jax.block_until_ready((self.state, metrics))
        self.last_loss = float(metrics["loss"])

    def flops(self) -> dict[str, Any]:
        compiled = self.step.fn.lower(self.state, self.batches[0]).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        # XLA counts one device's share of the split batch
        return {"flops_per_step": float(cost["flops"]) * self.step.mesh.size}

    def matmul(self, repeats: int, dtype: str = "float32",
               side: int | None = None) -> dict[str, Any]:
        return PeakSystem({"device": "cpu", "dtype": dtype}).matmul(repeats, side)


class DiffusersTrain(_Timed):
    def __init__(self, config: dict[str, Any]):
        import torch
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        torch.manual_seed(0)
        torch.set_num_threads(config["threads"])
        root = config["model"]
        self.torch = torch
        f32 = {"torch_dtype": torch.float32}  # the shipped files are float16
        self.unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet", **f32).train()
        self.vae = AutoencoderKL.from_pretrained(root, subfolder="vae", **f32)
        self.vae.requires_grad_(False)
        self.text = CLIPTextModel.from_pretrained(root, subfolder="text_encoder", **f32)
        self.text.requires_grad_(False)
        self.scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
        tokenizer = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
        self.params = list(self.unet.parameters())
        self.ema = [p.detach().clone() for p in self.params]
        self.cfg = cfg = stage2_train_config()
        # mixed precision as diffusers' example runs it (accelerate's bf16 is this autocast)
        self.autocast = (torch.autocast("cpu", dtype=torch.bfloat16)
                         if config.get("precision") == "bfloat16" else contextlib.nullcontext())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.learning_rate, betas=(cfg.b1, cfg.b2),
                                     weight_decay=cfg.weight_decay)
        # stage 2's linear warmup (its cosine is ~flat this early), so the losses compare
        self.lr = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, s / cfg.warmup_steps))
        self.batches = [{"images": torch.from_numpy(b["images"]).permute(0, 3, 1, 2).contiguous(),
                         "input_ids": torch.from_numpy(b["input_ids"]).long()}
                        for b in stage2_batches(config, tokenizer)]
        self.done = 0

    def _step(self, batch: dict[str, Any]) -> float:
        torch, sched = self.torch, self.scheduler
        with torch.no_grad(), self.autocast:
            latents = self.vae.encode(batch["images"]).latent_dist.sample().float()
            latents = latents * self.vae.config.scaling_factor
            context = self.text(batch["input_ids"])[0]
        noise = torch.randn_like(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],))
        noisy = sched.add_noise(latents, noise, t)
        v = sched.config.prediction_type == "v_prediction"
        target = sched.get_velocity(latents, noise, t) if v else noise
        with self.autocast:
            out = self.unet(noisy, t, encoder_hidden_states=context).sample
        loss = torch.nn.functional.mse_loss(out.float(), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        self.lr.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, self.params, 1 - self.cfg.ema_decay)
        return float(loss)

    def _run(self, steps: int) -> None:
        for _ in range(steps):
            self.last_loss = self._step(self.batches[self.done % len(self.batches)])
            self.done += 1

    def matmul(self, repeats: int, dtype: str = "float32",
               side: int | None = None) -> dict[str, Any]:
        return torch_matmul(self.torch, getattr(self.torch, dtype), "cpu", repeats, side)
