"""Caption templates (scene -> text) and the prompt parser (text -> SceneSpec).

Captions vary wording (templates, synonyms, which object is named first) so that a text encoder
trained on them sees the attributes rather than one fixed sentence. The parser is a small
token-level grammar: it finds the background phrase and the relation first, then hands every
remaining attribute word to a shape word (prenominal size/colour to the next shape, postnominal
position to the previous one), which covers every template and simple free-form prompts.

Captions may leave attributes out (``caption(..., omit=...)``): "a red circle", "two shapes",
"a white background", and the empty caption, which stands for the whole domain. The parsed
SceneSpec marks what a prompt leaves free with None, as it always has for "not asked": an
ObjectSpec field of None is free, a background or a pair's relation of None is free, and a spec
with no objects leaves the number of objects (and so everything about them) free.
"""

from __future__ import annotations

import re
from collections.abc import Collection

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

# The parts of a caption that can be left out, so that a prompt asks for less than a whole scene.
# A pair's positions are never stated (its relation implies them); leaving out "count" leaves the
# objects out altogether ("a white background", or the empty caption for the whole domain).
OMITTABLE: tuple[str, ...] = (
    "shape", "colour", "size", "position", "background", "relation", "count",
)  # fmt: skip
# What a one-object and a two-object caption can leave out while keeping its objects.
SINGLE_OMITTABLE: tuple[str, ...] = ("shape", "colour", "size", "position", "background")
PAIR_OMITTABLE: tuple[str, ...] = ("shape", "colour", "size", "relation", "background")
SHAPE_WORD = "shape"  # names a left-out shape
# Words that only under-specified captions use, for a vocabulary built from the templates.
UNDER_SPECIFIED_WORDS: tuple[str, ...] = (
    SHAPE_WORD, "shapes", "two", "and", *(f"{shape}s" for shape in SHAPES),
)  # fmt: skip

# Each template as pieces, each left out with the attribute it states (None: always kept); the
# pieces joined are the template. One object is "{size} {colour} {shape}" in single templates.
_OBJECT = (("{size} ", "size"), ("{colour} ", "colour"), ("{shape}", None))
_SINGLE_PIECES: tuple[tuple[tuple[str, str | None], ...], ...] = (
    (("a ", None), *_OBJECT, (" {pos_at}", "position"), (" on a {bg} background", "background")),
    (("{bg} background with ", "background"), ("a ", None), *_OBJECT, (" {pos_in}", "position")),
    (("{pos_at} ", "position"), ("there is a ", None), *_OBJECT,
     (" on a {bg} background", "background")),
    (("a picture of a ", None), *_OBJECT, (" {pos_at}", "position"),
     ("; the background is {bg}", "background")),
    (*_OBJECT, (", {pos}", "position"), (", {bg} background", "background")),
    (("a ", None), *_OBJECT, (" {pos_in}", "position")),
)
_PAIR_PIECES: tuple[tuple[tuple[str, str | None], ...], ...] = (
    (("a {o1} ", None), ("{rel}", "relation"), (" a {o2}", None),
     (" on a {bg} background", "background")),
    (("{bg} background with ", "background"), ("a {o1} ", None), ("{rel}", "relation"),
     (" a {o2}", None)),
    (("a {o1} ", None), ("{rel}", "relation"), (" a {o2}", None),
     (", {bg} background", "background")),
    (("on a {bg} background, ", "background"), ("a {o1} ", None), ("is {rel}", "relation"),
     (" a {o2}", None)),
    (("a {o1} ", None), ("{rel}", "relation"), (" a {o2}", None)),
)
_LEFT_OUT_RELATION = "and"  # "a {o1} and a {o2}"
# Without its objects a caption states at most the background.
_BACKGROUND_ONLY = "a {bg} background"

# Single-object captions always state size and position; one template leaves out the background.
SINGLE_TEMPLATES: tuple[str, ...] = tuple(
    "".join(text for text, _ in pieces) for pieces in _SINGLE_PIECES
)
# Two-object captions state the relation and each object's size, colour and shape; positions are
# implied by the relation. One template leaves out the background.
PAIR_TEMPLATES: tuple[str, ...] = tuple(
    "".join(text for text, _ in pieces) for pieces in _PAIR_PIECES
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
    scene: Scene,
    rng_or_seed: np.random.Generator | int,
    template: int | None = None,
    omit: Collection[str] = frozenset(),
) -> str:
    """A caption for ``scene``; ``template`` indexes SINGLE_/PAIR_TEMPLATES (random if None).

    ``omit`` names the attributes (of OMITTABLE) the caption leaves out, for both objects of a
    pair alike: "a red circle", "a circle on a white background", "two shapes", "" (everything).
    A template that never states an attribute (the background, in one template of each kind)
    leaves it out whatever ``omit`` says. The random draws do not depend on ``omit`` (a caption
    without objects draws nothing), so a caption with omissions says what the same seed's full
    caption says, less the omitted attributes.
    """
    omit = _checked_omissions(omit)
    if "count" in omit:
        if "background" in omit:
            return ""
        return fix_articles(_BACKGROUND_ONLY.format(bg=scene.background))
    rng = _rng(rng_or_seed)
    if len(scene.objects) == 1:
        templates = _SINGLE_PIECES
    elif len(scene.objects) == 2 and scene.relation is not None:
        templates = _PAIR_PIECES
    else:
        raise ValueError(f"cannot caption a scene with {len(scene.objects)} objects: {scene}")
    index = int(rng.integers(len(templates))) if template is None else template
    fmt = "".join(
        text if attribute not in omit
        else _LEFT_OUT_RELATION if attribute == "relation" else ""
        for text, attribute in templates[index]
    )

    def size_word(obj: ShapeObject) -> str:
        return _pick(rng, SIZE_WORDS[obj.size])  # drawn even when left out: the same draws

    def shape_word(obj: ShapeObject) -> str:
        return SHAPE_WORD if "shape" in omit else obj.shape

    def phrase(obj: ShapeObject) -> str:
        words = {"size": size_word(obj), "colour": obj.colour}
        return " ".join([*(w for a, w in words.items() if a not in omit), shape_word(obj)])

    if len(scene.objects) == 1:
        (obj,) = scene.objects
        text = fmt.format(
            size=size_word(obj), colour=obj.colour, shape=shape_word(obj),
            pos=obj.position, pos_at=POSITION_AT[obj.position], pos_in=POSITION_IN[obj.position],
            bg=scene.background,
        )  # fmt: skip
    else:
        first, second = scene.objects
        relation = scene.relation
        # "A left of B" and "B right of A" describe the same picture; use both orders.
        if rng.random() < 0.5:
            first, second, relation = second, first, INVERSE_RELATION[relation]
        o1, o2 = phrase(first), phrase(second)
        text = fmt.format(
            o1=o1, o2=o2, rel=_pick(rng, RELATION_PHRASES[relation]), bg=scene.background,
        )  # fmt: skip
        if "relation" in omit and o1 == o2:
            # "a shape and a shape" reads as "two shapes".
            text = text.replace(f"a {o1} {_LEFT_OUT_RELATION} a {o2}", f"two {o1}s")
    return fix_articles(text)


