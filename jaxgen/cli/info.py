"""`jaxgen info` (the model and devices) and `jaxgen preview` (one prompt to a PNG)."""

from __future__ import annotations

import argparse


def add_info_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")
    p.add_argument("--batch-size", type=int,
                   help="memory estimate: images per step, global (default: one per data device)")
    p.add_argument("--size", metavar="HxW", help="memory estimate: image size (default: native)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="memory estimate: precision (default: float32 on CPU, bfloat16 on "
                   "GPU/TPU)")
    p.add_argument("--model-parallel", type=int, default=1,
                   help="memory estimate: devices one model is split over (default: 1)")
    p.add_argument("--devices", type=int,
                   help="memory estimate: devices in the mesh (default: the local ones)")


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
    print_memory_estimate(model, args)
    return 0


def _size(text: str | None, native: int) -> tuple[int, int]:
    if text is None:
        return native, native
    try:
        height, width = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size {text!r}: expected HxW, e.g. 1024x1024") from None
    return height, width


def _bytes(n: int) -> str:
    return f"{n / 2**30:9.2f} GiB" if n >= 2**30 else f"{n / 2**20:9.2f} MiB"


def print_memory_estimate(model, args: argparse.Namespace) -> None:
    """Per device: parameters (as sharded), the sampling step, the VAE decode, the total
    against the device's memory, and the largest batch that fits (jaxgen.engine.memory)."""
    import jax

    from jaxgen.engine.generator import default_dtype
    from jaxgen.engine.memory import device_memory_bytes, estimate_memory, largest_fitting_batch

    devices = args.devices or len(jax.local_devices())
    k = args.model_parallel
    n_data = devices // k if k >= 1 and devices % k == 0 else 0
    if not n_data:
        raise SystemExit(f"--model-parallel {k}: must be >= 1 and divide the {devices} devices")
    batch = args.batch_size or n_data
    height, width = _size(args.size, model.native_size)
    dtype = args.dtype or default_dtype(jax.default_backend())
    device_bytes = device_memory_bytes(jax.local_devices()[0])

    def estimate(b: int):
        return estimate_memory(model, b, height, width, dtype, k, devices, device_bytes)

    try:
        est = estimate(batch)
    except ValueError as error:
        raise SystemExit(f"--batch-size: {error}") from None
    print(f"memory per device: batch {batch} at {height}x{width}, {jax.numpy.dtype(dtype).name},"
          f" {devices} devices (data {n_data} x model {k}); an estimate")
    for name, n in est.params.items():
        print(f"  {name + ' params':<22} {_bytes(n)}")
    print(f"  {'sampling step':<22} {_bytes(est.step)}")
    print(f"  {'VAE decode':<22} {_bytes(est.decode)}")
    print(f"  {'total':<22} {_bytes(est.total)} (params + the larger of step and decode)")
    if est.device is None:
        print("  device memory unknown")
        return
    largest = largest_fitting_batch(lambda b: estimate(b).fits, n_data)
    verdict = "fits" if est.fits else "does NOT fit"
    print(f"  device holds {_bytes(est.device).strip()}: {verdict}; largest batch that fits: "
          + (str(largest) if largest else f"none (even {n_data}, one per data device, does not)"))


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
