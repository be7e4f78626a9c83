"""The exact edit benchmark: image-to-image and inpainting on the default model, read back exactly.

    python -m benchmarks.bench_edit [--n 64] [--strengths 0.3 0.5 0.7 0.9 1.0]
        [--inpaint-strengths 0.7 1.0] [--out runs/bench-edit.json]

Rendered shapes scenes go in as init images and the analyser reads the results back:
- image-to-image: a one-object scene, prompted with the caption of the same scene with one
  attribute changed (even cases the colour, odd cases the shape);
- inpainting: a two-object scene, one object's grid cell masked (on the latent grid, so the
  pixel mask is the latent mask), prompted with the caption of the scene with a different
  object (another shape and another colour, same size) in that cell.
Edit success: the asked attribute (object) is there. Preservation: the rest is unchanged (the
other attributes and the background; for inpainting the other object, no extra object, and the
fraction of pixels outside the mask, dilated by one latent pixel, within 2/255 of the source).
Both: the image reads back as the edited scene. docs/default-model.md holds the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from scipy import ndimage

from jaxgen.default_model import RECOMMENDED, default_model_path
from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import devices_dividing, make_mesh
from jaxgen.requests import GenerationRequest
from jaxgen.shapes import COLOURS, IMAGE_SIZE, SHAPES, Scene, analyse, caption, render, sample_scene
from jaxgen.shapes.scene import position_cell
from jaxgen.shapes.split import TRAIN_SEED_LIMIT

# Scenes of their own: training uses seeds below 1e9; evaluation, FD, tuning and recall 2e9-5e9.
EDIT_SEED_START = 7 * TRAIN_SEED_LIMIT
_EDIT_STREAM = 0x65_6469_74  # "edit": the edit's draws, apart from the scene's and caption's
# A pixel counts as preserved within this many uint8 levels of the source, on every channel.
PIXEL_TOLERANCE = 2
_ATTRIBUTES = ("shape", "colour", "size", "position")


@dataclass(frozen=True)
class EditCase:
    seed: int  # the scene's, the caption's and the image's
    source: Scene
    edited: Scene
    edit: str  # "colour" or "shape" (image-to-image), "object" (inpainting)
    target: int  # which object of `source` is edited

    @property
    def prompt(self) -> str:
        return caption(self.edited, self.seed)


def img2img_cases(n: int, seed_start: int = EDIT_SEED_START) -> list[EditCase]:
    """n one-object scenes; even cases ask for another colour, odd ones for another shape."""
    cases = []
    for i in range(n):
        seed = seed_start + i
        source = sample_scene(seed, num_objects=1)
        (obj,) = source.objects
        rng = np.random.default_rng([seed, _EDIT_STREAM])
        if i % 2 == 0:
            colours = [c for c in COLOURS if c not in (obj.colour, source.background)]
            new, edit = replace(obj, colour=colours[int(rng.integers(len(colours)))]), "colour"
        else:
            shapes = [s for s in SHAPES if s != obj.shape]
            new, edit = replace(obj, shape=shapes[int(rng.integers(len(shapes)))]), "shape"
        cases.append(EditCase(seed, source, replace(source, objects=(new,)), edit, 0))
    return cases


def inpaint_cases(n: int, seed_start: int = EDIT_SEED_START + 10_000_000) -> list[EditCase]:
    """n two-object scenes; one object (chosen per scene) becomes another shape in another
    colour (never the background's), same size, same cell."""
    cases = []
    for i in range(n):
        seed = seed_start + i
        source = sample_scene(seed, num_objects=2)
        rng = np.random.default_rng([seed, _EDIT_STREAM])
        target = int(rng.integers(2))
        old = source.objects[target]
        shapes = [s for s in SHAPES if s != old.shape]
        colours = [c for c in COLOURS if c not in (old.colour, source.background)]
        new = replace(old, shape=shapes[int(rng.integers(len(shapes)))],
                      colour=colours[int(rng.integers(len(colours)))])
        objects = tuple(new if k == target else o for k, o in enumerate(source.objects))
        cases.append(EditCase(seed, source, replace(source, objects=objects), "object", target))
    return cases


def cell_mask(position: str, latent_factor: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """Boolean [size, size] mask of a grid cell on the latent grid: every latent pixel whose
    centre lies in the cell, at full resolution (the latent mask is then exactly this one)."""
    centres = (np.arange(size // latent_factor) + 0.5) * latent_factor
    cells = np.minimum((centres * 3 / size).astype(int), 2).repeat(latent_factor)
    row, col = position_cell(position)
    return (cells[:, None] == row) & (cells[None, :] == col)


def judge_img2img(case: EditCase, image: np.ndarray) -> dict[str, bool]:
    """Success: one object, with the asked attribute; preservation: one object, with the
    source's other attributes, on the source's background."""
    found = analyse(image)
    (want,), (was,) = case.edited.objects, case.source.objects
    one = len(found.objects) == 1
    got = found.objects[0] if one else None
    success = got is not None and getattr(got, case.edit) == getattr(want, case.edit)
    preserved = got is not None and found.background == case.source.background and all(
        getattr(got, a) == getattr(was, a) for a in _ATTRIBUTES if a != case.edit)
    return {"success": success, "preserved": preserved, "both": success and preserved}


def judge_inpaint(case: EditCase, image: np.ndarray, keep: np.ndarray) -> dict[str, bool | float]:
    """Success: exactly the asked object in the masked cell; preservation: the other object
    and the background as they were and nothing else found; `pixels_kept`: the fraction of the
    `keep` pixels within PIXEL_TOLERANCE of the source render on every channel."""
    found = analyse(image)
    want = case.edited.objects[case.target]
    inside = [o for o in found.objects if o.position == want.position]
    outside = [o for o in found.objects if o.position != want.position]
    others = [o for k, o in enumerate(case.source.objects) if k != case.target]
    success = inside == [want]
    preserved = found.background == case.source.background and outside == others
    difference = np.abs(image.astype(np.int16) - render(case.source).astype(np.int16)).max(-1)
    return {"success": success, "preserved": preserved, "both": success and preserved,
            "pixels_kept": float(np.mean(difference[keep] <= PIXEL_TOLERANCE))}


def vae_pixels_kept(generator: Generator, cases: list[EditCase], keeps: list[np.ndarray]) -> float:
    """The ceiling of `pixels_kept`: the same fraction for each source render passed through
    the model's VAE alone (posterior mean), since the kept latents are decoded too."""
    vae = generator.model.modules()[1]
    sources = np.stack([render(case.source) for case in cases])
    out = jax.jit(lambda p, x: vae.apply({"params": p}, x))(
        generator.model.params["vae"], sources.astype(np.float32) / 127.5 - 1.0)
    decoded = np.asarray(jnp.round(jnp.clip(out / 2 + 0.5, 0, 1) * 255), np.uint8)
    difference = np.abs(decoded.astype(np.int16) - sources.astype(np.int16)).max(-1)
    return float(np.mean([np.mean(d[keep] <= PIXEL_TOLERANCE)
                          for d, keep in zip(difference, keeps, strict=True)]))


def _save(path: Path, pixels: np.ndarray) -> str:
    Image.fromarray(pixels).save(path)
    return str(path)


def run(generator: Generator, strengths: list[float], inpaint_strengths: list[float], n: int,
        workdir: Path, *, guidance: float, steps: int, sampler: str) -> dict:
    """Generate and judge every case at every strength; per-case results and per-cell times."""
    factor = generator.model.latent_factor
    settings = {"guidance": guidance, "steps": steps, "sampler": sampler,
                "height": IMAGE_SIZE, "width": IMAGE_SIZE}
    cells, ceiling = [], None
    for mode, cases, cell_strengths in (("image-to-image", img2img_cases(n), strengths),
                                        ("inpainting", inpaint_cases(n), inpaint_strengths)):
        paths, masks, keeps = [], [], []
        for case in cases:
            paths.append(_save(workdir / f"{case.seed}.png", render(case.source)))
            if mode == "inpainting":
                mask = cell_mask(case.source.objects[case.target].position, factor)
                masks.append(_save(workdir / f"{case.seed}-mask.png", mask.astype(np.uint8) * 255))
                # The decoder mixes neighbouring latents: one latent pixel around the mask is
                # neither kept nor repainted.
                keeps.append(~ndimage.binary_dilation(mask, np.ones((3, 3), bool), factor))
        if keeps:
            ceiling = vae_pixels_kept(generator, cases, keeps)
        for strength in cell_strengths:
            requests = [GenerationRequest(case.prompt, seed=case.seed, init_image=path,
                                          strength=strength, mask_image=masks[k] if masks else None,
                                          **settings)
                        for k, (case, path) in enumerate(zip(cases, paths, strict=True))]
            start = time.perf_counter()
            images = [result.image for result in generator.generate(requests)]
            seconds = time.perf_counter() - start
            results = [judge_img2img(case, image) if mode == "image-to-image"
                       else judge_inpaint(case, image, keeps[k])
                       for k, (case, image) in enumerate(zip(cases, images, strict=True))]
            cells.append({"mode": mode, "strength": strength, "seconds": round(seconds, 1),
                          "summary": summarise(cases, results),
                          "cases": [{"seed": c.seed, "edit": c.edit, "prompt": c.prompt, **r,
                                     "found": describe(analyse(image))}
                                    for c, r, image in zip(cases, results, images, strict=True)]})
            print(table_row(cells[-1]), flush=True)
    return {"settings": settings, "n": n, "cells": cells, "vae_pixels_kept": ceiling}


def describe(scene: Scene) -> str:
    """What the analyser read, in one line: "pink: large green circle at bottom right; ..."."""
    objects = "; ".join(f"{o.size} {o.colour} {o.shape} at {o.position}" for o in scene.objects)
    return f"{scene.background}: {objects or 'no object'}"


def summarise(cases: list[EditCase], results: list[dict]) -> dict[str, float | int]:
    summary: dict[str, float | int] = {"n": len(results)}
    for key in ("success", "preserved", "both"):
        summary[key] = float(np.mean([r[key] for r in results]))
    for edit in sorted({c.edit for c in cases} - {"object"}):
        chosen = [r["both"] for c, r in zip(cases, results, strict=True) if c.edit == edit]
        summary[f"both_{edit}"] = float(np.mean(chosen))
    if "pixels_kept" in results[0]:
        summary["pixels_kept"] = float(np.mean([r["pixels_kept"] for r in results]))
    return summary


TABLE_HEADER = ("| edit | strength | n | success | preservation | both | both, colour edits "
                "| both, shape edits | pixels kept outside the mask |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def table_row(cell: dict) -> str:
    s = cell["summary"]
    edit = "image-to-image, colour or shape" if cell["mode"] == "image-to-image" else \
        "inpainting, another object"

    def figure(key: str) -> str:
        return f"{s[key]:.3f}" if key in s else "–"

    return (f"| {edit} | {cell['strength']} | {s['n']} | {figure('success')} | "
            f"{figure('preserved')} | {figure('both')} | {figure('both_colour')} | "
            f"{figure('both_shape')} | {figure('pixels_kept')} |")


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} x {len(names)}" if names else platform.machine()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the packaged one)")
    parser.add_argument("--n", type=int, default=64, help="scenes per strength and mode")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9, 1.0])
    parser.add_argument("--inpaint-strengths", type=float, nargs="+", default=[0.7, 1.0])
    parser.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    parser.add_argument("--steps", type=int, default=RECOMMENDED["steps"])
    parser.add_argument("--sampler", default=RECOMMENDED["sampler"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-edit.json"))
    args = parser.parse_args(argv)
    model = Path(args.model) if args.model else default_model_path()
    start = time.perf_counter()
    generator = Generator.from_pretrained(
        model, mesh=make_mesh(devices=devices_dividing(args.batch_size)), dtype=jnp.float32,
        batch_size=args.batch_size, compilation_cache=False)
    print(TABLE_HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        report = run(generator, args.strengths, args.inpaint_strengths, args.n, Path(tmp),
                     guidance=args.guidance, steps=args.steps, sampler=args.sampler)
    report |= {
        "model": args.model or "the packaged default model", "model_hash": generator.model_hash,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{cpu_name()}, {jax.device_count()} XLA {jax.default_backend()} devices",
        "batch_size": args.batch_size, "total_seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"VAE alone keeps {report['vae_pixels_kept']:.3f} of the pixels outside the masks")
    print(f"{report['total_seconds']} s in all (compiles included); wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
