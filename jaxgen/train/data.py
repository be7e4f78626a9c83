"""Captioned-shapes training batches, each a pure function of (data config, step).

Nothing depends on process state: a resumed run sees exactly the batches an uninterrupted one
would have seen. Training scenes come from seeds below TRAIN_SEED_LIMIT; evaluation draws from
above it, so no evaluation scene is ever a training scene.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from jaxgen.shapes import PAIR_TEMPLATES, SINGLE_TEMPLATES, caption, render, sample_scene
from jaxgen.shapes.captions import (
    PAIR_OMITTABLE,
    POSITION_AT,
    POSITION_IN,
    RELATION_PHRASES,
    SINGLE_OMITTABLE,
    SIZE_WORDS,
)
from jaxgen.shapes.scene import COLOURS, SHAPES
from jaxgen.shapes.split import TRAIN_SEED_LIMIT, ShapesData
from jaxgen.train.wording import vary_wording
from jaxgen.weights.tokenizer import tokenize, write_clip_tokenizer

# Words the parser understands beyond the templates, so free-form prompts stay one token a word.
_EXTRA_WORDS = ("tiny", "upper", "lower", "centre", "middle", "under", "backdrop", "an", "and")


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
        if data.under_specified and states_no_objects(data, seed, n):
            # The empty prompt (and "a white background") must learn the domain's own mix of
            # one and two objects, so the share applies to captions that state objects only.
            seeds.append(seed)
        elif room[n]:
            room[n] -= 1
            seeds.append(seed)
    return np.array(seeds)


def states_no_objects(data: ShapesData, seed: int, num_objects: int) -> bool:
    """Whether the caption of training scene `seed` (of `num_objects` objects) leaves its
    objects out (dropped, or background only)."""
    if _caption_stream(data, seed).random() < data.caption_dropout:
        return True
    return "count" in under_specified_omissions(data, seed, num_objects)


def _caption_stream(data: ShapesData, seed: int) -> np.random.Generator:
    # Its own stream, so the caption choices never shift the scene or vice versa.
    return np.random.default_rng([seed, data.seed, 0x74726E])


def training_caption(data: ShapesData, seed: int) -> str:
    """The caption of training scene `seed`: a training template, or "" (caption dropout)."""
    scene = sample_scene(seed)
    rng = _caption_stream(data, seed)
    if rng.random() < data.caption_dropout:
        return ""
    allowed = data.train_templates(len(scene.objects))
    template = allowed[int(rng.integers(len(allowed)))]
    omit = under_specified_omissions(data, seed, len(scene.objects))
    text = caption(scene, rng, template=template, omit=omit)
    # Drawn only when asked for, so captions without it are the ones earlier runs trained on.
    if data.vary_wording and rng.random() < data.vary_wording:
        varied = vary_wording(text, rng)
        # The evaluation's new wordings stay new: a variation in a held-out form is not used.
        if not data.is_held_out_wording(varied):
            text = varied
    return text


def under_specified_omissions(data: ShapesData, seed: int, num_objects: int) -> frozenset[str]:
    """What the caption of training scene `seed` leaves out: nothing, or (with probability
    `data.under_specified`) each attribute with even odds, and in one case in ten the objects
    altogether ("a white background")."""
    if not data.under_specified:
        return frozenset()
    # A stream of its own: leaving things out changes no wording draw (captions.caption), so an
    # under-specified caption says what the same scene's full one says, less the omissions.
    rng = np.random.default_rng([seed, data.seed, 0x6F6D6974])
    if rng.random() >= data.under_specified:
        return frozenset()
    if rng.random() < 0.1:
        return frozenset({"count"})
    attributes = SINGLE_OMITTABLE if num_objects == 1 else PAIR_OMITTABLE
    return frozenset(a for a, left_out in zip(attributes, rng.random(len(attributes)) < 0.5,
                                              strict=True) if left_out)


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