def _checked_omissions(omit: Collection[str]) -> frozenset[str]:
    if isinstance(omit, str):
        raise TypeError(f"omit={omit!r}: pass a set of attribute names, such as {{{omit!r}}}")
    omit = frozenset(omit)
    unknown = sorted(omit - set(OMITTABLE))
    if unknown:
        raise ValueError(f"cannot omit {unknown}: omittable attributes are {list(OMITTABLE)}")
    return omit


# ----------------------------------------------------------------------------- parser

_SIZE_OF = {word: size for size, words in SIZE_WORDS.items() for word in words} | {"tiny": "small"}
_VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
_HORIZONTAL = {"left": "left", "right": "right"}
_CENTRE = {"center", "centre", "middle"}
_SINGLE_WORD_RELATIONS = {"above": "above", "below": "below", "beneath": "below", "under": "below"}
_BACKGROUND_WORDS = {"background", "backdrop"}
# Nouns: word -> (the shape it names, None for any; how many objects it stands for).
_NOUNS: dict[str, tuple[str | None, int]] = {
    **{shape: (shape, 1) for shape in SHAPES}, SHAPE_WORD: (None, 1),
    **{f"{shape}s": (shape, 2) for shape in SHAPES}, f"{SHAPE_WORD}s": (None, 2),
}  # fmt: skip
_NUMBER_WORD = "two"  # the one count a plural noun can have
_ATTRIBUTE_WORDS = {*COLOURS, *_SIZE_OF, *_VERTICAL, *_HORIZONTAL, *_CENTRE, _NUMBER_WORD}


def _error(text: str, why: str) -> ValueError:
    return ValueError(f"cannot parse prompt {text!r}: {why}")


def _set(slots: dict[str, str], key: str, value: str, text: str) -> None:
    if slots.get(key, value) != value:
        raise _error(text, f"conflicting {key} words {slots[key]!r} and {value!r}")
    slots[key] = value


def parse_caption(text: str) -> SceneSpec:
    """Parse a prompt into the attributes it asks for, None where it leaves one free.

    The empty prompt leaves everything free: SceneSpec(None, (), None). Raises ValueError
    naming ``text``.
    """
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

    # 3. Objects: one per shape word ("two circles": two); attributes attach to a neighbouring
    # shape word.
    shape_at = [i for i, tok in enumerate(tokens) if tok in _NOUNS and not used[i]]
    if not shape_at:
        # Without a shape word a prompt states the background ("a white background") or nothing
        # (the empty prompt); either way the objects are free.
        stray = [t for t, u in zip(tokens, used, strict=True) if not u and t in _ATTRIBUTE_WORDS]
        if (background is not None or not tokens) and relation is None and not stray:
            return SceneSpec(background=background)
        raise _error(text, f"no shape word ({', '.join(SHAPES)})")
    for k, i in enumerate(shape_at):
        if _NOUNS[tokens[i]][1] == 2:
            since = range(shape_at[k - 1] + 1 if k else 0, i)
            if _NUMBER_WORD not in (tokens[j] for j in since):
                raise _error(text, f"{tokens[i]!r} needs {_NUMBER_WORD!r}")
    slots: list[dict[str, str]] = [
        {"shape": shape} if (shape := _NOUNS[tokens[i]][0]) else {} for i in shape_at
    ]
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
    for i, obj_slots, pos in zip(shape_at, slots, positions, strict=True):
        words = [pos[k] for k in ("vertical", "horizontal") if k in pos]
        # "top center" means the top cell; a bare centre word means the middle cell.
        position = " ".join(words) if words else pos.get("centre")
        count = _NOUNS[tokens[i]][1]
        objects.extend([ObjectSpec(position=position, **obj_slots)] * count)
    if relation is not None and len(objects) != 2:
        raise _error(text, f"relation {relation!r} needs exactly two objects")
    return SceneSpec(background=background, objects=tuple(objects), relation=relation)
