"""Does jaxgen's synthetic data help a few-shot classifier? The DA-Fusion protocol on shapes.

    python -m benchmarks.bench_augment [--shots 1,2,4,8,16] [--seeds 5] [--steps 10]
        [--variants 2] [--strengths 0.25,0.5,0.75] [--train-steps 200] [--test-size 300]
        [--out runs/bench-augment] [--json docs/augmentation.json] [--plot docs/augmentation.png]

Task: the shape of the one object of a rendered scene (circle, square, triangle), its colour,
size, position and background drawn at random. Per seed, k real training images per class
(k in --shots; the k-shot set is the first k of the seed's 16) and one held-out real test set.
A small Flax CNN (optax Adam) is trained per (shots, arm, seed), the same steps and batch in
every arm:
- standard: the real images with standard augmentation (horizontal flips, padded random
  crops, brightness/contrast/saturation jitter);
- img2img@s: the same, each batch element a synthetic image with probability 0.5 (DA-Fusion's
  mixing), the synthetic set `--variants` images of every real training image at strength s;
- text2img: as img2img, the synthetic set `--variants` images per real image drawn from
  "a {label}" alone (no real image);
- each synthetic arm again "+filter": only the images the built-in filter keeps (the shapes
  analyser's read-back shape is the asked label).
Synthetic images come from one `jaxgen augment` run on the default model over every seed's
real images (the recipe below; the filter is applied to its records afterwards, the same
function the recipe's `filter` runs on the worker, so one generation serves both arms). Label
fidelity: the share of synthetic images the filter keeps, per strength.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from jaxgen.augment import run as augment
from jaxgen.augment.filters import shapes_label
from jaxgen.augment.recipe import parse_recipe
from jaxgen.dataset.read import dataset_images
from jaxgen.shapes import SHAPES, render, sample_scene
from jaxgen.shapes.split import TRAIN_SEED_LIMIT

MAX_SHOTS = 16
REAL_SEED_START = 9 * TRAIN_SEED_LIMIT  # scenes of their own, apart from training's and eval's
TEST_SEED_START = 10 * TRAIN_SEED_LIMIT
BATCH = 32
SYNTHETIC_SHARE = 0.5  # DA-Fusion's probability of a synthetic image per batch element
PROMPT = "a {label}"
IMAGE_SIZE = 64  # the shapes renders' size


@dataclasses.dataclass(frozen=True)
class Settings:
    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    seeds: int = 5
    steps: int = 10
    variants: int = 2
    strengths: tuple[float, ...] = (0.25, 0.5, 0.75)
    train_steps: int = 200
    test_size: int = 300
    model: str | None = None


def scenes_by_class(start: int, per_class: int) -> dict[str, list[np.ndarray]]:
    """`per_class` one-object renders of every shape, from scene seeds `start` on."""
    found: dict[str, list[np.ndarray]] = {s: [] for s in SHAPES}
    seed = start
    while min(len(v) for v in found.values()) < per_class:
        scene = sample_scene(seed, num_objects=1)
        seed += 1
        shape = scene.objects[0].shape
        if len(found[shape]) < per_class:
            found[shape].append(render(scene))
    return found


def real_sets(settings: Settings) -> list[dict[str, list[np.ndarray]]]:
    """Per seed: the max(shots) real images of every class (k shots: the first k)."""
    return [scenes_by_class(REAL_SEED_START + s * 100_000, max(settings.shots))
            for s in range(settings.seeds)]


def recipe(settings: Settings) -> dict[str, Any]:
    return {"prompt": PROMPT, "steps": settings.steps, "entries": [
        {"name": "img2img", "kind": "img2img", "n": settings.variants,
         "strength": list(settings.strengths)},
        {"name": "text2img", "kind": "text2img",
         "n": settings.variants * max(settings.shots) * settings.seeds}]}


def generate(settings: Settings, reals: list[dict[str, list[np.ndarray]]],
             work: Path) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(metadata + strength, image) of every synthetic image, through `jaxgen augment`."""
    from jaxgen.default_model import default_model_path
    from jaxgen.engine.spec import GeneratorSpec
    from jaxgen.weights.model_dir import recommended_settings

    source = work / "real"
    for s, real in enumerate(reals):
        for label, images in real.items():
            (source / label).mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                Image.fromarray(image).save(source / label / f"s{s}_{i:02d}.png")
    model = settings.model or str(default_model_path())
    spec = GeneratorSpec(model=model)
    defaults = dict(recommended_settings(model), height=spec.native_size(),
                    width=spec.native_size())
    job = augment.prepare(str(source), parse_recipe(recipe(settings)), str(work / "synthetic"),
                          settings={"shard_size": 256, "size_multiple": spec.size_multiple()},
                          model_defaults=defaults)
    augment.run(job, spec)
    out = []
    for record, data in dataset_images(work / "synthetic"):
        meta = json.loads(record["metadata"]) | {"strength": record.get("strength")}
        out.append((meta | {"label": record["label"]},
                    np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))))
    return out


