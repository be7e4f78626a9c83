"""Recall on the shapes domain: do the attributes a prompt leaves free spread as the domain's do?

Precision (``score``) asks whether the stated attributes are right; recall asks whether the free
ones vary. For a family of under-specified prompts (``recall_prompts``), or any generated
dataset whose prompts parse, every image is read back (``analyse``) and each free attribute's
read-backs are counted against the domain's distribution given what the prompt states
(``domain_distribution``). A model that draws one scene per prompt fails here whatever its
precision.

Which attributes are free follows the parsed spec (None marks free, see jaxgen.shapes.captions):
an ObjectSpec field of None, a background of None, a pair's relation of None, and everything
about the objects of a spec with none (the empty prompt). A pair's positions are free only when
its relation is: a stated relation implies them.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats

from jaxgen.shapes import (
    COLOURS,
    PAIR_TEMPLATES,
    POSITIONS,
    SHAPES,
    SINGLE_TEMPLATES,
    SIZES,
    Scene,
    SceneSpec,
    ShapeObject,
    analyse,
    caption,
    parse_caption,
    sample_scene,
    score,
)
from jaxgen.shapes.analyse import match_objects
from jaxgen.shapes.captions import PAIR_OMITTABLE, SINGLE_OMITTABLE

OBJECT_ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "size", "position")
SCENE_ATTRIBUTES: tuple[str, ...] = ("count", "background", "relation")
GRIDS: tuple[tuple[str, ...], ...] = (OBJECT_ATTRIBUTES, ("shape", "colour"))
PRECISION_ATTRIBUTES = ("shape", "colour", "size", "position", "background", "relation", "count",
                        "joint")
# Above the training scenes (seeds below 1e9) and apart from the evaluation's (2e9), FD's (3e9)
# and the tuning set's (4e9).
RECALL_SEED_START = 5_000_000_000
_FAMILY_STRIDE = 1_000_000  # seeds per omission pattern


def domain_distribution(attribute: str) -> dict[str, float]:
    """P(value) of one attribute over the scenes ``sample_scene`` draws, derived from its code.

    Object attributes are pooled over every object (both of a pair). The count is 1 or 2 with
    equal odds; the background is uniform; each object's shape, size and colour are uniform, its
    colour over the nine that are not the background, so uniform over all ten when the background
    is free. A single object's cell is uniform; a pair shares a uniform row (or column) and takes a
    uniform two of its three cells, so its two objects together are uniform over the nine cells
    too. The relation is read back canonically: "left of" (drawn as left/right of) or "above"
    (above/below), each half the pairs.
    """
    values = {"count": ("1", "2"), "background": COLOURS, "shape": SHAPES, "colour": COLOURS,
              "size": SIZES, "position": POSITIONS, "relation": ("left of", "above")}
    if attribute not in values:
        raise ValueError(f"unknown attribute {attribute!r}: known are {list(values)}")
    return {v: 1 / len(values[attribute]) for v in values[attribute]}


def free_attributes(spec: SceneSpec) -> tuple[str, ...]:
    """The attributes ``spec`` leaves free, in the order of SCENE_ and OBJECT_ATTRIBUTES."""
    if not spec.objects:
        free = {"count", "relation", *OBJECT_ATTRIBUTES}
    else:
        free = {a for a in OBJECT_ATTRIBUTES for o in spec.objects if getattr(o, a) is None}
        if len(spec.objects) == 2:
            free = free - {"position"} if spec.relation else free | {"relation"}
    if spec.background is None:
        free.add("background")
    return tuple(a for a in (*SCENE_ATTRIBUTES, *OBJECT_ATTRIBUTES) if a in free)


def family_name(spec: SceneSpec) -> str:
    """A name shared by the prompts that leave the same attributes free: "2 objects; free ..."."""
    count = {0: "any objects", 1: "1 object"}.get(len(spec.objects), f"{len(spec.objects)} objects")
    free = free_attributes(spec)
    return f"{count}; free {', '.join(free)}" if free else f"{count}; fully specified"


@dataclasses.dataclass(frozen=True)
class Reading:
    """One read-back value of a free attribute, with the domain's distribution given the prompt."""

    attribute: str
    value: str
    domain: dict[str, float]


