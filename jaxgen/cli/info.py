"""`jaxgen info` (the model and devices) and `jaxgen preview` (one prompt to a PNG)."""

from __future__ import annotations

import argparse


def add_info_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")


def add_preview_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt")
    p.add_argument("--out", default="preview.png")
    p.add_argument("--model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--sampler")


def run_info(args: argparse.Namespace, _: list[str]) -> int:
    import jax

    from jaxgen.default_model import default_model_path
    from jaxgen.weights.model_dir import load_model, recommended_settings, resolve_model_path

    model_path = args.model or default_model_path()
    model = load_model(model_path)
    counts = {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in model.params.items()}
    # The directory read, HF-cache snapshots included (not the name relative to the cwd).
    where = resolve_model_path(model_path).resolve()
    print(f"model: {model.name} (hash {model.hash})\n  at {where}")
    for name, n in counts.items():
        print(f"  {name:<13} {n / 1e6:8.2f}M parameters")
    print(f"native size: {model.native_size}px; sizes must be multiples of "
          f"{model.size_multiple}")
    recommended = recommended_settings(model_path)
    print("recommended: " + (", ".join(f"{k} {v}" for k, v in sorted(recommended.items()))
                             or "none (jaxgen's built-in defaults)"))
    print(f"backend: {jax.default_backend()}; devices: {jax.local_devices()}")
    return 0


def run_preview(args: argparse.Namespace, _: list[str]) -> int:
    from PIL import Image

    from jaxgen.default_model import default_model_path
    from jaxgen.engine.generator import Generator
    from jaxgen.requests import GenerationRequest
    from jaxgen.weights.model_dir import recommended_settings

    model = args.model or default_model_path()
    gen = Generator.from_pretrained(model)
    side = gen.model.native_size
    fields = recommended_settings(model)
    fields.update({k: v for k, v in (("steps", args.steps), ("guidance", args.guidance),
                                     ("sampler", args.sampler)) if v is not None})
    request = GenerationRequest(args.prompt, seed=args.seed, height=side, width=side, **fields)
    image = next(iter(gen.generate([request]))).image
    Image.fromarray(image).save(args.out)
    print(f"wrote {args.out} ({side}x{side}, seed {args.seed})")
    return 0
