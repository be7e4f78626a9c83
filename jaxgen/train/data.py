"""Captioned-shapes training batches, each a pure function of (data config, step).

Nothing depends on process state: a resumed run sees exactly the batches an uninterrupted one
would have seen. Training scenes come from seeds below TRAIN_SEED_LIMIT; evaluation draws from
above it, so no evaluation scene is ever a training scene.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from jaxgen.shapes import PAIR_TEMPLATES, SINGLE_TEMPLATES, caption, render, sample_scene
from jaxgen.shapes.captions import POSITION_AT, POSITION_IN, RELATION_PHRASES, SIZE_WORDS
from jaxgen.shapes.scene import COLOURS, SHAPES
from jaxgen.train.wording import template_pattern, vary_wording
from jaxgen.weights.tokenizer import tokenize, write_clip_tokenizer

TRAIN_SEED_LIMIT = 1_000_000_000
# Words the parser understands beyond the templates, so free-form prompts stay one token a word.
_EXTRA_WORDS = ("tiny", "upper", "lower", "centre", "middle", "under", "backdrop", "an", "and")


@dataclasses.dataclass(frozen=True)
class ShapesData:
    """How training captions are drawn.

    holdout_single / holdout_pair: template indices never used in training, so the evaluation
    can measure wording the text encoder has not seen.
    """

    caption_dropout: float = 0.1  # empty captions teach the unconditional branch used by CFG
    # Share of captions rewritten by jaxgen.train.wording.vary_wording (the wording stage).
    vary_wording: float = 0.0
    # Share of each batch drawn from two-object scenes (stage 5); None: as the seeds fall,
    # about half.
    two_object_share: float | None = None
    holdout_single: tuple[int, ...] = (4,)
    holdout_pair: tuple[int, ...] = (2,)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"data caption_dropout={self.caption_dropout!r}: must be in [0, 1)")
        if not 0 <= self.vary_wording <= 1:
            raise ValueError(f"data vary_wording={self.vary_wording!r}: must be in [0, 1]")
        share = self.two_object_share
        if share is not None and (isinstance(share, bool) or not isinstance(share, int | float)
                                  or not 0 <= share <= 1):
            raise ValueError(f"data two_object_share={share!r}: must be in [0, 1]")
        for name, templates in (("holdout_single", SINGLE_TEMPLATES),
                                ("holdout_pair", PAIR_TEMPLATES)):
            held = getattr(self, name)
            if any(not 0 <= i < len(templates) for i in held) or len(held) >= len(templates):
                raise ValueError(f"data {name}={held!r}: indices must lie in "
                                 f"[0, {len(templates)}) and leave at least one template")

    def is_held_out_wording(self, text: str) -> bool:
        """Whether `text` has the form of a held-out template (any fields)."""
        held = ([SINGLE_TEMPLATES[i] for i in self.holdout_single]
                + [PAIR_TEMPLATES[i] for i in self.holdout_pair])
        return any(template_pattern(t).fullmatch(text) for t in held)

    def train_templates(self, num_objects: int) -> tuple[int, ...]:
        held, n = ((self.holdout_single, len(SINGLE_TEMPLATES)) if num_objects == 1
                   else (self.holdout_pair, len(PAIR_TEMPLATES)))
        return tuple(i for i in range(n) if i not in held)


def shapes_words() -> list[str]:
    """Every word a shapes caption (or a prompt the parser reads) can contain."""
    phrases = [*SINGLE_TEMPLATES, *PAIR_TEMPLATES, *POSITION_AT.values(), *POSITION_IN.values(),
               *(w for ws in SIZE_WORDS.values() for w in ws),
               *(p for ps in RELATION_PHRASES.values() for p in ps), *COLOURS, *SHAPES,
               *_EXTRA_WORDS]
    words = {w for p in phrases for w in re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", p))}
    return sorted(words)


def write_shapes_tokenizer(out_dir: str | Path, max_length: int = 40) -> Path:
    """A CLIP tokenizer with one token per shapes word.

    40 positions: the longest training captions (two-object, "to the left of") reach 37 tokens
    with BOS/EOS; the margin keeps slightly longer free-form prompts whole.
    """
    write_clip_tokenizer(out_dir, shapes_words(), max_length=max_length)
    return Path(out_dir)


def scene_seeds(data: ShapesData, step: int, batch_size: int) -> np.ndarray:
    """The training scene seeds of one step."""
    if data.two_object_share is None:
        rng = np.random.default_rng([data.seed, step])
        return rng.integers(0, TRAIN_SEED_LIMIT, size=batch_size)
    # Seeds from a stream of their own, each kept while its group (one or two objects) has room.
    rng = np.random.default_rng([data.seed, step, 0x6D6978])
    room = {2: round(data.two_object_share * batch_size)}
    room[1] = batch_size - room[2]
    seeds = []
    while len(seeds) < batch_size:
        seed = int(rng.integers(0, TRAIN_SEED_LIMIT))
        n = len(sample_scene(seed).objects)
        if room[n]:
            room[n] -= 1
            seeds.append(seed)
    return np.array(seeds)


def training_caption(data: ShapesData, seed: int) -> str:
    """The caption of training scene `seed`: a training template, or "" (caption dropout)."""
    scene = sample_scene(seed)
    # Its own stream, so the caption choices never shift the scene or vice versa.
    rng = np.random.default_rng([seed, data.seed, 0x74726E])
    if rng.random() < data.caption_dropout:
        return ""
    allowed = data.train_templates(len(scene.objects))
    text = caption(scene, rng, template=allowed[int(rng.integers(len(allowed)))])
    # Drawn only when asked for, so captions without it are the ones earlier runs trained on.
    if data.vary_wording and rng.random() < data.vary_wording:
        varied = vary_wording(text, rng)
        # The evaluation's new wordings stay new: a variation in a held-out form is not used.
        if not data.is_held_out_wording(varied):
            text = varied
    return text


def images_batch(seeds: np.ndarray) -> np.ndarray:
    """float32 [B, 64, 64, 3] renders of the seeds' scenes, scaled to [-1, 1]."""
    images = np.stack([render(sample_scene(int(s))) for s in seeds])
    return images.astype(np.float32) / 127.5 - 1.0


def shapes_batch(data: ShapesData, step: int, batch_size: int,
                 tokenizer: Any = None) -> dict[str, np.ndarray]:
    """The batch of `step`: images, plus token ids when a tokenizer is given."""
    seeds = scene_seeds(data, step, batch_size)
    batch = {"images": images_batch(seeds)}
    if tokenizer is not None:
        captions = [training_caption(data, int(s)) for s in seeds]
        batch["input_ids"] = tokenize(tokenizer, captions)
    return batch
