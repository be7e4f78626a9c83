"""`jaxgen` command line: generate, info, preview, train, eval.

`jaxgen generate` runs the same Beam pipeline as `python -m pipelines.generate_dataset`
(jaxgen.beam.run_pipeline); Beam's own flags (--runner, --direct_running_mode, ...) pass
through unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from jaxgen.dataset.config import DEFAULTABLE_FIELDS, ConfigError, JobConfig
from jaxgen.default_model import EVAL_PROMPTS, RECOMMENDED


def main(argv: Sequence[str] | None = None) -> int:
    # No abbreviations: Beam's flags pass through, and `--runner` must not become
    # `--runner-profile`.
    parser = argparse.ArgumentParser(prog="jaxgen", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    _generate_parser(sub.add_parser("generate", help="manifest in, image dataset out",
                                    allow_abbrev=False))
    info = sub.add_parser("info", help="the model and the devices jaxgen would use",
                          allow_abbrev=False)
    info.add_argument("--model", help="diffusers-format directory (default: the default model)")
    preview = sub.add_parser("preview", help="generate one prompt to a PNG file",
                             allow_abbrev=False)
    preview.add_argument("prompt")
    preview.add_argument("--out", default="preview.png")
    preview.add_argument("--model")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--steps", type=int)
    preview.add_argument("--guidance", type=float)
    preview.add_argument("--sampler")
    _train_parser(sub.add_parser("train", help="train the shapes model from scratch (resumable)",
                                 allow_abbrev=False))
    _eval_parser(sub.add_parser("eval", help="ShapesEval + FD of a model: JSON report, contact "
                                "sheet", allow_abbrev=False))
    args, beam_args = parser.parse_known_args(argv)
    if args.command != "generate" and beam_args:
        parser.error(f"unrecognised arguments: {' '.join(beam_args)}")
    # Every command, training and evaluation included, splits a CPU into one device per core
    # (docs/benchmarks.md: a stage-2 train step 1.14x faster on 2 cores, sampling 1.3x).
    from jaxgen.engine.sharding import use_all_cpu_cores

    use_all_cpu_cores()
    commands = {"generate": _generate, "info": _info, "preview": _preview, "train": _train,
                "eval": _eval}
    try:
        return commands[args.command](args, beam_args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"jaxgen {args.command}: error: {err}", file=sys.stderr)
        return 2


def _generate_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="path or glob (comma-separated for several)")
    p.add_argument("--out", required=True, help="output directory (any Beam filesystem)")
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")
    p.add_argument("--job-config", help="YAML of job settings (see configs/jobs/)")
    p.add_argument("--format", dest="output_format", help="webdataset | parquet | imagefolder")
    p.add_argument("--image-format", help="png | webp | jpeg")
    p.add_argument("--image-quality", type=int)
    p.add_argument("--shard-size", type=int)
    p.add_argument("--job-seed", type=int)
    p.add_argument("--batch-size", type=int, help="images per device step (global)")
    p.add_argument("--dtype", help="float32 | bfloat16 (default: by backend)")
    p.add_argument("--model-parallel", type=int, default=1)
    p.add_argument("--expect-backend", help="cpu | gpu | tpu: fail rather than fall back")
    p.add_argument("--runner-profile", help="configs/runners/NAME.yaml (local, dataflow_gpu, ...)")
    p.add_argument("--dry-run", action="store_true", help="validate and plan; generate nothing")
    p.add_argument("--host-index", type=int, help="this host's number in a multi-host job")
    p.add_argument("--host-count", type=int, help="hosts sharing the job (shards split by index)")
    p.add_argument("--no-progress", action="store_true")
    for name in DEFAULTABLE_FIELDS:
        kind = {"guidance": float}.get(name, int if name in _INT_FIELDS else str)
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=f"default_{name}",
                       help=f"default {name} for rows without one")


_INT_FIELDS = {"steps", "height", "width", "num_images", "seed"}


def job_config(args: argparse.Namespace, size_multiple: int | None = None,
               native_size: int | None = None,
               model_defaults: dict[str, Any] | None = None) -> JobConfig:
    values: dict[str, Any] = {}
    if args.job_config:
        values.update(yaml.safe_load(Path(args.job_config).read_text()) or {})
    defaults = dict(values.pop("defaults", None) or {})
    for name in ("output_format", "image_format", "image_quality", "shard_size", "job_seed",
                 "host_index", "host_count"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for name in DEFAULTABLE_FIELDS:
        if getattr(args, f"default_{name}") is not None:
            defaults[name] = getattr(args, f"default_{name}")
    values.update(manifest=args.manifest, output=args.out, dry_run=args.dry_run)
    if size_multiple:
        values["size_multiple"] = size_multiple
    if native_size:  # the model's own resolution, unless the job says otherwise
        defaults.setdefault("height", native_size)
        defaults.setdefault("width", native_size)
    for name, value in (model_defaults or {}).items():  # the model's own, unless the job's
        defaults.setdefault(name, value)
    return JobConfig.from_mapping({**values, "defaults": defaults})


def _spec(args: argparse.Namespace):
    from jaxgen.default_model import default_model_path
    from jaxgen.engine.spec import GeneratorSpec

    model = args.model or str(default_model_path())
    return GeneratorSpec(model=model, dtype=args.dtype, batch_size=args.batch_size,
                         model_parallel=args.model_parallel, expect_backend=args.expect_backend)


def _generate(args: argparse.Namespace, beam_args: list[str]) -> int:
    from jaxgen.beam.pipeline import run_pipeline

    spec = _spec(args)
    if not args.dry_run:
        spec.check()
    config = job_config(args, spec.size_multiple(), spec.native_size(),
                        None if args.model else RECOMMENDED)
    if args.runner_profile:
        from pipelines.generate_dataset import profile_flags

        beam_args = profile_flags(args.runner_profile) + beam_args
    progress = None if args.no_progress or args.dry_run else _Progress(config)
    try:
        summary = run_pipeline(config, None if args.dry_run else spec, beam_args)
    finally:
        if progress:
            progress.stop()
    _print_summary(summary)
    return 0


class _Progress:
    """A progress bar fed by the shard stats files as they land (works for any runner
    writing to a filesystem this process can list)."""

    def __init__(self, config: JobConfig):
        from tqdm import tqdm

        self.config = config
        self.total_rows = _estimate_rows(config)
        shards = math.ceil(self.total_rows / config.shard_size) if self.total_rows else None
        self.bar = tqdm(total=shards, unit="shard", desc="jaxgen", dynamic_ncols=True)
        self.seen: dict[str, int] = {}
        self.done = threading.Event()
        self.start = time.time()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.done.wait(2.0):
            self._update()

    def _update(self) -> None:
        from jaxgen.dataset.progress import completed_shards

        shards, images = completed_shards(self.config.output, self.seen)
        self.bar.n = shards
        rate = images / max(time.time() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{images} images, {rate:.2f} img/s")
        self.bar.refresh()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self._update()
        self.bar.close()


def _estimate_rows(config: JobConfig) -> int:
    from jaxgen.dataset.progress import count_rows

    try:
        return count_rows(config)
    except Exception:  # the bar is a convenience; the pipeline reports real errors
        return 0


def _print_summary(summary: dict[str, Any]) -> None:
    from jaxgen.beam.pipeline import summary_line

    print(summary_line(summary))
    if summary.get("complete") is False:
        return
    counts = summary.get("counts", {})
    width = max((len(k) for k in counts), default=0)
    print("\n".join(f"  {k:<{width}}  {v}" for k, v in counts.items()))
    for key in ("output", "duration_s", "images_per_s"):
        if key in summary:
            print(f"  {key:<{width}}  {summary[key]}")


def _info(args: argparse.Namespace, _: list[str]) -> int:
    import jax

    from jaxgen.default_model import default_model_path
    from jaxgen.weights.model_dir import load_model

    model_path = args.model or default_model_path()
    model = load_model(model_path)
    counts = {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in model.params.items()}
    print(f"model: {model.name} (hash {model.hash})\n  at {Path(model_path).resolve()}")
    for name, n in counts.items():
        print(f"  {name:<13} {n / 1e6:8.2f}M parameters")
    print(f"native size: {model.native_size}px; sizes must be multiples of "
          f"{model.size_multiple}")
    print(f"backend: {jax.default_backend()}; devices: {jax.local_devices()}")
    return 0


def _preview(args: argparse.Namespace, _: list[str]) -> int:
    from PIL import Image

    from jaxgen.default_model import default_model_path
    from jaxgen.engine.generator import Generator
    from jaxgen.requests import GenerationRequest

    gen = Generator.from_pretrained(args.model or default_model_path())
    side = gen.model.native_size
    fields = {} if args.model else dict(RECOMMENDED)
    fields.update({k: v for k, v in (("steps", args.steps), ("guidance", args.guidance),
                                     ("sampler", args.sampler)) if v is not None})
    request = GenerationRequest(args.prompt, seed=args.seed, height=side, width=side, **fields)
    image = next(iter(gen.generate([request]))).image
    Image.fromarray(image).save(args.out)
    print(f"wrote {args.out} ({side}x{side}, seed {args.seed})")
    return 0


def _train_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work-dir", type=Path, default=Path("runs/shapes-default"),
                   help="checkpoints, metrics, report.json; rerun to resume")
    p.add_argument("--vae-config", type=Path, default=Path("configs/train/shapes_vae.yaml"))
    p.add_argument("--vae-from", type=Path, metavar="MODEL_DIR",
                   help="skip stage 1: train on this diffusers-format model's VAE and scaling "
                   "factor (e.g. the default model's directory, which `jaxgen info` prints)")
    p.add_argument("--text-config", type=Path, default=Path("configs/train/shapes_text.yaml"),
                   help="stage 0: pretrain the text encoder to state each caption's scene, "
                   "then train the UNet on it frozen")
    p.add_argument("--no-text-stage", action="store_const", const=None, dest="text_config",
                   help="train a fresh text encoder together with the UNet in stage 2 instead")
    p.add_argument("--unet-config", type=Path, default=Path("configs/train/shapes_unet.yaml"))
    p.add_argument("--finetune-config", type=Path,
                   default=Path("configs/train/shapes_unet_finetune.yaml"),
                   help="stage 3: stage 2's weights trained on at a lower learning rate")
    p.add_argument("--no-finetune-stage", action="store_const", const=None, dest="finetune_config",
                   help="export stage 2's weights, without stage 3")
    p.add_argument("--wording-config", type=Path,
                   default=Path("configs/train/shapes_wording.yaml"),
                   help="stage 4: the text encoder trained on through the frozen UNet on varied "
                   "wordings")
    p.add_argument("--no-wording-stage", action="store_const", const=None, dest="wording_config",
                   help="export stage 3's weights, without stage 4")
    p.add_argument("--pairs-config", type=Path, default=Path("configs/train/shapes_pairs.yaml"),
                   help="stage 5: stage 3's UNet trained on, reading stage 4's encoder, mostly on "
                   "two-object scenes")
    p.add_argument("--no-pairs-stage", action="store_const", const=None, dest="pairs_config",
                   help="export stage 3's UNet, without stage 5")
    p.add_argument("--minutes", type=float, help="time budget per stage for this invocation")
    p.add_argument("--vae-steps", type=int, help="override the VAE config's steps")
    p.add_argument("--text-steps", type=int, help="override the text config's steps")
    p.add_argument("--unet-steps", type=int, help="override the UNet config's steps")
    p.add_argument("--finetune-steps", type=int,
                   help="override the fine-tune config's steps (of each pass)")
    p.add_argument("--finetune-passes", type=int, help="override the fine-tune config's passes")
    p.add_argument("--wording-steps", type=int, help="override the wording config's steps")
    p.add_argument("--pairs-steps", type=int, help="override the pairs config's steps")
    p.add_argument("--export-dir", type=Path, help="model directory to write "
                   "(default: WORK_DIR/model)")
    p.add_argument("--export-unfinished", action="store_true",
                   help="export and evaluate even if stage 2 has not reached its steps")
    p.add_argument("--export-dtype", default="float16", help="float16 | float32 weight files")
    p.add_argument("--eval-prompts", type=int, default=EVAL_PROMPTS)
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    p.add_argument("--skip-eval", action="store_true")


def _train(args: argparse.Namespace, _: list[str]) -> int:
    from jaxgen.train.run import TrainOptions, train_shapes_model

    fields = {f.name for f in dataclasses.fields(TrainOptions)}
    return train_shapes_model(TrainOptions(**{k: v for k, v in vars(args).items()
                                              if k in fields}))


def _eval_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")
    p.add_argument("--out", type=Path, default=Path("runs/eval"),
                   help="directory for report.json and contact_sheet.png")
    p.add_argument("--prompts", type=int, default=EVAL_PROMPTS, dest="num_prompts")
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    p.add_argument("--steps", type=int, default=RECOMMENDED["steps"])
    p.add_argument("--sampler", default=RECOMMENDED["sampler"], help="jaxgen engine only")
    p.add_argument("--engine", default="jaxgen", help="jaxgen | diffusers (needs torch)")
    p.add_argument("--no-fd", action="store_false", dest="compute_fd", help="skip the FD")
    p.add_argument("--prompt-set", default="eval",
                   help="eval (the held-out evaluation prompts) | tuning (a second held-out set, "
                        "for choosing guidance and steps)")


def _eval(args: argparse.Namespace, _: list[str]) -> int:
    from jaxgen.default_model import default_model_path
    from jaxgen.eval.run import EvalSettings, evaluate_model, summary

    settings = EvalSettings(num_prompts=args.num_prompts, guidance=args.guidance,
                            steps=args.steps, sampler=args.sampler, engine=args.engine,
                            compute_fd=args.compute_fd, prompt_set=args.prompt_set)
    report = evaluate_model(args.model or default_model_path(), args.out, settings)
    print(summary(report))
    print(f"wrote {args.out / 'report.json'} and {report['contact_sheet']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
