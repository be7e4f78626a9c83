"""`jaxgen train`: a recipe's stages run (or continued) in order, then export and evaluation.

Each stage trains until its config's `steps` or for `minutes`, whichever comes first; rerunning
the same command continues the unfinished stage from its latest orbax checkpoint. A stage starts
only once the stages before it are finished (what it reads must not change under it); a stage
with `from` takes its weights from a model directory instead. Each denoiser stage after the
first starts on the scenes after the last batch of the ones before it. Export and evaluation
run once the last stage is finished (or, with export.unfinished, on the weights of the stage
that stopped). Everything lands in `work_dir`: a folder per stage (finetune/, finetune-2/, ...
for the fine-tune's passes) with checkpoints and metrics.jsonl, report.json, and eval/.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxgen.train.recipe import Recipe, Stage

if TYPE_CHECKING:
    from jaxgen.models import VAEConfig

# Exit codes: 0 done, 3 a stage is unfinished (rerun the same command to continue).
UNFINISHED = 3
DENOISERS = ("unet", "finetune", "wording", "pairs", "free")


@dataclasses.dataclass(frozen=True)
class Weights:
    """A denoiser stage's result: the UNet and the text encoder it was trained with."""

    unet: Any
    text_encoder: Any
    joint: bool  # the text encoder trains with the UNet (no text stage)


def train(recipe: Recipe, work_dir: str | Path, minutes: float | None = None) -> int:
    """Run (or continue) every enabled stage; returns 0 when exported, UNFINISHED otherwise."""
    from jaxgen.train import stages

    work = Path(work_dir)
    enabled = {s.name: s for s in recipe.enabled()}
    _check_vae_source(work, enabled.get("vae"))
    _check_text_source(work, enabled.get("unet"))
    built, runs, starts, tokenizer = _plan(enabled, work, stages)
    model = built["unet"]  # the models, scheduler and data every denoiser stage shares

    report: dict = {"recipe": str(recipe.path),
                    "configs": {s.name: (s.from_model or s.source) if s.enabled else None
                                for s in recipe.stages}}
    outputs: dict[str, Any] = {}
    for s in enabled.values():
        if s.name == "vae":
            outputs[s.name], finished = _vae(s, built[s.name], model.data, recipe.eval.prompts,
                                              work, minutes, report, stages)
        elif s.name == "text":
            outputs[s.name], finished = _text(s, model, built[s.name], tokenizer, work,
                                               minutes, report, stages)
        else:
            vae = outputs[s.reads["vae"]]
            outputs[s.name], finished = _denoiser(s, runs[s.name], starts[s.name], outputs, vae,
                                                  tokenizer, work, minutes, report, stages)
        if not finished:
            if not (recipe.export.unfinished and s.name in DENOISERS):
                return _write_report(work, report, UNFINISHED)
            break
    last = next(s for s in reversed(enabled.values()) if s.name in outputs
                and s.name in DENOISERS)
    # Caption dropout in the last stage's data taught the unconditional branch an empty prompt.
    empty_prompt = built[last.name].data.caption_dropout > 0
    return _export_and_eval(recipe, model, outputs[last.reads["vae"]], outputs[last.name],
                            tokenizer, work, report, empty_prompt)


def _plan(enabled: dict[str, Stage], work: Path, stages: Any) -> tuple[dict, dict, dict, Any]:
    """Each enabled stage's config read (a denoiser's `runs`: one per fine-tune pass), each
    denoiser run's first batch, and the tokenizer (written to work/tokenizer)."""
    from transformers import CLIPTokenizer

    from jaxgen.train.data import write_shapes_tokenizer

    # Every config is read before anything is written: a bad value stops the run at once.
    built: dict[str, Any] = {}
    for s in enabled.values():
        if s.name == "vae":
            built[s.name] = stages.VAEStage.from_dict(s.config, s.source)
        elif s.name == "text":
            built[s.name] = stages.train_section(s.config, s.source)
        elif s.name == "finetune":
            built["passes"] = stages.finetune_pass_count(s.config, s.source)
    tokenizer = CLIPTokenizer.from_pretrained(str(write_shapes_tokenizer(work / "tokenizer")))
    runs: dict[str, Any] = {}  # denoiser stage -> its UNetStage (the fine-tune: one per pass)
    for s in enabled.values():
        if s.name == "unet":
            built[s.name] = stages.UNetStage.from_dict(s.config, s.source, tokenizer)
        elif s.name == "finetune":
            first = built[s.reads["unet"]].continued(s.config, s.source)
            runs[s.name] = stages.finetune_passes(first, built["passes"])
            built[s.name] = first
        elif s.name in DENOISERS:
            built[s.name] = built[s.reads["unet"]].reworded(s.config, s.source)
        if s.name in DENOISERS:
            runs.setdefault(s.name, [built[s.name]])
    starts = iter(stages.first_batches([r for name in runs for r in runs[name]]))
    starts = {name: [next(starts) for _ in runs[name]] for name in runs}
    return built, runs, starts, tokenizer