def _given(attribute: str, spec: SceneSpec) -> dict[str, float]:
    """The domain's distribution of ``attribute`` among scenes that fit what ``spec`` states.

    An object never takes the background's colour, so a stated background rules out that colour
    and stated object colours rule out those backgrounds. Exact for captions that leave the same
    attributes out of both objects; for a prompt that states one object's colour and not the
    other's, the free colour's odds differ from this by 1/9 relative at most.
    """
    dist = domain_distribution(attribute)
    if attribute == "colour" and spec.background is not None:
        ruled_out = {spec.background}
    elif attribute == "background":
        ruled_out = {o.colour for o in spec.objects if o.colour is not None}
    else:
        return dist
    total = sum(p for v, p in dist.items() if v not in ruled_out)
    return {v: p / total for v, p in dist.items() if v not in ruled_out}


def free_objects(spec: SceneSpec, found: Scene) -> list[tuple[ShapeObject, tuple[str, ...]]]:
    """Each found object that answers a spec object, with the attributes left free for it.

    A spec with no objects leaves every found object wholly free; otherwise objects are matched
    as ``score`` matches them, and an unmatched spec object (too few found) gives no reading.
    """
    if not spec.objects:
        return [(obj, OBJECT_ATTRIBUTES) for obj in found.objects]
    position_free = spec.relation is None
    pairs = []
    for want, j in zip(spec.objects, match_objects(spec, found), strict=True):
        free = tuple(a for a in OBJECT_ATTRIBUTES if getattr(want, a) is None
                     and (a != "position" or position_free))
        if j is not None and free:
            pairs.append((found.objects[j], free))
    return pairs


def readings(spec: SceneSpec, found: Scene) -> list[Reading]:
    """The read-back value of every free attribute of one prompt's image."""
    free = free_attributes(spec)
    out = []
    if "count" in free:
        out.append(Reading("count", str(len(found.objects)), _given("count", spec)))
    if "background" in free:
        out.append(Reading("background", found.background, _given("background", spec)))
    # A free relation is read only where two objects were drawn; another count is a precision
    # failure, not spread.
    if "relation" in free and len(found.objects) == 2 and found.relation is not None:
        out.append(Reading("relation", found.relation, _given("relation", spec)))
    for obj, attributes in free_objects(spec, found):
        out.extend(Reading(a, getattr(obj, a), _given(a, spec)) for a in attributes)
    return out


# ----------------------------------------------------------------------------- measures


def entropy(counts: Iterable[float]) -> float:
    """Shannon entropy (nats) of a histogram; empty bins count as nothing."""
    c = np.asarray([x for x in counts if x > 0], dtype=np.float64)
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def normalised_entropy(counts: Sequence[float]) -> float:
    """Entropy over log(number of bins): 1.0 for a uniform histogram, 0.0 for one value.

    ``counts`` lists every value the attribute can take, zeros included.
    """
    if len(counts) < 2:
        raise ValueError(f"normalised entropy needs at least 2 bins, got {len(counts)}")
    return entropy(counts) / math.log(len(counts))


def vendi_score(items: Iterable[object]) -> float:
    """Effective number of distinct items: the Vendi score with an exact-match kernel.

    With K[i, j] = 1 when items i and j are equal, the eigenvalues of K / n are the items'
    frequencies, so the score exp(entropy of the eigenvalues) is exp(entropy of the histogram).
    k equally frequent distinct items score k.
    """
    return math.exp(entropy(Counter(items).values()))


def grid_coverage(cells: Iterable[tuple[str, ...]], axes: Sequence[Sequence[str]]) -> float:
    """Fraction of the grid (the product of ``axes``) that ``cells`` visit."""
    grid_size = math.prod(len(a) for a in axes)
    in_grid = {c for c in cells if all(v in a for v, a in zip(c, axes, strict=True))}
    return len(in_grid) / grid_size


