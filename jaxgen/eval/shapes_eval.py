"""Prompt adherence on the shapes domain, GenEval-style: generate, analyse, score exactly.

The prompt set is held out from training: scene seeds come from above the training range, and
every template is used, including the ones training holds back (see ShapesData), so part of
the wording is new to the text encoder. Each prompt is checked before use: its own rendered
scene must score joint-correct under the parser and analyser, so a failure is the model's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxgen.default_model import RECOMMENDED
from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import devices_dividing, make_mesh
from jaxgen.models import AutoencoderKL, VAEConfig
from jaxgen.requests import GenerationRequest
from jaxgen.shapes import (
    IMAGE_SIZE,
    PAIR_TEMPLATES,
    SINGLE_TEMPLATES,
    analyse,
    caption,
    parse_caption,
    render,
    sample_scene,
    score,
)
from jaxgen.shapes.split import TRAIN_SEED_LIMIT, ShapesData
from jaxgen.weights.model_dir import DiffusionModel

EVAL_SEED_START = 2 * TRAIN_SEED_LIMIT
# Settings (guidance, steps) are chosen on a second held-out set, so the evaluation set reports
# a model that was not tuned on it. FD's classifier draws from 3 * TRAIN_SEED_LIMIT.
TUNING_SEED_START = 4 * TRAIN_SEED_LIMIT
PROMPT_SETS = {"eval": EVAL_SEED_START, "tuning": TUNING_SEED_START}
ATTRIBUTES = ("shape", "colour", "size", "position", "background", "relation", "count", "joint")
# prompts, seeds -> uint8 [N, H, W, 3]
Generate = Callable[[list[str], np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class EvalPrompt:
    seed: int  # the scene's seed, also the generation seed
    text: str
    num_objects: int
    template: int
    new_wording: bool  # the template is held out of training


def eval_prompts(n: int, seed_start: int = EVAL_SEED_START,
                 data: ShapesData | None = None) -> list[EvalPrompt]:
    """`n` prompts, alternating one- and two-object scenes, templates in rotation.

    `data` names the templates training held out (default: ShapesData()'s).
    """
    data = data or ShapesData()
    prompts: list[EvalPrompt] = []
    seed = seed_start
    while len(prompts) < n:
        k = 1 + len(prompts) % 2
        templates = SINGLE_TEMPLATES if k == 1 else PAIR_TEMPLATES
        template = (len(prompts) // 2) % len(templates)
        scene = sample_scene(seed, num_objects=k)
        text = caption(scene, seed, template=template)
        if score(parse_caption(text), analyse(render(scene)))["joint"]:
            held = data.holdout_single if k == 1 else data.holdout_pair
            prompts.append(EvalPrompt(seed, text, k, template, template in held))
        seed += 1
    return prompts


@dataclasses.dataclass(frozen=True)
class ShapesEvalReport:
    """accuracy[group][attribute]: fraction correct among prompts asking that attribute.

    Groups: all, single, two, seen_wording, new_wording. counts[group]: prompts in it.
    """

    accuracy: dict[str, dict[str, float]]
    counts: dict[str, int]
    passed: list[bool]  # joint, per prompt

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "counts": self.counts}

    def summary(self) -> str:
        lines = []
        for group, acc in self.accuracy.items():
            cells = " ".join(f"{a}={v:.3f}" for a, v in acc.items())
            lines.append(f"{group:>12} (n={self.counts[group]}): {cells}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ShapesEval:
    """Generate every held-out prompt once, analyse the image and score it."""

    num_prompts: int = 200
    seed_start: int = EVAL_SEED_START
    data: ShapesData = ShapesData()

    def prompts(self) -> list[EvalPrompt]:
        return eval_prompts(self.num_prompts, self.seed_start, self.data)

    def run(self, generate: Generate) -> tuple[ShapesEvalReport, np.ndarray]:
        prompts = self.prompts()
        images = np.asarray(generate([p.text for p in prompts],
                                     np.array([p.seed for p in prompts], np.int64)))
        if images.shape[0] != len(prompts):
            raise ValueError(f"generator returned {images.shape[0]} images for "
                             f"{len(prompts)} prompts")
        scores = [score(parse_caption(p.text), analyse(img))
                  for p, img in zip(prompts, images, strict=True)]
        return summarise(prompts, scores), images


def summarise(prompts: list[EvalPrompt], scores: list[dict]) -> ShapesEvalReport:
    groups = {
        "all": lambda p: True, "single": lambda p: p.num_objects == 1,
        "two": lambda p: p.num_objects == 2, "seen_wording": lambda p: not p.new_wording,
        "new_wording": lambda p: p.new_wording,
    }
    chosen = {group: [s for p, s in zip(prompts, scores, strict=True) if member(p)]
              for group, member in groups.items()}
    accuracy, counts = _accuracy(chosen)
    return ShapesEvalReport(accuracy, counts, [bool(s["joint"]) for s in scores])


def _accuracy(chosen: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Per group: each attribute's fraction right among the prompts asking it, and the count."""
    accuracy, counts = {}, {}
    for group, scores in chosen.items():
        counts[group] = len(scores)
        accuracy[group] = {}
        for attr in ATTRIBUTES:
            asked = [s[attr] for s in scores if s[attr] is not None]
            if asked:
                accuracy[group][attr] = float(np.mean(asked))
    return accuracy, counts


@dataclasses.dataclass(frozen=True)
class PromptResult:
    """One prompt's outcome, as report.json names it."""

    text: str
    seed: int
    passed: bool | None  # joint; None: not scored
    reason: str | None = None  # why not scored: the caption parser's message

    def to_dict(self) -> dict:
        result = "not scored" if self.passed is None else "pass" if self.passed else "fail"
        entry = {"text": self.text, "seed": self.seed, "result": result}
        if self.reason is not None:
            entry["reason"] = self.reason
        return entry


def score_prompts(texts: list[str], seeds: list[int], generate: Generate
                  ) -> tuple[ShapesEvalReport, list[PromptResult], np.ndarray]:
    """Generate any prompts (a user's own), and score those the caption parser reads.

    A prompt is scored on what it states (a free attribute is not asked); one the parser
    cannot read is still generated, and its result says why it was not scored.
    counts["not_scored"] counts those; `passed` lists the scored prompts' joint passes.
    """
    images = np.asarray(generate(list(texts), np.array(seeds, np.int64)))
    if images.shape[0] != len(texts):
        raise ValueError(f"generator returned {images.shape[0]} images for {len(texts)} prompts")
    results: list[PromptResult] = []
    chosen: dict[str, list[dict]] = {"all": [], "single": [], "two": []}
    for text, seed, image in zip(texts, seeds, images, strict=True):
        try:
            spec = parse_caption(text)
        except ValueError as err:
            results.append(PromptResult(text, int(seed), None, str(err)))
            continue
        scores = score(spec, analyse(image))
        chosen["all"].append(scores)
        if len(spec.objects) in (1, 2):
            chosen["single" if len(spec.objects) == 1 else "two"].append(scores)
        results.append(PromptResult(text, int(seed), bool(scores["joint"])))
    accuracy, counts = _accuracy(chosen)
    counts["not_scored"] = len(texts) - counts["all"]
    passed = [r.passed for r in results if r.passed is not None]
    return ShapesEvalReport(accuracy, counts, passed), results, images


def model_generator(model: DiffusionModel, *, guidance: float = RECOMMENDED["guidance"],
                    steps: int = RECOMMENDED["steps"], sampler: str = RECOMMENDED["sampler"],
                    batch_size: int = 32, params: dict | None = None) -> Generate:
    """A Generate over jaxgen's Generator, in float32, batches of `batch_size` (the last one
    padded), each prompt's image drawn from its seed (image index 0).

    Each batch is split over the local devices (as many as divide `batch_size`), so a CPU split
    into one device per core keeps every core busy. The per-device programs round differently
    from one device's, in rare uint8 values, never in a ShapesEval score measured so far
    (docs/benchmarks.md, "One XLA device per core").
    `params` replace the model's (e.g. weights being trained).
    """
    if params is not None:
        model = dataclasses.replace(model, params=params)
    generator = Generator(model, mesh=make_mesh(devices=devices_dividing(batch_size)),
                          dtype=jnp.float32, batch_size=batch_size, compilation_cache=False)

    def generate(prompts: list[str], seeds: np.ndarray) -> np.ndarray:
        requests = [GenerationRequest(prompt, seed=int(seed), guidance=guidance, steps=steps,
                                      height=IMAGE_SIZE, width=IMAGE_SIZE, sampler=sampler)
                    for prompt, seed in zip(prompts, seeds, strict=True)]
        return np.stack([result.image for result in generator.generate(requests)])

    return generate


def reconstruction_generator(vae_config: VAEConfig, vae_params: dict,
                             prompts: list[EvalPrompt]) -> Generate:
    """Each prompt's own scene, rendered and passed through the VAE (posterior mean).

    Its score is the ceiling of any model decoding with this VAE: a VAE that blurs sizes or
    shapes shows up here before a day of UNet training is spent on it.
    """
    vae = AutoencoderKL(vae_config)
    counts = {p.seed: p.num_objects for p in prompts}
    roundtrip = jax.jit(lambda params, x: vae.apply({"params": params}, x))

    def generate(texts: list[str], seeds: np.ndarray) -> np.ndarray:
        del texts
        images = np.stack([render(sample_scene(int(s), counts[int(s)])) for s in seeds])
        out = roundtrip(vae_params, images.astype(np.float32) / 127.5 - 1.0)
        return np.asarray(jnp.round(jnp.clip(out / 2 + 0.5, 0, 1) * 255), np.uint8)

    return generate


FRAMES = {True: (40, 200, 40), False: (220, 30, 30), None: (160, 160, 160)}
CAPTION_LINES = 5


def contact_sheet(images: np.ndarray, passed: list[bool | None] | None, path: str | Path,
                  columns: int = 16, border: int = 2, captions: list[str] | None = None) -> Path:
    """A PNG grid of the images, each framed green (joint pass), red (fail) or grey (not
    scored: passed[i] is None); with `captions`, each image's text is written under it."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    font = ImageFont.load_default()  # bundled with Pillow: nothing downloaded
    line_h = font.getbbox("Ag")[3] + 2
    text_h = CAPTION_LINES * line_h + 2 if captions is not None else 0
    cell_h, cell_w = h + text_h + 2 * border, w + 2 * border
    sheet = np.full((rows * cell_h, columns * cell_w, 3), 128, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        y, x = r * cell_h, c * cell_w
        if passed is not None:
            sheet[y:y + cell_h, x:x + cell_w] = FRAMES[passed[i]]
        sheet[y + border:y + border + h, x + border:x + border + w] = image
        if captions is not None:
            sheet[y + border + h:y + cell_h - border, x + border:x + border + w] = 255
    picture = Image.fromarray(sheet)
    if captions is not None:
        draw = ImageDraw.Draw(picture)
        for i, text in enumerate(captions[:n]):
            r, c = divmod(i, columns)
            x, y = c * cell_w + border + 1, r * cell_h + border + h + 1
            for k, line in enumerate(_wrap(text, font, w - 2, CAPTION_LINES)):
                draw.text((x, y + k * line_h), line, fill=(0, 0, 0), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int,
          max_lines: int) -> list[str]:
    """`text` in lines no wider than `width` pixels, at most `max_lines`, the last cut with
    "..." when it does not all fit (a word wider than a line is cut too)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    cut = len(lines) > max_lines
    lines = lines[:max_lines]
    for k, line in enumerate(lines):
        last = k == len(lines) - 1
        if font.getlength(line) <= width and not (last and cut):
            continue
        while line and font.getlength(line + "...") > width:
            line = line[:-1]
        lines[k] = line + "..."
    return lines
