"""Train the embedded default shapes model: VAE, then text encoder + UNet, then export + eval.

    python scripts/train_default_model.py --work-dir runs/shapes --minutes 30 \
        --export-dir jaxgen/assets/shapes-default

Each stage trains until its config's `steps` or for `--minutes`, whichever comes first;
rerunning the same command continues the unfinished stage from its latest orbax checkpoint.
Stage 2 starts only once stage 1 is finished (its latents must not change under it); export
and evaluation run once stage 2 is finished (or with --export-unfinished).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", type=Path, default=Path("runs/shapes-default"))
    p.add_argument("--vae-config", type=Path, default=Path("configs/train/shapes_vae.yaml"))
    p.add_argument("--unet-config", type=Path, default=Path("configs/train/shapes_unet.yaml"))
    p.add_argument("--minutes", type=float, default=None, help="time budget per stage")
    p.add_argument("--vae-steps", type=int, default=None, help="override the VAE config's steps")
    p.add_argument("--unet-steps", type=int, default=None, help="override the UNet config's steps")
    p.add_argument("--export-dir", type=Path, default=None,
                   help="model directory to write (default: WORK_DIR/model)")
    p.add_argument("--export-unfinished", action="store_true",
                   help="export and evaluate even if stage 2 has not reached its steps")
    p.add_argument("--eval-prompts", type=int, default=256)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--host-devices", type=int, default=1,
                   help="CPU only: split each batch over this many XLA host devices "
                        "(2 measured no faster than 1 on the 2-core machine)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Must precede the first jax import: the CPU device count is fixed when jax starts.
    flags = os.environ.get("XLA_FLAGS", "")
    if args.host_devices > 1 and "host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.host_devices}")
    return run(args)


def run(args: argparse.Namespace) -> int:
    from transformers import CLIPTokenizer

    from jaxgen.eval.shapes_eval import ShapesEval, reconstruction_generator
    from jaxgen.train.data import write_shapes_tokenizer
    from jaxgen.train.export import export_model
    from jaxgen.train.stages import (
        UNetStage,
        VAEStage,
        calibrated_vae,
        run_unet_stage,
        run_vae_stage,
    )

    work = args.work_dir
    vae_stage = VAEStage.from_yaml(args.vae_config)
    vae_stage = dataclasses.replace(vae_stage, train=_with_steps(vae_stage.train, args.vae_steps))
    tokenizer = CLIPTokenizer.from_pretrained(str(write_shapes_tokenizer(work / "tokenizer")))
    unet_stage = UNetStage.from_yaml(args.unet_config, tokenizer)
    unet_stage = dataclasses.replace(unet_stage,
                                     train=_with_steps(unet_stage.train, args.unet_steps))
    report: dict = {"configs": {"vae": str(args.vae_config), "unet": str(args.unet_config)}}

    vae = run_vae_stage(vae_stage, work / "vae", data=unet_stage.data, minutes=args.minutes)
    report["vae"] = _stage_report(vae)
    _print_stage("vae", vae)
    if not vae.finished:
        print("stage 1 (VAE) not finished: rerun the same command to continue")
        return _write_report(work, report, 3)
    vae_config = calibrated_vae(vae_stage.vae, vae.params)
    report["vae"]["scaling_factor"] = vae_config.scaling_factor
    ceiling = ShapesEval(args.eval_prompts, data=unet_stage.data)
    ceiling, _ = ceiling.run(reconstruction_generator(vae_config, vae.params, ceiling.prompts()))
    report["vae"]["reconstruction_eval"] = ceiling.to_dict()
    print(f"VAE reconstructions (the ceiling of any model using this VAE):\n"
          f"{ceiling.summary()}")

    unet = run_unet_stage(unet_stage, vae_config, vae.params, tokenizer, work / "unet",
                          minutes=args.minutes)
    report["unet"] = _stage_report(unet)
    _print_stage("unet", unet)
    if not unet.finished and not args.export_unfinished:
        print("stage 2 (UNet) not finished: rerun the same command to continue")
        return _write_report(work, report, 3)

    export_dir = args.export_dir or work / "model"
    model = export_model(
        export_dir, name=export_dir.name, unet=unet_stage.unet, vae=vae_config,
        text_encoder=unet_stage.text_encoder, schedule=unet_stage.schedule, tokenizer=tokenizer,
        params={**unet.params, "vae": vae.params})
    report["export"] = {"dir": str(export_dir), "hash": model.hash}
    print(f"exported {export_dir} (hash {model.hash})")
    if not args.skip_eval:
        report["eval"] = evaluate(model, unet_stage, args, work)
    return _write_report(work, report, 0)


def evaluate(model, unet_stage, args: argparse.Namespace, work: Path) -> dict:
    import numpy as np

    from jaxgen.eval.fd import rendered, shapes_fd, train_feature_net
    from jaxgen.eval.shapes_eval import ShapesEval, contact_sheet, model_generator

    evaluation = ShapesEval(args.eval_prompts, data=unet_stage.data)
    start = time.perf_counter()
    result, images = evaluation.run(model_generator(model, guidance=args.guidance))
    sample_s = time.perf_counter() - start
    print(result.summary())
    sheet = contact_sheet(images[:128], result.passed[:128], work / "eval_contact_sheet.png")
    prompts = evaluation.prompts()
    counts = [p.num_objects for p in prompts]
    reference = rendered(np.array([p.seed for p in prompts]), counts)
    # The floor's renders: disjoint seeds, the same one/two-object mix.
    floor_seeds = np.array([p.seed for p in prompts]) + 500_000_000
    fd = shapes_fd(train_feature_net(steps=1500), images, reference, rendered(floor_seeds, counts))
    print(f"FD {fd.fd:.2f} (floor {fd.floor:.2f}, n={fd.n}, classifier accuracy "
          f"{fd.classifier_accuracy:.3f}); contact sheet {sheet}")
    return {**result.to_dict(), "guidance": args.guidance, "steps": 25, "sampler": "dpmpp_2m",
            "sampling_s": round(sample_s, 1), "fd": dataclasses.asdict(fd),
            "contact_sheet": str(sheet)}


def _with_steps(train, steps: int | None):
    """The train config with `steps` (if given); warmup at most a tenth of a shorter run."""
    if not steps:
        return train
    warmup = min(train.warmup_steps, steps // 10)
    return dataclasses.replace(train, steps=steps, warmup_steps=warmup)


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


if __name__ == "__main__":
    sys.exit(main())
