"""`jaxgen train`: the shapes model from scratch (VAE, text encoder, UNet, and 3 more stages).

Each stage trains until its config's `steps` or for `minutes`, whichever comes first; rerunning
the same command continues the unfinished stage from its latest orbax checkpoint. Stage 2 starts
only once stage 1 (skipped with vae_from: another model's VAE) and stage 0 (the text encoder;
skipped with text_config None, when it trains with the UNet) are finished (its latents and
caption states must not change under it), stage 3 (fine-tune: stage 2's weights trained on
at a lower learning rate, in its config's `passes`: finetune/, finetune-2/, ...) once stage 2
is, and stage 4 (wording: stage 0's encoder trained on through the frozen UNet on reworded
captions; skipped with wording_config None) once stage 3 is, and stage 5 (pairs: stage 3's
UNet trained on, reading stage 4's encoder, on batches mostly two-object scenes; skipped with
pairs_config None) once stage 4 is; export and evaluation run once
the last stage is finished (or with export_unfinished, on
the weights of the stage that stopped). Everything lands in `work_dir`: checkpoints,
metrics.jsonl per stage, report.json, and eval/ (report + contact sheet).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxgen.default_model import EVAL_PROMPTS, RECOMMENDED

if TYPE_CHECKING:
    from jaxgen.models import VAEConfig

# Exit codes: 0 done, 3 a stage is unfinished (rerun the same command to continue).
UNFINISHED = 3


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    work_dir: Path = Path("runs/shapes-default")
    vae_config: Path = Path("configs/train/shapes_vae.yaml")
    # A model directory whose VAE (and scaling factor) stage 2 uses instead of training stage 1:
    # retraining the UNet and text encoder on the shipped VAE saves stage 1's half hour.
    vae_from: Path | None = None
    unet_config: Path = Path("configs/train/shapes_unet.yaml")
    # Stage 0's `train`: the text encoder pretrained on its own to state each caption's scene,
    # then frozen under the UNet (trained jointly, it never learned "left of"). None: a fresh
    # text encoder trains with the UNet in stage 2, the previous recipe.
    text_config: Path | None = Path("configs/train/shapes_text.yaml")
    # Stage 3's `train` + `timesteps`; None: export stage 2's weights.
    finetune_config: Path | None = Path("configs/train/shapes_unet_finetune.yaml")
    # Stage 4's `data` + `train`: stage 0's encoder trained on through the frozen UNet on varied
    # wordings. None: export stage 3's weights. Needs stage 0 (text_config).
    wording_config: Path | None = Path("configs/train/shapes_wording.yaml")
    # Stage 5's `data` + `train`: stage 3's UNet trained on, reading stage 4's encoder, mostly on
    # two-object scenes. None: export stage 3's UNet. Needs stage 4 (wording_config).
    pairs_config: Path | None = Path("configs/train/shapes_pairs.yaml")
    minutes: float | None = None  # time budget per stage, per invocation
    vae_steps: int | None = None  # override the configs' steps
    text_steps: int | None = None
    unet_steps: int | None = None
    finetune_steps: int | None = None  # per pass
    finetune_passes: int | None = None  # override the fine-tune config's passes
    wording_steps: int | None = None
    pairs_steps: int | None = None
    export_dir: Path | None = None  # default: work_dir/model
    export_unfinished: bool = False
    export_dtype: str = "float16"  # weight files; float16 keeps the default model under 25 MB
    eval_prompts: int = EVAL_PROMPTS
    guidance: float = RECOMMENDED["guidance"]
    skip_eval: bool = False


def train_shapes_model(options: TrainOptions) -> int:
    """Run (or continue) every stage; returns 0 when exported, UNFINISHED otherwise."""
    from transformers import CLIPTokenizer

    from jaxgen.eval.run import EvalSettings, evaluate_model, summary
    from jaxgen.eval.shapes_eval import ShapesEval, reconstruction_generator
    from jaxgen.train.data import write_shapes_tokenizer
    from jaxgen.train.export import export_model
    from jaxgen.train.stages import (
        UNetStage,
        VAEStage,
        calibrated_vae,
        finetune_pass_count,
        finetune_passes,
        first_batches,
        read_train_section,
        run_text_stage,
        run_unet_stage,
        run_vae_stage,
        run_wording_stage,
    )

    _check_old_layout_dir(Path(options.work_dir))
    configs = (options.vae_config, options.text_config, options.unet_config,
               options.finetune_config, options.wording_config, options.pairs_config)
    for path in (p for p in configs if p is not None):
        if not Path(path).is_file():
            raise FileNotFoundError(f"training config {path}: no such file")
    passes = 0  # read before anything is written: a bad count stops the run at once
    if options.finetune_config is not None or options.finetune_passes is not None:
        passes = finetune_pass_count(options.finetune_config, options.finetune_passes)
    if options.wording_config is not None and options.text_config is None:
        # Name every flag the user needs at once, not one error per rerun.
        flags = "--no-wording-stage"
        if options.pairs_config is not None:
            flags += " --no-pairs-stage"
        raise ValueError(f"wording_config {str(options.wording_config)!r}: stage 4 trains stage "
                         f"0's text encoder; with --no-text-stage pass {flags} too")
    if options.pairs_config is not None and options.wording_config is None:
        raise ValueError(f"pairs_config {str(options.pairs_config)!r}: stage 5 reads stage 4's "
                         "text encoder; with --no-wording-stage pass --no-pairs-stage too")
    work = Path(options.work_dir)
    _check_vae_source(work, options.vae_from)
    _check_text_source(work, options.text_config)
    vae_stage = VAEStage.from_yaml(options.vae_config)
    vae_stage = dataclasses.replace(vae_stage,
                                    train=_with_steps(vae_stage.train, options.vae_steps))
    tokenizer = CLIPTokenizer.from_pretrained(str(write_shapes_tokenizer(work / "tokenizer")))
    unet_stage = UNetStage.from_yaml(options.unet_config, tokenizer)
    unet_stage = dataclasses.replace(unet_stage,
                                     train=_with_steps(unet_stage.train, options.unet_steps))
    finetune_stages = []
    if options.finetune_config is not None:
        first = unet_stage.continued(options.finetune_config)
        first = dataclasses.replace(first, train=_with_steps(first.train, options.finetune_steps))
        finetune_stages = finetune_passes(first, passes)
    wording_stage = None
    if options.wording_config is not None:
        wording_stage = unet_stage.reworded(options.wording_config)
        wording_stage = dataclasses.replace(
            wording_stage, train=_with_steps(wording_stage.train, options.wording_steps))
    pairs_stage = None
    if options.pairs_config is not None:
        pairs_stage = unet_stage.reworded(options.pairs_config)
        pairs_stage = dataclasses.replace(
            pairs_stage, train=_with_steps(pairs_stage.train, options.pairs_steps))
    text_train = None
    if options.text_config is not None:
        text_train = _with_steps(read_train_section(options.text_config), options.text_steps)
    vae_source = options.vae_from or options.vae_config
    report: dict = {"configs": {"vae": str(vae_source),
                                "text": options.text_config and str(options.text_config),
                                "unet": str(options.unet_config),
                                "finetune": options.finetune_config
                                and str(options.finetune_config),
                                "wording": options.wording_config
                                and str(options.wording_config),
                                "pairs": options.pairs_config
                                and str(options.pairs_config)}}

    if options.vae_from is not None:
        vae_config, vae_params = _shipped_vae(options.vae_from, vae_stage.vae)
        report["vae"] = {"from": str(options.vae_from),
                         "scaling_factor": vae_config.scaling_factor}
        print(f"stage 1 (VAE): using {options.vae_from}'s VAE")
    else:
        vae = run_vae_stage(vae_stage, work / "vae", data=unet_stage.data,
                            minutes=options.minutes)
        if not _record(report, "vae", "stage 1 (VAE)", vae):
            return _write_report(work, report, UNFINISHED)
        vae_config, vae_params = calibrated_vae(vae_stage.vae, vae.params), vae.params
        report["vae"]["scaling_factor"] = vae_config.scaling_factor
    ceiling = ShapesEval(options.eval_prompts, data=unet_stage.data)
    ceiling, _ = ceiling.run(reconstruction_generator(vae_config, vae_params, ceiling.prompts()))
    report["vae"]["reconstruction_eval"] = ceiling.to_dict()
    print(f"VAE reconstructions (the ceiling of any model using this VAE):\n"
          f"{ceiling.summary()}")

    text_params = None
    if text_train is not None:
        text = run_text_stage(unet_stage, text_train, tokenizer, work / "text",
                              minutes=options.minutes)
        if not _record(report, "text", "stage 0 (text encoder)", text):
            return _write_report(work, report, UNFINISHED)
        text_params = text.params["text_encoder"]

    unet = run_unet_stage(unet_stage, vae_config, vae_params, tokenizer, work / "unet",
                          minutes=options.minutes, text_params=text_params)
    if not _record(report, "unet", "stage 2 (UNet)", unet) and not options.export_unfinished:
        return _write_report(work, report, UNFINISHED)
    # New scenes: each stage after 2 starts after the last batch of the stages before it.
    later = [s for s in (wording_stage, pairs_stage) if s is not None]
    starts = first_batches([unet_stage, *finetune_stages, *later])
    for i, stage in enumerate(finetune_stages if unet.finished else []):
        key = "finetune" if i == 0 else f"finetune-{i + 1}"
        unet = run_unet_stage(stage, vae_config, vae_params, tokenizer, work / key,
                              minutes=options.minutes, start_params=unet.params,
                              first_batch=starts[1 + i], text_params=text_params,
                              desc=key)
        label = f"stage 3 (fine-tune, pass {i + 1} of {len(finetune_stages)})"
        if not _record(report, key, label, unet):
            if not options.export_unfinished:
                return _write_report(work, report, UNFINISHED)
            break
    worded = False
    if wording_stage is not None and unet.finished:
        wording = run_wording_stage(wording_stage, vae_config, vae_params, tokenizer,
                                    work / "wording", unet_params=unet.params["unet"],
                                    text_params=text_params,
                                    first_batch=starts[1 + len(finetune_stages)],
                                    minutes=options.minutes)
        worded = _record(report, "wording", "stage 4 (wording)", wording)
        if worded:
            text_params = wording.params["text_encoder"]
        elif not options.export_unfinished:
            return _write_report(work, report, UNFINISHED)
    if pairs_stage is not None and worded:
        unet = run_unet_stage(pairs_stage, vae_config, vae_params, tokenizer, work / "pairs",
                              minutes=options.minutes, start_params=unet.params,
                              first_batch=starts[-1], text_params=text_params, desc="pairs")
        if not _record(report, "pairs", "stage 5 (pairs)", unet) and not options.export_unfinished:
            return _write_report(work, report, UNFINISHED)

    export_dir = Path(options.export_dir or work / "model")
    params = {**unet.params, "vae": vae_params}
    if text_params is not None:  # stage 0's (or 4's) encoder: not in the UNet stages' params
        params["text_encoder"] = text_params
    model = export_model(
        export_dir, name=export_dir.name, unet=unet_stage.unet, vae=vae_config,
        text_encoder=unet_stage.text_encoder, schedule=unet_stage.schedule, tokenizer=tokenizer,
        params=params, dtype=options.export_dtype)
    report["export"] = {"dir": str(export_dir), "hash": model.hash}
    print(f"exported {export_dir} (hash {model.hash})")
    if not options.skip_eval:
        settings = EvalSettings(num_prompts=options.eval_prompts, guidance=options.guidance)
        report["eval"] = evaluate_model(export_dir, work / "eval", settings, unet_stage.data)
        print(summary(report["eval"]))
    return _write_report(work, report, 0)


def _check_old_layout_dir(work: Path) -> None:
    """Stage 3 was called "layout" until 2026-11-24; its checkpoints there would be ignored."""
    if (work / "layout").exists() and not (work / "finetune").exists():
        raise ValueError(f"{work / 'layout'}: stage 3 from before it was renamed fine-tune; "
                         f"rename it to {work / 'finetune'} to continue it, or remove it to "
                         "train stage 3 afresh")


def _check_vae_source(work: Path, vae_from: Path | None) -> None:
    """Stage 2 must continue on the latents it started on: its own stage 1's, or vae_from's."""
    if vae_from is not None and (work / "vae").exists():
        raise ValueError(f"vae_from {str(vae_from)!r}: {work} trains its own VAE (stage 1 is in "
                         f"{work / 'vae'}); use a new work dir")
    if vae_from is None and (work / "unet").exists() and not (work / "vae").exists():
        raise ValueError(f"{work}: stage 2 there trains on another model's VAE; pass the same "
                         "--vae-from again")


def _check_text_source(work: Path, text_config: Path | None) -> None:
    """Stage 2 must continue with the text encoder it started with: stage 0's, frozen, or its
    own, trained with the UNet (the checkpoints hold different parameter trees)."""
    if not (work / "unet").exists():
        return
    if text_config is not None and not (work / "text").exists():
        raise ValueError(f"{work}: stage 2 there trains its text encoder with the UNet; pass "
                         "--no-text-stage again")
    if text_config is None and (work / "text").exists():
        raise ValueError(f"{work}: stage 2 there reads stage 0's text encoder; drop "
                         "--no-text-stage")


def _shipped_vae(model_dir: Path, like: VAEConfig) -> tuple[VAEConfig, Any]:
    """The VAE config and float32 params of a model directory; its latents must have the
    shape the stage configs' UNet is built for."""
    from jaxgen.weights.model_dir import load_model

    model = load_model(model_dir)
    if (model.vae.latent_channels, model.vae.downscale) != (like.latent_channels, like.downscale):
        raise ValueError(
            f"vae_from {str(model_dir)!r}: its VAE has {model.vae.latent_channels} latent "
            f"channels at 1/{model.vae.downscale} scale; the stage configs expect "
            f"{like.latent_channels} at 1/{like.downscale}")
    return model.vae, model.params["vae"]


