"""Image-to-image throughput at a sweep of strengths, against text-to-image and diffusers.

    .venv/bin/python -m benchmarks.bench_img2img                  # the default model, 64 px
    .venv/bin/python -m benchmarks.bench_img2img --strengths 0.5 --images 8 --rounds 1

One run, one model, the same steps and sampler throughout: jaxgen's text-to-image, then
jaxgen's image-to-image at each strength (one compiled program for all strengths), then
diffusers' StableDiffusionImg2ImgPipeline at each strength on the same model directory (float32,
torch's own threads, the scheduler jaxgen's sampler names). Each case generates --images
images in batches of --batch, --rounds times after a warm-up batch; the median round counts.
A strength s runs int(steps * s) of the steps, so the ideal image-to-image cost is that share
of text-to-image's UNet work plus one VAE encode; printed beside each row: the steps run and
the time per image as a share of text-to-image's. docs/benchmarks.md ("Image-to-image
throughput") holds the figures.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.harness.timing import timed
from jaxgen.default_model import RECOMMENDED
from jaxgen.engine.sharding import use_all_cpu_cores

STRENGTHS = (0.25, 0.5, 0.75, 1.0)


def init_image(path: Path, side: int) -> Path:
    """A smooth colour field of the model's size: something for the VAE to encode."""
    small = np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8)
    Image.fromarray(small).resize((side, side), Image.BILINEAR).save(path)
    return path


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="diffusers-format model directory (default: jaxgen's)")
    p.add_argument("--steps", type=int, default=RECOMMENDED.get("steps", 25))
    p.add_argument("--sampler", default=RECOMMENDED.get("sampler", "dpmpp_2m"))
    p.add_argument("--guidance", type=float, default=RECOMMENDED.get("guidance", 7.5))
    p.add_argument("--strengths", default=",".join(map(str, STRENGTHS)))
    p.add_argument("--images", type=int, default=32, help="images per round")
    p.add_argument("--batch", type=int, default=16, help="images per device step")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-diffusers", action="store_true", help="jaxgen's rows only")
    args = p.parse_args(argv)
    use_all_cpu_cores()
    from jaxgen.default_model import default_model_path
    from jaxgen.engine.generator import Generator
    from jaxgen.requests import GenerationRequest

    model_dir = str(args.model or default_model_path())
    strengths = [float(s) for s in args.strengths.split(",")]
    gen = Generator.from_pretrained(model_dir, batch_size=args.batch)
    side = gen.model.native_size
    scratch = tempfile.TemporaryDirectory()
    image = init_image(Path(scratch.name) / "init.png", side)

    def requests(**fields) -> list[GenerationRequest]:
        return [GenerationRequest("a red circle left of a blue square", seed=i, steps=args.steps,
                                  sampler=args.sampler, guidance=args.guidance, height=side,
                                  width=side, **fields) for i in range(args.images)]

    def jaxgen(batch: list[GenerationRequest]) -> Callable[[], None]:
        return lambda: list(gen.generate(batch))

    cases = [("text-to-image", None, jaxgen(requests()))]
    cases += [("jaxgen image-to-image", s, jaxgen(requests(init_image=str(image), strength=s)))
              for s in strengths]
    if not args.no_diffusers:
        from jaxgen.eval.diffusers_peer import DiffusersPeer

        pipe = DiffusersPeer(model_dir).pipeline("image-to-image", args.sampler)
        cases += [("diffusers image-to-image", s, diffusers_img2img(pipe, args, image, s))
                  for s in strengths]
    print(f"model {model_dir} ({side} px), {args.steps} steps {args.sampler}, guidance "
          f"{args.guidance}, {args.images} images per round in batches of {args.batch}, median "
          f"of {args.rounds} rounds; jaxgen on {len(gen.mesh.devices.flat)} XLA devices")
    print("| case | strength | steps run | img/s | ms/image | x text-to-image's time |")
    print("|---|---|---|---|---|---|", flush=True)
    rows: list[dict] = []
    for name, strength, run in cases:
        seconds = timed(run, args.rounds)
        ms = 1000 * seconds / args.images
        rows.append({"case": name, "strength": strength,
                     "steps run": steps_run(args.steps, strength), "img/s": args.images / seconds,
                     "ms/image": ms, "x text-to-image": ms / (rows[0]["ms/image"] if rows else ms)})
        r, shown = rows[-1], "-" if strength is None else f"{strength:g}"
        print(f"| {name} | {shown} | {r['steps run']} | {r['img/s']:.2f} | {ms:.1f} | "
              f"{r['x text-to-image']:.2f} |", flush=True)
    scratch.cleanup()
    return rows


def steps_run(steps: int, strength: float | None) -> int:
    """The steps a strength runs, by diffusers' get_timesteps (all of them for text-to-image)."""
    return steps if strength is None else min(int(steps * strength), steps)


def diffusers_img2img(pipe: Any, args: argparse.Namespace, image: Path,
                      strength: float) -> Callable[[], None]:
    """One round of diffusers' image-to-image: --images images in batches of --batch."""
    import torch

    picture = Image.open(image).convert("RGB")

    def run() -> None:
        for start in range(0, args.images, args.batch):
            n = min(args.batch, args.images - start)
            with torch.inference_mode():
                pipe(prompt=["a red circle left of a blue square"] * n, image=[picture] * n,
                     strength=strength, num_inference_steps=args.steps,
                     guidance_scale=args.guidance, output_type="np",
                     generator=torch.Generator().manual_seed(start))

    return run


if __name__ == "__main__":
    main()