@dataclasses.dataclass(frozen=True)
class AttributeRecall:
    """How one free attribute's read-backs spread, against the domain's.

    counts / expected: per value the attribute can take (zeros included), read-backs and the
    counts the domain predicts given each prompt. outside: read-backs the domain cannot give for
    their prompt (no objects or three; a colour its background rules out), kept out of the other
    measures: they are precision failures, not spread.
    chi_square / p_value: Pearson's test of counts against expected (None with a single value),
    which takes the read-backs as independent draws; the two objects of a pair are nearly so
    (both avoid the background's colour).
    largest_gap: the largest |observed share - domain share| over the values.
    """

    counts: dict[str, int]
    expected: dict[str, float]
    outside: int
    normalised_entropy: float
    chi_square: float | None
    p_value: float | None
    largest_gap: float

    @staticmethod
    def of(found: Sequence[Reading]) -> AttributeRecall:
        expected: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        outside = 0
        for r in found:
            if r.value not in r.domain:
                outside += 1
                continue
            counts[r.value] += 1
            expected.update(r.domain)  # Counter.update adds: expected counts sum over prompts
        # Each read-back adds its own prompt's odds, so observed and expected totals agree and
        # only values some prompt allows are bins: no bin expects zero.
        values = [v for v in domain_distribution(found[0].attribute) if v in expected]
        obs = np.array([counts[v] for v in values], np.float64)
        exp = np.array([expected[v] for v in values], np.float64)
        chi2 = p = None
        gap = 1.0  # nothing in the domain was read back
        if obs.sum() > 0:
            gap = float(np.abs(obs / obs.sum() - exp / exp.sum()).max())
            if len(values) >= 2:
                test = stats.chisquare(obs, exp)
                chi2, p = float(test.statistic), float(test.pvalue)
        return AttributeRecall(
            counts={v: int(c) for v, c in zip(values, obs, strict=True)},
            expected={v: float(e) for v, e in zip(values, exp, strict=True)},
            outside=outside,
            normalised_entropy=normalised_entropy(obs) if len(values) >= 2 else 0.0,
            chi_square=chi2, p_value=p, largest_gap=gap,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RecallReport:
    """Recall and precision of one family of prompts (or any set of parsed prompts and images).

    attributes[a]: the spread of free attribute a (see AttributeRecall); mean_normalised_entropy
    averages their normalised entropies. coverage["shape×colour×size×position"] and
    coverage["shape×colour"]: the fraction of that grid the free objects visit, for grids whose
    attributes every prompt leaves free (the empty prompt's). distinct_scenes: the Vendi score of
    the whole-scene read-backs. precision[a]: fraction right among prompts stating a (``score``).
    """

    prompts: int
    attributes: dict[str, AttributeRecall]
    mean_normalised_entropy: float | None
    coverage: dict[str, float]
    distinct_scenes: float
    precision: dict[str, float]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        lines = [f"prompts={self.prompts} distinct_scenes={self.distinct_scenes:.1f}"
                 + (f" mean_normalised_entropy={self.mean_normalised_entropy:.3f}"
                    if self.mean_normalised_entropy is not None else "")]
        for name, a in self.attributes.items():
            p = "" if a.p_value is None else f" chi2={a.chi_square:.1f} p={a.p_value:.3g}"
            lines.append(f"  {name:>10}: H/Hmax={a.normalised_entropy:.3f}{p} "
                         f"gap={100 * a.largest_gap:.1f}pts outside={a.outside} "
                         + " ".join(f"{v}={c}" for v, c in a.counts.items()))
        for label, values in (("coverage", self.coverage), ("precision", self.precision)):
            if values:
                lines.append(f"  {label}: " + " ".join(f"{k}={v:.3f}" for k, v in values.items()))
        return "\n".join(lines)


def recall(pairs: Sequence[tuple[SceneSpec, Scene]]) -> RecallReport:
    """Recall and precision over (parsed prompt, read-back scene) pairs."""
    by_attribute: dict[str, list[Reading]] = {}
    for spec, found in pairs:
        for r in readings(spec, found):
            by_attribute.setdefault(r.attribute, []).append(r)
    order = (*SCENE_ATTRIBUTES, *OBJECT_ATTRIBUTES)
    attributes = {a: AttributeRecall.of(by_attribute[a]) for a in order if a in by_attribute}
    entropies = [a.normalised_entropy for a in attributes.values()]

    coverage = {}
    for grid in GRIDS:
        if pairs and all(set(grid) <= set(free_attributes(spec)) for spec, _ in pairs):
            cells = [tuple(getattr(obj, a) for a in grid)
                     for spec, found in pairs for obj, _ in free_objects(spec, found)]
            coverage["×".join(grid)] = grid_coverage(
                cells, [tuple(domain_distribution(a)) for a in grid])

    scores = [score(spec, found) for spec, found in pairs]
    precision = {}
    for attr in PRECISION_ATTRIBUTES:
        asked = [s[attr] for s in scores if s[attr] is not None]
        if asked:
            precision[attr] = float(np.mean(asked))
    return RecallReport(
        prompts=len(pairs), attributes=attributes,
        mean_normalised_entropy=float(np.mean(entropies)) if entropies else None,
        coverage=coverage, distinct_scenes=vendi_score(found for _, found in pairs),
        precision=precision,
    )  # fmt: skip


def read_back(texts: Sequence[str], images: Iterable[np.ndarray]) -> list[tuple[SceneSpec, Scene]]:
    """(parsed prompt, analysed image) per image; an unparseable prompt raises ValueError."""
    return [(parse_caption(t), analyse(img)) for t, img in zip(texts, images, strict=True)]


def recall_by_family(pairs: Sequence[tuple[SceneSpec, Scene]]) -> dict[str, RecallReport]:
    """One RecallReport per family of prompts that leave the same attributes free."""
    families: dict[str, list[tuple[SceneSpec, Scene]]] = {}
    for spec, found in pairs:
        families.setdefault(family_name(spec), []).append((spec, found))
    return {name: recall(members) for name, members in families.items()}


# ----------------------------------------------------------------------------- prompt families


@dataclasses.dataclass(frozen=True)
class RecallPrompt:
    seed: int  # the scene's seed, also the generation seed
    text: str
    num_objects: int | None  # None: the prompt leaves the count free
    omit: frozenset[str]
    template: int | None  # None where the caption has no template (the count left out)


def omission_patterns() -> tuple[tuple[int | None, frozenset[str]], ...]:
    """Every under-specified kind of caption: (objects, what it omits), in a fixed order.

    One object: any non-empty subset of shape, colour, size, position, background; two: of
    shape, colour, size, relation, background; any count: the background only, or nothing.
    """
    patterns: list[tuple[int | None, frozenset[str]]] = []
    for n, attributes in ((1, SINGLE_OMITTABLE), (2, PAIR_OMITTABLE)):
        patterns += [(n, frozenset(a for bit, a in enumerate(attributes) if mask >> bit & 1))
                     for mask in range(1, 2 ** len(attributes))]
    everything = frozenset({"count", "relation", *OBJECT_ATTRIBUTES})
    return (*patterns, (None, everything), (None, everything | {"background"}))


def recall_prompts(
    per_pattern: int,
    patterns: Sequence[tuple[int | None, frozenset[str]]] | None = None,
    seed_start: int = RECALL_SEED_START,
) -> dict[str, list[RecallPrompt]]:
    """``per_pattern`` prompts for each omission pattern (default: all), by family name.

    Deterministic: a pattern's prompts come from its own seed range (set by its place in
    ``omission_patterns()``), so choosing fewer patterns or prompts changes no prompt. Templates
    rotate over those that state every attribute the pattern keeps (held-out wordings included).
    """
    if per_pattern < 1:
        raise ValueError(f"per_pattern={per_pattern}: must be at least 1")
    everything = omission_patterns()
    families: dict[str, list[RecallPrompt]] = {}
    for num_objects, omit in everything if patterns is None else patterns:
        key = (num_objects, frozenset(omit))
        if key not in everything:
            raise ValueError(f"unknown omission pattern {key!r}: see omission_patterns()")
        start = seed_start + everything.index(key) * _FAMILY_STRIDE
        templates = SINGLE_TEMPLATES if num_objects == 1 else PAIR_TEMPLATES
        usable = [i for i, t in enumerate(templates) if "background" in omit or "{bg}" in t]
        prompts = []
        for j in range(per_pattern):
            seed = start + j
            template = None if num_objects is None else usable[j % len(usable)]
            text = caption(sample_scene(seed, num_objects), seed, template=template, omit=omit)
            prompts.append(RecallPrompt(seed, text, num_objects, key[1], template))
        families[family_name(parse_caption(prompts[0].text))] = prompts
    return families
