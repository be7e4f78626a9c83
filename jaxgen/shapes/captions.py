"""Caption templates (scene -> text) and the prompt parser (text -> SceneSpec).

Captions vary wording (templates, synonyms, which object is named first) so that a text encoder
trained on them sees the attributes rather than one fixed sentence. The parser is a small
token-level grammar: it finds the background phrase and the relation first, then hands every
remaining attribute word to a shape word (prenominal size/colour to the next shape, postnominal
position to the previous one), which covers every template and simple free-form prompts.
"""

from __future__ import annotations

import re

import numpy as np

from jaxgen.shapes.scene import (
    COLOURS,
    INVERSE_RELATION,
    SHAPES,
    ObjectSpec,
    Scene,
    SceneSpec,
    ShapeObject,
)

SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little"), "large": ("large", "big")}
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "beneath"),
}
# Position wordings; the parser only looks for top/bottom/left/right/center(-like) words.
POSITION_AT: dict[str, str] = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}  # fmt: skip
POSITION_IN: dict[str, str] = {
    "top left": "in the top left corner", "top": "at the top",
    "top right": "in the top right corner",
    "left": "on the left side", "center": "in the middle", "right": "on the right side",
    "bottom left": "in the bottom left corner", "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}  # fmt: skip

# Single-object captions always state size and position; one template leaves out the background.
SINGLE_TEMPLATES: tuple[str, ...] = (
    "a {size} {colour} {shape} {pos_at} on a {bg} background",
    "{bg} background with a {size} {colour} {shape} {pos_in}",
    "{pos_at} there is a {size} {colour} {shape} on a {bg} background",
    "a picture of a {size} {colour} {shape} {pos_at}; the background is {bg}",
    "{size} {colour} {shape}, {pos}, {bg} background",
    "a {size} {colour} {shape} {pos_in}",
)
# Two-object captions state the relation and each object's size, colour and shape; positions are
# implied by the relation. One template leaves out the background.
PAIR_TEMPLATES: tuple[str, ...] = (
    "a {o1} {rel} a {o2} on a {bg} background",
    "{bg} background with a {o1} {rel} a {o2}",
    "a {o1} {rel} a {o2}, {bg} background",
    "on a {bg} background, a {o1} is {rel} a {o2}",
    "a {o1} {rel} a {o2}",
)


_CAPTION_STREAM = 0x6361_7074  # "capt"


def _rng(rng_or_seed: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    # A separate stream from sample_scene(seed): callers naturally pass the scene's own seed, and
    # reusing that stream would tie the template choice to the scene's first random draws.
    return np.random.default_rng([int(rng_or_seed), _CAPTION_STREAM])


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def fix_articles(text: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def caption(
    scene: Scene, rng_or_seed: np.random.Generator | int, template: int | None = None
) -> str:
    """A caption for ``scene``; ``template`` indexes SINGLE_/PAIR_TEMPLATES (random if None)."""
    rng = _rng(rng_or_seed)
    if len(scene.objects) == 1:
        templates = SINGLE_TEMPLATES
    elif len(scene.objects) == 2 and scene.relation is not None:
        templates = PAIR_TEMPLATES
    else:
        raise ValueError(f"cannot caption a scene with {len(scene.objects)} objects: {scene}")
    index = int(rng.integers(len(templates))) if template is None else template
    fmt = templates[index]

    def phrase(obj: ShapeObject) -> str:
        return f"{_pick(rng, SIZE_WORDS[obj.size])} {obj.colour} {obj.shape}"

    if len(scene.objects) == 1:
        (obj,) = scene.objects
        text = fmt.format(
            size=_pick(rng, SIZE_WORDS[obj.size]), colour=obj.colour, shape=obj.shape,
            pos=obj.position, pos_at=POSITION_AT[obj.position], pos_in=POSITION_IN[obj.position],
            bg=scene.background,
        )  # fmt: skip
    else:
        first, second = scene.objects
        relation = scene.relation
        # "A left of B" and "B right of A" describe the same picture; use both orders.
        if rng.random() < 0.5:
            first, second, relation = second, first, INVERSE_RELATION[relation]
        text = fmt.format(
            o1=phrase(first), o2=phrase(second), rel=_pick(rng, RELATION_PHRASES[relation]),
            bg=scene.background,
        )  # fmt: skip
    return fix_articles(text)


# ----------------------------------------------------------------------------- parser

_SIZE_OF = {word: size for size, words in SIZE_WORDS.items() for word in words} | {"tiny": "small"}
_VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
_HORIZONTAL = {"left": "left", "right": "right"}
_CENTRE = {"center", "centre", "middle"}
_SINGLE_WORD_RELATIONS = {"above": "above", "below": "below", "beneath": "below", "under": "below"}
_BACKGROUND_WORDS = {"background", "backdrop"}


def _error(text: str, why: str) -> ValueError:
    return ValueError(f"cannot parse prompt {text!r}: {why}")


def _set(slots: dict[str, str], key: str, value: str, text: str) -> None:
    if slots.get(key, value) != value:
        raise _error(text, f"conflicting {key} words {slots[key]!r} and {value!r}")
    slots[key] = value


def parse_caption(text: str) -> SceneSpec:
    """Parse a prompt into the attributes it asks for; raises ValueError naming ``text``."""
    tokens = re.findall(r"[a-z]+", text.lower())
    used = [False] * len(tokens)

    # 1. Background: "<colour> background" or "background is/of <colour>".
    background = None
    for i, tok in enumerate(tokens):
        if tok not in _BACKGROUND_WORDS:
            continue
        used[i] = True
        if i > 0 and tokens[i - 1] in COLOURS:
            candidates = [i - 1]
        else:
            candidates = [j for j in (i + 1, i + 2) if j < len(tokens) and tokens[j] in COLOURS][:1]
        for j in candidates:
            if background not in (None, tokens[j]):
                raise _error(text, "two background colours")
            background, used[j] = tokens[j], True

    # 2. Relation words, consumed so that "left"/"right" in "left of" are not read as positions.
    relation = None
    for i, tok in enumerate(tokens):
        found = None
        if tok in _HORIZONTAL and i + 1 < len(tokens) and tokens[i + 1] == "of":
            found = f"{tok} of"
            used[i + 1] = True
        elif tok in _SINGLE_WORD_RELATIONS:
            found = _SINGLE_WORD_RELATIONS[tok]
        if found is not None:
            if relation is not None:
                raise _error(text, "more than one relation")
            relation, used[i] = found, True

    # 3. Objects: one per shape word; attributes attach to a neighbouring shape word.
    shape_at = [i for i, tok in enumerate(tokens) if tok in SHAPES and not used[i]]
    if not shape_at:
        raise _error(text, f"no shape word ({', '.join(SHAPES)})")
    slots: list[dict[str, str]] = [{"shape": tokens[i]} for i in shape_at]
    positions: list[dict[str, str]] = [{} for _ in shape_at]
    for i, tok in enumerate(tokens):
        if used[i]:
            continue
        following = [k for k, s in enumerate(shape_at) if s > i]
        preceding = [k for k, s in enumerate(shape_at) if s < i]
        if tok in COLOURS or tok in _SIZE_OF:
            # Prenominal ("a small red circle"); a trailing word falls back to the last object.
            k = following[0] if following else len(shape_at) - 1
            if tok in COLOURS:
                _set(slots[k], "colour", tok, text)
            else:
                _set(slots[k], "size", _SIZE_OF[tok], text)
        elif tok in _VERTICAL or tok in _HORIZONTAL or tok in _CENTRE:
            # Postnominal ("circle at the top"), except before the first shape ("at the top there
            # is a circle").
            k = preceding[-1] if preceding else 0
            if tok in _VERTICAL:
                _set(positions[k], "vertical", _VERTICAL[tok], text)
            elif tok in _HORIZONTAL:
                _set(positions[k], "horizontal", tok, text)
            else:
                _set(positions[k], "centre", "center", text)

    objects = []
    for obj_slots, pos in zip(slots, positions, strict=True):
        words = [pos[k] for k in ("vertical", "horizontal") if k in pos]
        # "top center" means the top cell; a bare centre word means the middle cell.
        position = " ".join(words) if words else pos.get("centre")
        objects.append(ObjectSpec(position=position, **obj_slots))
    if relation is not None and len(objects) != 2:
        raise _error(text, f"relation {relation!r} needs exactly two objects")
    return SceneSpec(background=background, objects=tuple(objects), relation=relation)
