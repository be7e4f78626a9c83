"""SDXL text-to-image throughput, jaxgen against diffusers' StableDiffusionXLPipeline, in one run.

    python -m benchmarks.bench_sdxl                      # CPU: tiny and medium, float32 both
    python -m benchmarks.bench_sdxl --device gpu         # SDXL base at 1024x1024: jaxgen
                                                         # bfloat16 (cuDNN attention),
                                                         # diffusers float16 (SDPA) on CUDA

Random weights (the work is fixed by the shapes), built once with the diffusers/transformers
classes as a StableDiffusionXLPipeline directory that both open (benchmarks/harness/sdxl.py:
`tiny`, `medium` = SDXL base's UNet layout scaled down, `base` = SDXL base's configs). The same
prompts, steps, size, guidance, Euler sampler and batch for both; --images images in batches
of --batch, --rounds times after an untimed warm-up (jaxgen's compile); the median counts.
Prints a table and the JSON (--json FILE writes it). docs/benchmarks.md ("SDXL") has figures.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import sdxl
from benchmarks.harness.timing import timed

PROMPT = "a red circle left of a blue square"
# Per device kind: (cases, default size per case, jaxgen dtype, diffusers dtype).
DEVICES = {"cpu": (("tiny", "medium"), {"tiny": 64, "medium": 128}, "float32", "float32"),
           "gpu": (("base",), {"base": 1024}, "bfloat16", "float16")}


def jaxgen_run(model_dir: Path, args: argparse.Namespace, side: int,
               dtype: str) -> Callable[[], None]:
    from jaxgen.engine.generator import Generator
    from jaxgen.engine.sharding import devices_dividing, make_mesh
    from jaxgen.requests import GenerationRequest

    # The batch split over as many devices as divide it (on CPU: one per core, at most 8).
    # On GPU, cuDNN's fused attention where it fits (SDXL's 64-wide heads), as benchmark.py.
    gen = Generator.from_pretrained(str(model_dir), batch_size=args.batch, dtype=dtype,
                                    mesh=make_mesh(devices=devices_dividing(args.batch)),
                                    attention="cudnn" if args.device == "gpu" else None)
    requests = [GenerationRequest(PROMPT, seed=i, steps=args.steps, sampler="euler",
                                  guidance=args.guidance, height=side, width=side)
                for i in range(args.images)]
    return lambda: [g.image for g in gen.generate(requests)]


def diffusers_run(model_dir: Path, args: argparse.Namespace, side: int,
                  dtype: str) -> Callable[[], None]:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    device = "cuda" if args.device == "gpu" else "cpu"
    pipe = StableDiffusionXLPipeline.from_pretrained(
        str(model_dir), add_watermarker=False, dtype=getattr(torch, dtype)).to(device)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def run() -> None:
        for start in range(0, args.images, args.batch):
            n = min(args.batch, args.images - start)
            with torch.inference_mode():
                pipe(prompt=[PROMPT] * n, num_inference_steps=args.steps,
                     guidance_scale=args.guidance, height=side, width=side, output_type="np",
                     generator=torch.Generator(device).manual_seed(start))
            if device == "cuda":
                torch.cuda.synchronize()

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=tuple(DEVICES), default="cpu")
    p.add_argument("--cases", help="comma-separated (default: the device's: "
                   + "; ".join(f"{d}: {','.join(c[0])}" for d, c in DEVICES.items()) + ")")
    p.add_argument("--size", type=int, help="image side (default: per case, "
                   + "; ".join(f"{k} {v}" for c in DEVICES.values() for k, v in c[1].items())
                   + ")")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--images", type=int, default=4, help="images per round")
    p.add_argument("--batch", type=int, default=2, help="images per step")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--root", type=Path, help="model cache (default: ~/.cache/jaxgen/bench-models)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    from jaxgen.engine.sharding import use_all_cpu_cores

    use_all_cpu_cores()
    import jax

    cases, sides, jax_dtype, torch_dtype = DEVICES[args.device]
    cases = tuple(args.cases.split(",")) if args.cases else cases
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.node(), "device": args.device,
        "jax_devices": f"{len(jax.local_devices())} x {jax.local_devices()[0].device_kind}",
        "steps": args.steps, "guidance": args.guidance, "sampler": "euler",
        "images": args.images, "batch": args.batch, "rounds": args.rounds, "cases": []}
    print("| case | size | jaxgen img/s | diffusers img/s | jaxgen / diffusers |")
    print("|---|---|---|---|---|", flush=True)
    for case in cases:
        model_dir = sdxl.model_dir(case, args.root)
        side = args.size or sides.get(case, 1024)
        ours = args.images / timed(jaxgen_run(model_dir, args, side, jax_dtype), args.rounds)
        theirs = args.images / timed(diffusers_run(model_dir, args, side, torch_dtype),
                                     args.rounds)
        row = {"case": case, "size": side, "params": sdxl.param_counts(model_dir),
               "jaxgen_dtype": jax_dtype, "diffusers_dtype": torch_dtype,
               "jaxgen_img_s": ours, "diffusers_img_s": theirs, "ratio": ours / theirs}
        result["cases"].append(row)
        print(f"| {case} | {side} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} |",
              flush=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