def synthetic_pools(settings: Settings, synthetic: list[tuple[dict[str, Any], np.ndarray]]
                    ) -> dict[tuple[str, int], list[tuple[str, str, int, np.ndarray, bool]]]:
    """By (arm, seed): (label, source key, source index, image, kept by the filter)."""
    pools: dict[tuple[str, int], list] = {}
    text_index: dict[str, int] = {}
    for meta, image in synthetic:
        kept = shapes_label(image, {"label": meta["label"]}).keep
        if meta["kind"] == "img2img":
            stem = meta["source_key"].split("_s", 1)[1]  # LABEL_sSEED_II
            seed, index = (int(x) for x in stem.split("_"))
            arm = f"img2img@{meta['strength']:g}"
        else:
            i = text_index.get(meta["label"], 0)
            text_index[meta["label"]] = i + 1
            seed, index, arm = i % settings.seeds, (i // settings.seeds) // settings.variants, \
                "text2img"
        pools.setdefault((arm, seed), []).append((meta["label"], arm, index, image, kept))
    return pools


class Classifier(nn.Module):
    """Each image less its background colour (the median of its border pixels), three 3x3
    convolutions of 8, 16 and 16 channels (2x2 max pooling after the first two), global max
    pooling, a linear head.

    Chosen for the task and the 2-core machine: the objects are 5-20 pixels of 64, so the
    input stays full size (halved to 32 px, the shapes blur together and the 16-shot baseline
    stays under 50%), and max pooling keeps a small object's response where mean pooling
    drowns it in background (the first version, stride-2 convolutions and mean pooling, stayed
    at chance at 1, 2 and 16 shots)."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        border = jnp.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
        x = x - jnp.median(border, axis=1)[:, None, None, :]
        for features in (8, 16):
            x = nn.relu(nn.Conv(features, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        return nn.Dense(len(SHAPES))(x.max(axis=(1, 2)))


def standard_augment(key: jax.Array, image: jnp.ndarray) -> jnp.ndarray:
    """Horizontal flip, a 4-pixel (of 64) padded random crop, brightness/contrast/saturation
    jitter."""
    k_flip, k_crop, k_jit = jax.random.split(key, 3)
    image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1], image)
    padded = jnp.pad(image, ((4, 4), (4, 4), (0, 0)), mode="edge")
    dy, dx = jax.random.randint(k_crop, (2,), 0, 9)
    image = jax.lax.dynamic_slice(padded, (dy, dx, 0), image.shape)
    b, c, s = jax.random.uniform(k_jit, (3,), minval=0.8, maxval=1.2)
    grey = image.mean(axis=-1, keepdims=True)
    image = grey + (image - grey) * s
    image = (image - image.mean()) * c + image.mean()
    return jnp.clip(image * b, 0.0, 1.0)


MODEL = Classifier()
OPTIMIZER = optax.adam(3e-3)


def _loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(MODEL.apply(params, x), y).mean()


# One compiled step for every cell and seed (pools are padded to one size), driven from
# Python: inside a lax.fori_loop XLA's CPU backend ran the same convolutions 3-4x slower.
@jax.jit
def train_step(params, state, key, real_x, real_y, n_real, syn_x, syn_y, n_syn):
    """One Adam step on a batch from the real pool (its first n_real), each element from the
    synthetic pool (its first n_syn) with probability SYNTHETIC_SHARE, then augmented."""
    k_r, k_s, k_pick, k_aug = jax.random.split(key, 4)
    ri = jax.random.randint(k_r, (BATCH,), 0, n_real)
    si = jax.random.randint(k_s, (BATCH,), 0, jnp.maximum(n_syn, 1))
    use_syn = jax.random.bernoulli(k_pick, SYNTHETIC_SHARE, (BATCH,)) & (n_syn > 0)
    x = jnp.where(use_syn[:, None, None, None], syn_x[si], real_x[ri])
    y = jnp.where(use_syn, syn_y[si], real_y[ri])
    x = jax.vmap(standard_augment)(jax.random.split(k_aug, BATCH), x)
    updates, state = OPTIMIZER.update(jax.grad(_loss)(params, x, y), state, params)
    return optax.apply_updates(params, updates), state


predict = jax.jit(lambda params, x: MODEL.apply(params, x).argmax(-1))


def train_and_test(key: jax.Array, real_x, real_y, n_real, syn_x, syn_y, n_syn, test_x,
                   test_y, *, steps: int) -> float:
    """Test accuracy of a classifier trained `steps` steps of `train_step`."""
    k_init, k_train = jax.random.split(key)
    params = MODEL.init(k_init, real_x[:1])
    state = OPTIMIZER.init(params)
    for i in range(steps):
        params, state = train_step(params, state, jax.random.fold_in(k_train, i), real_x,
                                   real_y, n_real, syn_x, syn_y, n_syn)
    return float((np.asarray(predict(params, test_x)) == np.asarray(test_y)).mean())


def _stack(images: list[np.ndarray], size: int) -> np.ndarray:
    """Images in [0, 1] at IMAGE_SIZE (a user's model may draw at another size), padded to
    `size`."""
    out = np.zeros((size, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    for i, image in enumerate(images):
        if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
            image = np.asarray(Image.fromarray(image).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                             Image.BILINEAR))
        out[i] = image.astype(np.float32) / 255.0
    return out


def run(settings: Settings, work: Path) -> dict[str, Any]:
    started = time.perf_counter()
    reals = real_sets(settings)
    tests = scenes_by_class(TEST_SEED_START, -(-settings.test_size // len(SHAPES)))
    test_x = jnp.asarray(_stack([im for s in SHAPES for im in tests[s]],
                                sum(len(v) for v in tests.values())))
    test_y = jnp.asarray([i for i, s in enumerate(SHAPES) for _ in tests[s]])
    t0 = time.perf_counter()
    synthetic = generate(settings, reals, work)
    generate_s = time.perf_counter() - t0
    pools = synthetic_pools(settings, synthetic)
    fidelity = {}
    for arm in sorted({a for a, _ in pools}):
        kept = [k for (a, _), items in pools.items() if a == arm for *_, k in items]
        fidelity[arm] = {"images": len(kept), "label_fidelity": round(float(np.mean(kept)), 4)}
    arms = ["standard"] + [f"{a}{f}" for a in [f"img2img@{s:g}" for s in settings.strengths]
                           + ["text2img"] for f in ("", "+filter")]
    syn_size = max(len(v) for v in pools.values())
    real_size = len(SHAPES) * max(settings.shots)
    cells: dict[str, dict[str, Any]] = {}
    t1 = time.perf_counter()
    for k in settings.shots:
        for arm in arms:
            batch = {n: [] for n in ("real_x", "real_y", "n_real", "syn_x", "syn_y", "n_syn")}
            for seed in range(settings.seeds):
                real = [(i, im) for i, s in enumerate(SHAPES) for im in reals[seed][s][:k]]
                base, _, filtered = arm.partition("+")
                syn = [(SHAPES.index(label), im) for label, _, index, im, kept
                       in pools.get((base, seed), []) if index < k and (kept or not filtered)]
                batch["real_x"].append(_stack([im for _, im in real], real_size))
                batch["real_y"].append(np.resize([y for y, _ in real], real_size))
                batch["n_real"].append(len(real))
                batch["syn_x"].append(_stack([im for _, im in syn], syn_size))
                batch["syn_y"].append(np.resize([y for y, _ in syn] or [0], syn_size))
                batch["n_syn"].append(0 if arm == "standard" else len(syn))
            keys = jax.random.split(jax.random.key(k), settings.seeds)
            acc = np.array([train_and_test(keys[s], *(jnp.asarray(batch[n][s]) for n in batch),
                                           test_x, test_y, steps=settings.train_steps)
                            for s in range(settings.seeds)]) * 100
            cells.setdefault(str(k), {})[arm] = {
                "mean": round(float(acc.mean()), 2), "std": round(float(acc.std()), 2),
                "per_seed": [round(float(a), 2) for a in acc],
                "synthetic_images": int(np.mean(batch["n_syn"]))}
            print(f"k={k:2d} {arm:22s} {acc.mean():5.1f} +- {acc.std():4.1f}", flush=True)
    return {
        "settings": dataclasses.asdict(settings), "recipe": recipe(settings),
        "test_images": int(test_y.shape[0]), "fidelity": fidelity, "accuracy": cells,
        "arms": arms, "generate_s": round(generate_s, 1),
        "train_s": round(time.perf_counter() - t1, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count(),
                    "jax_devices": str(jax.devices()[0].platform)},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def table(result: dict[str, Any]) -> str:
    shots = list(result["accuracy"])
    lines = ["| arm | " + " | ".join(f"k={k}" for k in shots) + " |",
             "|---|" + "---|" * len(shots)]
    for arm in result["arms"]:
        cells = [result["accuracy"][k][arm] for k in shots]
        lines.append(f"| {arm} | " + " | ".join(f"{c['mean']:.1f} ± {c['std']:.1f}"
                                                 for c in cells) + " |")
    lines += ["", "| synthetic set | images | label fidelity |", "|---|---|---|"]
    lines += [f"| {arm} | {f['images']} | {f['label_fidelity']:.2f} |"
              for arm, f in result["fidelity"].items()]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path, width: int = 760, height: int = 320) -> None:
    """Accuracy against shots per arm (left), label fidelity per synthetic set (right)."""
    from PIL import ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    palette = [(0, 0, 0), (31, 119, 180), (174, 199, 232), (255, 127, 14), (255, 187, 120),
               (44, 160, 44), (152, 223, 138), (214, 39, 40), (255, 152, 150)]
    shots = list(result["accuracy"])
    x0, y0, x1, y1 = 50, 30, int(width * 0.62), height - 40
    draw.rectangle([x0, y0, x1, y1], outline="black")
    draw.text((x0, 8), "test accuracy (%) against real images per class", fill="black")
    for t in range(6):
        y = y1 - (y1 - y0) * t / 5
        draw.line([x0, y, x1, y], fill=(225, 225, 225))
        draw.text((x0 - 30, y - 6), f"{20 * t}", fill="black")
    xs = [x0 + 20 + (x1 - x0 - 40) * i / max(1, len(shots) - 1) for i in range(len(shots))]
    for x, k in zip(xs, shots, strict=True):
        draw.text((x - 4, y1 + 6), k, fill="black")
    for j, arm in enumerate(result["arms"]):
        colour = palette[j % len(palette)]
        pts = [(x, y1 - (y1 - y0) * result["accuracy"][k][arm]["mean"] / 100)
               for x, k in zip(xs, shots, strict=True)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((x1 + 10, y0 + 14 * j), arm, fill=colour)
    fx0, fx1 = x1 + 150, width - 15
    draw.text((fx0 - 10, y1 - 110), "label fidelity", fill="black")
    for j, (arm, f) in enumerate(result["fidelity"].items()):
        y = y1 - 90 + 22 * j
        draw.rectangle([fx0, y, fx0 + (fx1 - fx0 - 40) * f["label_fidelity"], y + 14],
                       fill=(31, 119, 180))
        draw.text((fx0 - 140 + 150 - 10 - 7 * len(arm), y), arm, fill="black")
        draw.text((fx0 + 2, y + 1), f"{f['label_fidelity']:.2f}", fill="white")
    img.save(path)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Settings()
    p.add_argument("--shots", default=",".join(map(str, d.shots)),
                   help=f"real images per class, comma-separated (default: {d.shots})")
    p.add_argument("--seeds", type=int, default=d.seeds, help=f"default: {d.seeds}")
    p.add_argument("--steps", type=int, default=d.steps, help=f"sampler steps ({d.steps})")
    p.add_argument("--variants", type=int, default=d.variants,
                   help=f"synthetic images per real image and strength ({d.variants})")
    p.add_argument("--strengths", default=",".join(map(str, d.strengths)),
                   help=f"img2img strengths ({d.strengths})")
    p.add_argument("--train-steps", type=int, default=d.train_steps,
                   help=f"classifier steps, batch {BATCH} ({d.train_steps})")
    p.add_argument("--test-size", type=int, default=d.test_size, help=f"({d.test_size})")
    p.add_argument("--model", help="a diffusers model directory (default: the default model)")
    p.add_argument("--out", default="runs/bench-augment", help="work directory")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--plot", help="write the PNG plot here")
    args = p.parse_args(argv)
    shots = tuple(int(v) for v in args.shots.split(","))
    if not shots or max(shots) > MAX_SHOTS or min(shots) < 1:
        p.error(f"--shots {args.shots}: each in [1, {MAX_SHOTS}]")
    settings = Settings(shots, args.seeds, args.steps, args.variants, _floats(args.strengths),
                        args.train_steps, args.test_size, args.model)
    result = run(settings, Path(args.out))
    print(table(result))
    print(f"wall {result['wall_s']} s (generate {result['generate_s']} s, "
          f"train {result['train_s']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(result, Path(args.plot))
    return result


if __name__ == "__main__":
    main()
