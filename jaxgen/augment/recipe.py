"""The augmentation recipe: YAML with defaults and a schema; an unknown key is an error.

    prompt: "a photo of a {label}"   # the class prompt template ({label}: the label's phrase)
    phrases: {cat: "tabby cat"}       # optional: the words {label} stands for, per label
    negative_prompt: ""
    steps: null                       # null: the model's recommended (its jaxgen.json)
    guidance: null
    sampler: null
    height: null                      # null: an init image's own size; text2img: the model's
    width: null
    seed: 0                           # the job seed every image's seed derives from
    filter: null                      # module:function run on each image (dataset.filter)
    entries:                          # one or more; a mix is several
      - name: img2img                 # unique; recorded in every image's metadata
        kind: img2img                 # N variants of every real image per strength
        n: 2
        strength: [0.25, 0.5]         # one number or a list
        prompt: null                  # null: the recipe's template
      - name: text2img
        kind: text2img                # N images per class from templates
        n: 4
        prompts: ["a {size} {label}"] # null: [the recipe's template]
        words: {size: [small, large]} # each {name} picked per image, seeded
        labels: null                  # null: every class of the input
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jaxgen.dataset.suggest import did_you_mean
from jaxgen.requests import SAMPLERS, ConfigError

# The labelled-dataset formats `--input` reads (jaxgen.augment.inputs); "auto" tells them apart.
INPUT_FORMATS = ("auto", "imagefolder", "webdataset", "parquet")

KINDS = ("img2img", "text2img")
DEFAULT_TEMPLATE = "a photo of a {label}"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One recipe entry: what to generate for every real image (img2img) or class (text2img)."""

    name: str
    kind: str
    n: int = 1
    strength: tuple[float, ...] = (0.5,)
    prompt: str | None = None
    prompts: tuple[str, ...] | None = None
    words: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    labels: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Recipe:
    entries: tuple[Entry, ...]
    prompt: str = DEFAULT_TEMPLATE
    phrases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    negative_prompt: str = ""
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    height: int | None = None
    width: int | None = None
    seed: int = 0
    filter: str | None = None

    def phrase(self, label: str) -> str:
        return self.phrases.get(label, label)

    def templates(self, entry: Entry) -> tuple[str, ...]:
        if entry.kind == "img2img":
            return (entry.prompt or self.prompt,)
        return entry.prompts or (entry.prompt or self.prompt,)


_RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(Recipe))
_ENTRY_KEYS = tuple(f.name for f in dataclasses.fields(Entry))
_ONLY_FOR = {"strength": "img2img", "prompts": "text2img", "words": "text2img",
             "labels": "text2img"}


