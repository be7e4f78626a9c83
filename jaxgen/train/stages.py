"""The default shapes model's training stages, as `jaxgen train` runs them (its recipe,
jaxgen/configs/train/shapes.yaml, names them vae, text, unet, finetune, wording, pairs).

vae trains the VAE. text pretrains the text encoder alone to state each caption's scene
(jaxgen.train.text), and unet trains the UNet on latents of the frozen VAE (its EMA weights),
reading that encoder frozen; without it (`--set unet.reads.text_encoder=null`) unet trains a
fresh text encoder together with the UNet. finetune trains unet's EMA weights on with a fresh
optimiser at a lower learning rate (its own `train` and `timesteps` sections). wording trains
the text encoder alone, through the frozen UNet, on captions whose wording varies
(jaxgen.train.wording); pairs trains the UNet on, mostly on two-object scenes. Each stage lives
in its own work directory (orbax checkpoints + metrics.jsonl) and resumes from its latest
checkpoint when run again.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxgen.models import (
    AutoencoderKL,
    CLIPTextConfig,
    CLIPTextModel,
    UNet2DConditionModel,
    UNetConfig,
    VAEConfig,
)
from jaxgen.schedulers import SchedulerConfig
from jaxgen.shapes import IMAGE_SIZE
from jaxgen.shapes.split import ShapesData
from jaxgen.train.checkpoint import Checkpoints
from jaxgen.train.config import TrainConfig, from_section, unknown
from jaxgen.train.data import images_batch, shapes_batch
from jaxgen.train.diffusion import Timesteps, diffusion_loss_fn, init_denoiser
from jaxgen.train.loop import (
    MetricsLog,
    RunSummary,
    data_mesh,
    make_train_step,
    run_training,
    shard_train_step,
)
from jaxgen.train.state import TrainState, create_state
from jaxgen.train.text import init_text_stage, scene_loss_fn, text_batch
from jaxgen.train.vae import VAELoss, init_vae, latent_scaling_factor, vae_loss_fn


def _check_sections(raw: dict[str, Any], allowed: set[str], source: str) -> None:
    for name in raw:
        if name not in allowed:
            raise unknown(source, "section", str(name), allowed)


@dataclasses.dataclass(frozen=True)
class VAEStage:
    vae: VAEConfig
    loss: VAELoss
    train: TrainConfig

    @classmethod
    def from_dict(cls, raw: dict[str, Any], src: str) -> VAEStage:
        """A stage config's sections; `src` (its file) names it in errors."""
        _check_sections(raw, {"vae", "loss", "train"}, src)
        return cls(vae=VAEConfig.from_dict(raw.get("vae") or {}, f"{src}: vae"),
                   loss=from_section(VAELoss, raw.get("loss"), f"{src}: loss"),
                   train=from_section(TrainConfig, raw.get("train"), f"{src}: train"))


@dataclasses.dataclass(frozen=True)
class DenoiserInit:
    """How stage 2 draws its first parameters (the `init` section)."""

    # Zero each residual branch's last layer and conv_out, as Latent Diffusion does
    # (jaxgen.train.diffusion.zero_residual_outputs); false: flax's default init throughout.
    zero_outputs: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.zero_outputs, bool):
            raise ValueError(f"init zero_outputs={self.zero_outputs!r}: must be true or false")


@dataclasses.dataclass(frozen=True)
class UNetStage:
    unet: UNetConfig
    text_encoder: CLIPTextConfig
    schedule: SchedulerConfig
    data: ShapesData
    train: TrainConfig
    init: DenoiserInit = DenoiserInit()
    timesteps: Timesteps = Timesteps()

    @classmethod
    def from_dict(cls, raw: dict[str, Any], src: str, tokenizer: Any) -> UNetStage:
        """A stage config's sections; the text encoder's vocabulary and length come from
        `tokenizer`."""
        _check_sections(raw, {"unet", "text_encoder", "scheduler", "data", "train", "init",
                              "timesteps"}, src)
        text = dict(raw.get("text_encoder") or {}, vocab_size=len(tokenizer),
                    eos_token_id=tokenizer.eos_token_id,
                    max_position_embeddings=tokenizer.model_max_length)
        return cls(unet=UNetConfig.from_dict(raw.get("unet") or {}, f"{src}: unet"),
                   text_encoder=CLIPTextConfig.from_dict(text, f"{src}: text_encoder"),
                   schedule=SchedulerConfig.from_dict(raw.get("scheduler") or {}),
                   data=from_section(ShapesData, raw.get("data"), f"{src}: data"),
                   train=from_section(TrainConfig, raw.get("train"), f"{src}: train"),
                   init=from_section(DenoiserInit, raw.get("init"), f"{src}: init"),
                   timesteps=from_section(Timesteps, raw.get("timesteps"), f"{src}: timesteps"))

    def continued(self, raw: dict[str, Any], src: str) -> UNetStage:
        """This stage with the `train` and `timesteps` of a continuation config (fine-tune).

        The models, scheduler and data stay this stage's: a continuation trains the same
        weights on, so only how it trains may differ.
        """
        _check_sections(raw, {"train", "timesteps", "passes"}, src)
        return dataclasses.replace(
            self, train=from_section(TrainConfig, raw.get("train"), f"{src}: train"),
            timesteps=from_section(Timesteps, raw.get("timesteps"), f"{src}: timesteps"))

    def reworded(self, raw: dict[str, Any], src: str) -> UNetStage:
        """This stage with the `train` and `data` of a wording or pairs config.

        `data` fields override this stage's (vary_wording, two_object_share); timesteps are
        drawn uniformly.
        """
        _check_sections(raw, {"train", "data"}, src)
        fields = {**dataclasses.asdict(self.data), **(raw.get("data") or {})}
        data = from_section(ShapesData, fields, f"{src}: data")
        return dataclasses.replace(
            self, data=data, timesteps=Timesteps(),
            train=from_section(TrainConfig, raw.get("train"), f"{src}: train"))


