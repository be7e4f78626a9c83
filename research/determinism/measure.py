"""How often, and by how much, an image's bytes change with the batch size and the mesh.

Generates the same requests under every (devices, global batch) pair with devices in 1, 2, 8
(CPU devices; the mesh's 'data' axis) and a batch of 1, 2, 4 or 8 (a multiple of the
devices), and compares each image with the one made at 1 device, batch 1. Prints one JSON
object: per pair, the share of images with any differing byte, the share of differing
pixel values, and the largest difference (of 255).

`--micro-batch K` also runs, beside each plain run, the batch-independent mode
(`Generator(micro_batch=K)`; microbatch.py was its prototype): every device computes its items
K at a time, whatever the global batch.
"identical_groups" lists the runs whose images are byte-identical to each other.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
    python -m research.determinism.measure --model default --items 24
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxgen.default_model import RECOMMENDED, default_model_path
from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import GenerationRequest
from jaxgen.weights.model_dir import load_model

PROMPTS = ["a red circle", "a blue square on the left", "a small green triangle",
           "a large red square", "a blue circle on a green background", "a photo of a cat"]
PAIRS = [(d, b) for d in (1, 2, 8) for b in (1, 2, 4, 8) if b % d == 0]


def model_dir(name: str) -> Path:
    if name == "default":
        return default_model_path()
    if name in ("tiny-sd1", "tiny-sd2"):
        from tests import tiny_models

        return tiny_models.build(Path(tempfile.mkdtemp()), style=name.removeprefix("tiny-"))
    return Path(name)


def requests(n: int, size: int, steps: int, guidance: float,
             sampler: str) -> list[GenerationRequest]:
    return [GenerationRequest(prompt=PROMPTS[i % len(PROMPTS)], seed=1000 + i, steps=steps,
                              guidance=guidance, sampler=sampler, height=size, width=size)
            for i in range(n)]


def images(model, reqs, devices: int, batch: int, micro_batch: int | None) -> tuple[np.ndarray,
                                                                                    float]:
    mesh = make_mesh(devices=jax.devices()[:devices])
    gen = Generator(model, mesh=mesh, batch_size=batch, compilation_cache=False,
                    micro_batch=micro_batch)
    list(gen.generate(reqs[:batch]))  # compile outside the clock
    t0 = time.perf_counter()
    out = np.stack([r.image for r in gen.generate(reqs)])
    return out, time.perf_counter() - t0


def compare(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    diff = np.abs(ref.astype(np.int16) - got.astype(np.int16))
    per_image = diff.reshape(len(diff), -1).max(axis=1)
    return {"images_differing": float(np.mean(per_image > 0)),
            "values_differing": float(np.mean(diff > 0)),
            "max_diff": int(diff.max())}


def identical_groups(outputs: dict[str, np.ndarray]) -> list[list[str]]:
    """Runs whose images are byte-identical to each other, grouped."""
    groups: list[list[str]] = []
    for name, out in outputs.items():
        group = next((g for g in groups if np.array_equal(outputs[g[0]], out)), None)
        if group is None:
            groups.append([name])
        else:
            group.append(name)
    return groups


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="default, tiny-sd1, tiny-sd2 or a path")
    p.add_argument("--items", type=int, default=24)
    p.add_argument("--steps", type=int, default=RECOMMENDED.get("steps", 25))
    p.add_argument("--guidance", type=float, default=RECOMMENDED.get("guidance", 7.5))
    p.add_argument("--sampler", default=RECOMMENDED.get("sampler", "dpmpp_2m"))
    p.add_argument("--micro-batch", type=int, default=None)
    args = p.parse_args()
    model = load_model(model_dir(args.model))
    reqs = requests(args.items, model.native_size, args.steps, args.guidance, args.sampler)
    modes = [("plain", None)] + ([(f"micro{args.micro_batch}", args.micro_batch)]
                                 if args.micro_batch else [])
    results, outputs, ref = {}, {}, None
    for devices, batch in PAIRS:
        for mode, k in modes:  # interleaved, so both timings see the same machine load
            name = f"{mode}_{devices}dev_b{batch}"
            outputs[name], seconds = images(model, reqs, devices, batch, k)
            ref = outputs[name] if ref is None else ref
            results[name] = {**compare(ref, outputs[name]), "seconds": round(seconds, 2),
                             "per_device": batch // devices}
    print(json.dumps({"model": args.model, "items": args.items, "steps": args.steps,
                      "sampler": args.sampler, "micro_batch": args.micro_batch,
                      "machine": f"{platform.machine()} {platform.processor()}".strip(),
                      "jax": jax.__version__, "image_shape": list(ref.shape[1:]),
                      "reference": next(iter(results)), "runs": results,
                      "identical_groups": identical_groups(outputs)}, indent=1))


if __name__ == "__main__":
    main()