def _vae(s: Stage, stage: Any, data: Any, prompts: int, work: Path, minutes: float | None,
         report: dict, stages: Any) -> tuple[tuple[VAEConfig, Any], bool]:
    """The VAE (trained, or a model directory's), and how well its reconstructions score."""
    from jaxgen.eval.shapes_eval import ShapesEval, reconstruction_generator

    if s.from_model is not None:
        vae_config, vae_params = _shipped_vae(Path(s.from_model), stage.vae)
        report[s.name] = {"from": s.from_model, "scaling_factor": vae_config.scaling_factor}
        print(f"stage {s.name}: using {s.from_model}'s VAE")
    else:
        result = stages.run_vae_stage(stage, work / s.name, data=data, minutes=minutes)
        if not _record(report, s.name, result):
            return (None, None), False
        vae_config, vae_params = stages.calibrated_vae(stage.vae, result.params), result.params
        report[s.name]["scaling_factor"] = vae_config.scaling_factor
    ceiling = ShapesEval(prompts, data=data)
    ceiling, _ = ceiling.run(reconstruction_generator(vae_config, vae_params, ceiling.prompts()))
    report[s.name]["reconstruction_eval"] = ceiling.to_dict()
    print(f"VAE reconstructions (the ceiling of any model using this VAE):\n"
          f"{ceiling.summary()}")
    return (vae_config, vae_params), True


def _text(s: Stage, model: Any, cfg: Any, tokenizer: Any, work: Path, minutes: float | None,
          report: dict, stages: Any) -> tuple[Any, bool]:
    """The text encoder taught to state each caption's scene (or a model directory's)."""
    if s.from_model is not None:
        report[s.name] = {"from": s.from_model}
        return _model(s.from_model).params["text_encoder"], True
    result = stages.run_text_stage(model, cfg, tokenizer, work / s.name, minutes=minutes)
    return result.params["text_encoder"], _record(report, s.name, result)


def _denoiser(s: Stage, runs: list, starts: list[int], outputs: dict[str, Any],
              vae: tuple[VAEConfig, Any], tokenizer: Any, work: Path, minutes: float | None,
              report: dict, stages: Any) -> tuple[Weights, bool]:
    """The unet, finetune (each pass), wording, pairs or free stage, on what it reads."""
    read_text = outputs.get(s.reads.get("text_encoder"))
    read_text = read_text.text_encoder if isinstance(read_text, Weights) else read_text
    source = outputs.get(s.reads.get("unet"))
    joint = source.joint if source is not None else read_text is None
    if s.from_model is not None:
        report[s.name] = {"from": s.from_model}
        params = _model(s.from_model).params
        return Weights(params["unet"], params["text_encoder"], joint), True
    vae_config, vae_params = vae
    if s.name == "wording":
        result = stages.run_wording_stage(
            runs[0], vae_config, vae_params, tokenizer, work / s.name,
            unet_params=source.unet, text_params=read_text, first_batch=starts[0], minutes=minutes)
        return (Weights(source.unet, result.params["text_encoder"], False),
                _record(report, s.name, result))
    weights = source
    for i, (stage, start) in enumerate(zip(runs, starts, strict=True)):
        key = s.name if i == 0 else f"{s.name}-{i + 1}"
        if weights is None:  # the first UNet: a fresh init
            start_params, text = None, read_text
        elif "text_encoder" in s.reads:
            start_params, text = {"unet": weights.unet}, read_text
        elif weights.joint:  # the encoder trains on with the UNet
            start_params, text = {"unet": weights.unet, "text_encoder": weights.text_encoder}, None
        else:  # the encoder it was trained with stays frozen
            start_params, text = {"unet": weights.unet}, weights.text_encoder
        result = stages.run_unet_stage(stage, vae_config, vae_params, tokenizer, work / key,
                                       minutes=minutes, start_params=start_params,
                                       first_batch=start, text_params=text, desc=key)
        joint = text is None
        weights = Weights(result.params["unet"],
                          result.params["text_encoder"] if joint else text, joint)
        label = key if len(runs) == 1 else f"{key} (pass {i + 1} of {len(runs)})"
        if not _record(report, key, result, label):
            return weights, False
    return weights, True