def _with_steps(train, steps: int | None):
    """The train config with `steps` (if given); warmup at most a tenth of a shorter run."""
    if not steps:
        return train
    warmup = min(train.warmup_steps, steps // 10)
    return dataclasses.replace(train, steps=steps, warmup_steps=warmup)


def _record(report: dict, key: str, label: str, result) -> bool:
    """Put a stage's result in the report and print it; False (saying how to continue) if the
    stage stopped before its steps."""
    report[key] = _stage_report(result)
    _print_stage(key, result)
    if not result.finished:
        print(f"{label} not finished: rerun the same command to continue")
    return result.finished


def _stage_report(result) -> dict:
    s = result.summary
    last = s.history[-1] if s.history else {}
    return {"step": int(result.state.step), "finished": result.finished,
            "steps_this_run": s.steps_run, "images_per_s": s.images_per_s,
            "first_step_s": s.compile_s, "last_metrics": last}


def _print_stage(name: str, result) -> None:
    s = result.summary
    rate = f"{s.images_per_s:.1f} img/s" if s.images_per_s else "n/a"
    print(f"{name}: step {int(result.state.step)}, ran {s.steps_run} steps at {rate}, "
          f"finished={result.finished}")


def _write_report(work: Path, report: dict, code: int) -> int:
    work.mkdir(parents=True, exist_ok=True)
    (work / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return code
