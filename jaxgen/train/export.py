"""Trained params -> a diffusers-format directory (jaxgen and diffusers both open it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxgen.models import CLIPTextConfig, UNetConfig, VAEConfig
from jaxgen.schedulers import SchedulerConfig
from jaxgen.weights.model_dir import (
    RECOMMENDED_FILE,
    DiffusionModel,
    load_model,
    save_model,
)


def shapes_scheduler_config(schedule: SchedulerConfig) -> dict[str, Any]:
    """A DPMSolverMultistepScheduler config for the schedule the model was trained on.

    DPM-Solver++(2M) is what the evaluation samples with, so diffusers' pipeline uses it too;
    the solver keys are ones jaxgen's SchedulerConfig knows to ignore.
    """
    return {"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.42.1",
            **schedule.to_dict(), "algorithm_type": "dpmsolver++", "solver_order": 2,
            "solver_type": "midpoint", "lower_order_final": True, "use_karras_sigmas": False}


def export_model(out_dir: str | Path, *, name: str, unet: UNetConfig, vae: VAEConfig,
                 text_encoder: CLIPTextConfig, schedule: SchedulerConfig, tokenizer: Any,
                 params: dict[str, Any], overwrite: bool = True,
                 dtype: str = "float32", empty_prompt: bool = False) -> DiffusionModel:
    """Write `params` ({unet, vae, text_encoder}) as a model directory and load it back.

    The weight files hold `dtype` ("float16" halves the size; jaxgen loads them back into
    float32). Loading back gives the model its content hash and proves the directory is complete.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"export dtype={dtype!r}: must be float32 or float16")
    out = Path(out_dir)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out}: export directory exists (pass overwrite=True)")
        shutil.rmtree(out)
    model = DiffusionModel(
        name=name, hash="", unet=unet, vae=vae, text_encoder=text_encoder,
        scheduler_config=shapes_scheduler_config(schedule), tokenizer=tokenizer,
        params=jax.tree.map(lambda a: np.asarray(a).astype(dtype), params),
        raw_configs={})
    save_model(model, out)
    if empty_prompt:
        (out / RECOMMENDED_FILE).write_text(json.dumps({"empty_prompt": True}, indent=2) + "\n")
    return load_model(out)