def load_recipe(path: str) -> Recipe:
    """The recipe in YAML file `path`; ConfigError naming the key and value that is wrong."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"recipe {path}: cannot be read ({e})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"recipe {path}: must be a mapping with `entries`")
    try:
        return parse_recipe(loaded)
    except ConfigError as e:
        raise ConfigError(f"recipe {path}: {e}") from None


def parse_recipe(values: Mapping[str, Any]) -> Recipe:
    _no_unknown(values, _RECIPE_KEYS, "")
    values = dict(values)
    entries = values.pop("entries", None)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"entries {entries!r}: give a list of one or more entries")
    parsed = tuple(_entry(i, e) for i, e in enumerate(entries))
    names = [e.name for e in parsed]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"entries: name {name!r} is used twice; give each entry a name")
    _text(values, "prompt")
    _text(values, "negative_prompt")
    phrases = values.get("phrases") or {}
    if not isinstance(phrases, dict) or not all(
            isinstance(v, str) and v.strip() for v in phrases.values()):
        raise ConfigError(f"phrases {phrases!r}: must map labels to non-empty text")
    values["phrases"] = {str(k): v for k, v in phrases.items()}
    _int(values, "steps", 1, 1000)
    _int(values, "height", 8, 4096)
    _int(values, "width", 8, 4096)
    _int(values, "seed", 0, 2**63 - 1, optional=False, default=0)
    if values.get("guidance") is not None and not _number(values["guidance"]):
        raise ConfigError(f"guidance {values['guidance']!r}: must be a number")
    if values.get("sampler") is not None and values["sampler"] not in SAMPLERS:
        raise ConfigError(f"sampler {values['sampler']!r}: not one of {', '.join(SAMPLERS)}")
    if values.get("filter") is not None and not isinstance(values["filter"], str):
        raise ConfigError(f"filter {values['filter']!r}: must be module:function")
    recipe = Recipe(entries=parsed, **values)
    for entry in parsed:
        for template in recipe.templates(entry):
            _check_template(entry, template)
    return recipe


def _entry(index: int, values: Any) -> Entry:
    where = f"entries[{index}]"
    if not isinstance(values, dict):
        raise ConfigError(f"{where} {values!r}: must be a mapping with kind and n")
    _no_unknown(values, _ENTRY_KEYS, f"{where}.")
    values = dict(values)
    kind = values.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind {kind!r}: not one of {', '.join(KINDS)}")
    values.setdefault("name", kind if index == 0 else f"{kind}{index}")
    if not isinstance(values["name"], str) or not values["name"].strip():
        raise ConfigError(f"{where}.name {values['name']!r}: must be non-empty text")
    for key, only in _ONLY_FOR.items():
        if key in values and kind != only:
            raise ConfigError(f"{where}.{key}: only a {only} entry takes it (this one is {kind})")
    try:
        _int(values, "n", 1, 10_000, optional=False, default=1)
        _text(values, "prompt")
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}") from None
    strength = values.get("strength", 0.5)
    strengths = strength if isinstance(strength, list) else [strength]
    if not strengths or not all(_number(s) and 0 < s <= 1 for s in strengths):
        raise ConfigError(f"{where}.strength {strength!r}: a number in (0, 1] or a list of them")
    values["strength"] = tuple(float(s) for s in strengths)
    prompts = values.get("prompts")
    if prompts is not None:
        if not isinstance(prompts, list) or not prompts or not all(
                isinstance(p, str) and p.strip() for p in prompts):
            raise ConfigError(f"{where}.prompts {prompts!r}: a list of prompt templates")
        values["prompts"] = tuple(prompts)
    words = values.get("words") or {}
    if not isinstance(words, dict) or not all(
            isinstance(v, list) and v and all(isinstance(w, str) for w in v)
            for v in words.values()):
        raise ConfigError(f"{where}.words {words!r}: map each name to a list of words")
    values["words"] = {str(k): tuple(v) for k, v in words.items()}
    labels = values.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not labels:
            raise ConfigError(f"{where}.labels {labels!r}: a list of class names")
        values["labels"] = tuple(str(v) for v in labels)
    return Entry(**values)


def _check_template(entry: Entry, template: str) -> None:
    known = {"label", *entry.words}
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ConfigError(f"entry {entry.name!r}: prompt template {template!r}: {e}") from None
    for field in fields:
        if field not in known:
            raise ConfigError(f"entry {entry.name!r}: prompt template {template!r}: "
                              f"{{{field}}} is neither {{label}} nor one of its words "
                              f"({', '.join(sorted(entry.words)) or 'none'})"
                              f"{did_you_mean(field, known)}")


def _no_unknown(values: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
    for key in values:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown recipe key{did_you_mean(str(key), known)}"
                              f" (valid: {', '.join(known)})")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(values: dict[str, Any], key: str) -> None:
    value = values.get(key)
    if key in values and value is not None and not isinstance(value, str):
        raise ConfigError(f"{key} {value!r}: must be text")
    if key in values and value is None:
        del values[key]


def _int(values: dict[str, Any], key: str, lo: int, hi: int, *, optional: bool = True,
         default: int | None = None) -> None:
    if key not in values and default is not None:
        values[key] = default
    value = values.get(key)
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{key} {value!r}: must be an integer in [{lo}, {hi}]")