def _export_and_eval(recipe: Recipe, model: Any, vae: tuple[VAEConfig, Any], weights: Weights,
                     tokenizer: Any, work: Path, report: dict, empty_prompt: bool) -> int:
    from jaxgen.eval.run import EvalSettings, evaluate_model, summary
    from jaxgen.train.export import export_model

    export_dir = Path(recipe.export.dir or work / "model")
    vae_config, vae_params = vae
    params = {"unet": weights.unet, "text_encoder": weights.text_encoder, "vae": vae_params}
    exported = export_model(
        export_dir, name=export_dir.name, unet=model.unet, vae=vae_config,
        text_encoder=model.text_encoder, schedule=model.schedule, tokenizer=tokenizer,
        params=params, dtype=recipe.export.dtype,
        empty_prompt=empty_prompt)
    report["export"] = {"dir": str(export_dir), "hash": exported.hash}
    print(f"exported {export_dir} (hash {exported.hash})")
    if not recipe.eval.skip:
        settings = EvalSettings(num_prompts=recipe.eval.prompts, guidance=recipe.eval.guidance)
        report["eval"] = evaluate_model(export_dir, work / "eval", settings, model.data)
        print(summary(report["eval"]))
    return _write_report(work, report, 0)


def _check_vae_source(work: Path, vae: Stage | None) -> None:
    """The UNet must continue on the latents it started on: its own VAE stage's, or vae.from's."""
    vae_from = vae and vae.from_model
    if vae_from and (work / "vae").exists():
        raise ValueError(f"vae.from {vae_from!r}: {work} trains its own VAE (its VAE stage is in "
                         f"{work / 'vae'}); use a new work dir")
    if vae and not vae_from and (work / "unet").exists() and not (work / "vae").exists():
        raise ValueError(f"{work}: its unet stage trains on another model's VAE; pass the same "
                         "--set vae.from=MODEL_DIR again")


def _check_text_source(work: Path, unet: Stage | None) -> None:
    """The UNet must continue with the text encoder it started with: the text stage's, frozen,
    or its own, trained with it (the checkpoints hold different parameter trees)."""
    if unet is None or unet.from_model or not (work / "unet").exists():
        return
    reads_text = unet.reads.get("text_encoder") is not None
    if reads_text and not (work / "text").exists():
        raise ValueError(f"{work}: its unet stage trains its text encoder with the UNet; pass "
                         "--set unet.reads.text_encoder=null again")
    if not reads_text and (work / "text").exists():
        raise ValueError(f"{work}: its unet stage reads the text stage's encoder; drop "
                         "--set unet.reads.text_encoder=null")


def _model(model_dir: str) -> Any:
    from jaxgen.weights.model_dir import load_model

    return load_model(model_dir)


def _shipped_vae(model_dir: Path, like: VAEConfig) -> tuple[VAEConfig, Any]:
    """The VAE config and float32 params of a model directory; its latents must have the
    shape the stage configs' UNet is built for."""
    from jaxgen.weights.model_dir import load_model

    model = load_model(model_dir)
    if (model.vae.latent_channels, model.vae.downscale) != (like.latent_channels, like.downscale):
        raise ValueError(
            f"vae.from {str(model_dir)!r}: its VAE has {model.vae.latent_channels} latent "
            f"channels at 1/{model.vae.downscale} scale; the stage configs expect "
            f"{like.latent_channels} at 1/{like.downscale}")
    return model.vae, model.params["vae"]


def _record(report: dict, key: str, result: Any, label: str | None = None) -> bool:
    """Put a stage's result in the report and print it; False (saying how to continue) if the
    stage stopped before its steps."""
    s = result.summary
    last = s.history[-1] if s.history else {}
    report[key] = {"step": int(result.state.step), "finished": result.finished,
                   "steps_this_run": s.steps_run, "images_per_s": s.images_per_s,
                   "first_step_s": s.compile_s, "last_metrics": last}
    rate = f"{s.images_per_s:.1f} img/s" if s.images_per_s else "n/a"
    print(f"{key}: step {int(result.state.step)}, ran {s.steps_run} steps at {rate}, "
          f"finished={result.finished}")
    if not result.finished:
        print(f"stage {label or key} not finished: rerun the same command to continue")
    return result.finished


def _write_report(work: Path, report: dict, code: int) -> int:
    work.mkdir(parents=True, exist_ok=True)
    (work / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return code