def finetune_pass_count(raw: dict[str, Any], src: str) -> int:
    """How many passes the fine-tune stage runs: its config's `passes` (default 1)."""
    passes = raw.get("passes", 1)
    # Zero passes would skip the stage without a word.
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"{src}: passes={passes!r}: must be a whole number >= 1")
    return passes


def finetune_passes(stage: UNetStage, passes: int) -> list[UNetStage]:
    """`passes` copies of a continued stage (finetune_pass_count), pass k with seed + k - 1.

    Each pass trains with a fresh optimiser (warmup + cosine) on the previous pass's EMA
    weights; run_unet_stage's first_batch gives it the batches after the previous pass's last.
    """
    return [dataclasses.replace(stage, train=dataclasses.replace(stage.train,
                                                                 seed=stage.train.seed + k))
            for k in range(passes)]


def first_batches(stages: Sequence[UNetStage]) -> list[int]:
    """Each denoiser stage's first batch when `stages` run in this order (2, 3's passes, 4, 5).

    A stage starts after the last batch of every stage before it, so each trains on new scenes
    (run_unet_stage's and run_wording_stage's first_batch).
    """
    return list(itertools.accumulate((s.train.steps for s in stages[:-1]), initial=0))


def train_section(raw: dict[str, Any], src: str) -> TrainConfig:
    """The `train` section of a config holding nothing else (the text stage's)."""
    _check_sections(raw, {"train"}, src)
    return from_section(TrainConfig, raw.get("train"), f"{src}: train")


@dataclasses.dataclass(frozen=True)
class StageResult:
    params: Any  # the EMA params: what gets exported
    state: TrainState
    summary: RunSummary

    @property
    def finished(self) -> bool:
        return self.summary.finished


def _run(state: TrainState, loss_fn: Any, batches: Any, cfg: TrainConfig, work_dir: Path,
         minutes: float | None, mesh: Mesh | None, compiler_options: dict | None,
         progress: bool, desc: str) -> StageResult:
    mesh = mesh or data_mesh(batch_size=cfg.batch_size)
    step = shard_train_step(make_train_step(loss_fn, cfg), mesh, compiler_options)
    checkpoints = Checkpoints(work_dir / "checkpoints", cfg.checkpoint_every)
    try:
        state = checkpoints.restore_latest(step.place_state(state))
        summary = run_training(state, step, batches, cfg, checkpoints=checkpoints,
                               log=MetricsLog(work_dir / "metrics.jsonl"), minutes=minutes,
                               desc=desc, progress=progress)
    finally:
        checkpoints.close()
    return StageResult(summary.state.ema_params, summary.state, summary)


def run_vae_stage(stage: VAEStage, work_dir: str | Path, *, data: ShapesData | None = None,
                  minutes: float | None = None, mesh: Mesh | None = None,
                  compiler_options: dict | None = None, progress: bool = True) -> StageResult:
    # Modules compute in cfg.compute_dtype(); flax casts the float32 params at each use, so
    # the gradients and the optimiser state stay float32 (mixed precision).
    vae = AutoencoderKL(stage.vae, stage.train.compute_dtype())
    cfg, data = stage.train, data or ShapesData()
    state = create_state(init_vae(vae, cfg.seed), cfg)
    return _run(state, vae_loss_fn(vae, stage.loss),
                lambda s: shapes_batch(data, s, cfg.batch_size), cfg, Path(work_dir), minutes,
                mesh, compiler_options, progress, "vae")


def calibrated_vae(vae_config: VAEConfig, vae_params: Any) -> VAEConfig:
    """The VAE config with SD's latent scale measured on 256 training scenes."""
    images = images_batch(np.arange(256))
    scale = latent_scaling_factor(AutoencoderKL(vae_config), vae_params, images)
    return dataclasses.replace(vae_config, scaling_factor=round(scale, 5))


def run_text_stage(stage: UNetStage, cfg: TrainConfig, tokenizer: Any, work_dir: str | Path,
                   *, minutes: float | None = None, mesh: Mesh | None = None,
                   compiler_options: dict | None = None, progress: bool = True) -> StageResult:
    """Stage 0: `stage`'s text encoder (fresh) + a scene readout, trained with `cfg`.

    The result's params are {text_encoder, scene_head}; stage 2 keeps the text encoder.
    """
    text = CLIPTextModel(stage.text_encoder, cfg.compute_dtype())
    state = create_state(init_text_stage(text, cfg.seed), cfg)
    return _run(state, scene_loss_fn(text),
                lambda s: text_batch(stage.data, s, cfg.batch_size, tokenizer), cfg,
                Path(work_dir), minutes, mesh, compiler_options, progress, "text")


def run_unet_stage(stage: UNetStage, vae_config: VAEConfig, vae_params: Any, tokenizer: Any,
                   work_dir: str | Path, *, minutes: float | None = None,
                   mesh: Mesh | None = None, compiler_options: dict | None = None,
                   progress: bool = True, start_params: Any = None, first_batch: int = 0,
                   text_params: Any = None, desc: str = "unet") -> StageResult:
    """Train the UNet (+ text encoder); `vae_config.scaling_factor` must already be calibrated.

    start_params: {unet[, text_encoder]} to train on (stage 3) instead of a fresh init.
    text_params: a pretrained text encoder (stage 0), frozen: only the UNet trains.
    first_batch: step s trains on batch s + first_batch, so a continuation sees new scenes.
    """
    if start_params is None:
        unet, text, _ = _denoiser_modules(stage, vae_config)
        params = init_denoiser(unet, text, stage.train.seed, IMAGE_SIZE // vae_config.downscale,
                               stage.init.zero_outputs)
    else:
        params = _float32(start_params)
    frozen = {"vae": jax.tree.map(np.asarray, vae_params)}
    if text_params is not None:
        params = {"unet": params["unet"]}
        frozen["text_encoder"] = _float32(text_params)
    return _train_denoiser(stage, vae_config, tokenizer, work_dir, params, frozen, first_batch,
                           minutes, mesh, compiler_options, progress, desc)


def run_wording_stage(stage: UNetStage, vae_config: VAEConfig, vae_params: Any, tokenizer: Any,
                      work_dir: str | Path, *, unet_params: Any, text_params: Any,
                      first_batch: int = 0, minutes: float | None = None,
                      mesh: Mesh | None = None, compiler_options: dict | None = None,
                      progress: bool = True) -> StageResult:
    """Stage 4: `text_params` trained alone on the denoising loss through the frozen UNet.

    The UNet stays as stage 3 left it, so what changes is only how captions are read:
    stage.data.vary_wording rewrites a share of them. The result's params: {text_encoder}.
    """
    frozen = {"vae": jax.tree.map(np.asarray, vae_params), "unet": _float32(unet_params)}
    return _train_denoiser(stage, vae_config, tokenizer, work_dir,
                           {"text_encoder": _float32(text_params)}, frozen, first_batch,
                           minutes, mesh, compiler_options, progress, "wording")


def _denoiser_modules(stage: UNetStage, vae_config: VAEConfig) -> tuple:
    dtype = stage.train.compute_dtype()
    return (UNet2DConditionModel(stage.unet, dtype), CLIPTextModel(stage.text_encoder, dtype),
            AutoencoderKL(vae_config, dtype))


def _float32(tree: Any) -> Any:
    return jax.tree.map(lambda a: np.asarray(a, np.float32), tree)


def _train_denoiser(stage: UNetStage, vae_config: VAEConfig, tokenizer: Any,
                    work_dir: str | Path, params: Any, frozen: Any, first_batch: int,
                    minutes: float | None, mesh: Mesh | None, compiler_options: dict | None,
                    progress: bool, desc: str) -> StageResult:
    """The denoising loss on `params`, reading `frozen`; step s trains on batch s + first_batch."""
    cfg = stage.train
    unet, text, vae = _denoiser_modules(stage, vae_config)
    loss = diffusion_loss_fn(unet, text, vae, stage.schedule, vae_config.scaling_factor,
                             stage.timesteps)
    return _run(create_state(params, cfg, frozen=frozen), loss,
                lambda s: shapes_batch(stage.data, s + first_batch, cfg.batch_size, tokenizer),
                cfg, Path(work_dir), minutes, mesh, compiler_options, progress, desc)
