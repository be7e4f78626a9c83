"""A training recipe: the stages `jaxgen train` runs, in order, and what each reads.

A recipe is a YAML file (jaxgen/configs/train/shapes.yaml is the default model's)::

    stages:
      vae: {config: shapes_vae.yaml}
      unet: {config: shapes_unet.yaml, reads: {vae: vae, text_encoder: text}}
    export: {dtype: float16}
    eval: {skip: false}

Each stage entry holds `config` (a stage config file, relative to the recipe, or its sections
inline), `reads` (input -> the earlier stage it comes from), `enabled` (default true) and `from`
(a model directory whose weights stand in for the stage's: it trains nothing). Overrides in the
flax `--config.x` style, `STAGE.KEY=VALUE`, change any of these or any key of the stage config
(`unet.train.steps=6500`); every name is checked before any training starts.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from jaxgen.default_model import EVAL_PROMPTS, RECOMMENDED
from jaxgen.train.config import TrainConfig, read_yaml, unknown

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "train"
DEFAULT_RECIPE = "shapes"
ENTRY_KEYS = ("config", "reads", "enabled", "from")


@dataclasses.dataclass(frozen=True)
class StageKind:
    """What a stage of this name makes, which inputs it reads (True: required), its config's
    sections (None: a single value, like `passes`)."""

    makes: str
    reads: dict[str, bool]
    sections: dict[str, str | None]


_DENOISER = {"unet": "jaxgen.models:UNetConfig", "text_encoder": "jaxgen.models:CLIPTextConfig",
             "scheduler": "jaxgen.schedulers:SchedulerConfig",
             "data": "jaxgen.shapes.split:ShapesData", "train": "jaxgen.train.config:TrainConfig",
             "init": "jaxgen.train.stages:DenoiserInit",
             "timesteps": "jaxgen.train.diffusion:Timesteps"}
_TRAIN = "jaxgen.train.config:TrainConfig"
# The stage names a recipe may use, in the order the default model runs them.
KINDS = {
    "vae": StageKind("vae", {}, {"vae": "jaxgen.models:VAEConfig",
                                 "loss": "jaxgen.train.vae:VAELoss", "train": _TRAIN}),
    "text": StageKind("text_encoder", {}, {"train": _TRAIN}),
    "unet": StageKind("unet", {"vae": True, "text_encoder": False}, _DENOISER),
    "finetune": StageKind("unet", {"vae": True, "unet": True},
                          {"train": _TRAIN, "timesteps": _DENOISER["timesteps"], "passes": None}),
    "wording": StageKind("text_encoder", {"vae": True, "unet": True, "text_encoder": True},
                         {"train": _TRAIN, "data": _DENOISER["data"]}),
    "pairs": StageKind("unet", {"vae": True, "unet": True, "text_encoder": True},
                       {"train": _TRAIN, "data": _DENOISER["data"]}),
    "free": StageKind("unet", {"vae": True, "unet": True, "text_encoder": True},
                      {"train": _TRAIN, "data": _DENOISER["data"]}),
}


@dataclasses.dataclass(frozen=True)
class Export:
    dir: str | None = None  # the model directory to write; default WORK_DIR/model
    dtype: str = "float16"  # float16 | float32 weight files
    unfinished: bool = False  # export and evaluate the weights of a stage that stopped


@dataclasses.dataclass(frozen=True)
class Evaluation:
    skip: bool = False
    prompts: int = EVAL_PROMPTS
    guidance: float = RECOMMENDED["guidance"]


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    config: dict[str, Any]  # the stage config's sections, overrides applied
    source: str  # where the config came from, for messages and the report
    reads: dict[str, str | None]
    enabled: bool = True
    from_model: str | None = None

    @property
    def kind(self) -> StageKind:
        return KINDS[self.name]


@dataclasses.dataclass(frozen=True)
class Recipe:
    path: Path
    stages: tuple[Stage, ...]
    export: Export = Export()
    eval: Evaluation = Evaluation()

    def enabled(self) -> list[Stage]:
        return [s for s in self.stages if s.enabled]

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: a path, or the name of one shipped in jaxgen/configs/train."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if "stages" in read_yaml(p))
        if str(name_or_path) not in shipped:
            raise unknown("--recipe", "recipe", str(name_or_path), shipped)
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path}: no such file")
    return path


def parse_set(text: str) -> tuple[list[str], Any]:
    """`STAGE.KEY=VALUE` -> (["STAGE", "KEY"], VALUE read as YAML: 3, 1e-3, true, null, [1, 2])."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")) or "." not in key:
        raise ValueError(f"--set {text!r}: expected STAGE.KEY=VALUE, e.g. unet.train.steps=6500")
    parsed = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", parsed):
        parsed = float(parsed)  # YAML 1.1 reads 1e-3 as text; a learning rate means a number
    return key.split("."), parsed


def load_recipe(name_or_path: str | Path = DEFAULT_RECIPE,
                overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe and its stage configs, apply `STAGE.KEY=VALUE` overrides, check it all."""
    path = recipe_path(name_or_path)
    raw = read_yaml(path)
    for key in raw:
        if key not in ("stages", "export", "eval"):
            raise unknown(str(path), "section", key, ("stages", "export", "eval"))
    entries = raw.get("stages") or {}
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: stages must map each stage name to its entry")
    entries = {name: _entry(path, name, entry) for name, entry in entries.items()}
    settings = {"export": dict(raw.get("export") or {}), "eval": dict(raw.get("eval") or {})}
    sets = [parse_set(text) for text in overrides]
    for keys, value in sets:  # entries first: `config` may name another file
        if keys[0] in settings:
            settings[keys[0]][_one(keys, f"--set {keys[0]}")] = value
        elif keys[0] not in KINDS:
            raise unknown(f"--set {'.'.join(keys)}", "stage", keys[0], [*KINDS, *settings])
        elif keys[0] not in entries:
            raise ValueError(f"--set {'.'.join(keys)}: stage {keys[0]!r} is not in recipe {path}")
        elif keys[1] in ENTRY_KEYS:
            _set_entry(entries[keys[0]], keys, value)
    stages = []
    for name, entry in entries.items():
        config, source = _stage_config(path, name, entry)
        mine = [(keys[1:], value) for keys, value in sets
                if keys[0] == name and keys[1] not in ENTRY_KEYS]
        for keys, value in mine:
            _set_config(config, name, keys, value)
        steps = [v for k, v in mine if k == ["train", "steps"]]
        if steps and ["train", "warmup_steps"] not in [k for k, _ in mine]:
            _shorten_warmup(config["train"], steps[-1])
        reads = dict(entry.get("reads") or {})
        stages.append(Stage(name, config, source, reads, entry.get("enabled", True),
                            None if entry.get("from") is None else str(entry["from"])))
    recipe = Recipe(path, tuple(stages), _settings(Export, settings["export"], path, "export"),
                    _settings(Evaluation, settings["eval"], path, "eval"))
    check_reads(recipe)
    return recipe


def check_reads(recipe: Recipe) -> None:
    """Each enabled stage reads each input it needs from an earlier, enabled stage making it."""
    before: dict[str, Stage] = {}
    disabled: list[str] = []
    for stage in recipe.stages:
        kind = stage.kind
        for role in stage.reads:
            if role not in kind.reads:
                raise unknown(f"{stage.name}.reads", "input", role, kind.reads)
        for role, required in kind.reads.items():
            source = stage.reads.get(role)
            where = f"{stage.name}.reads.{role}"
            if source is None:
                if required and stage.enabled:
                    raise ValueError(f"{where}: stage {stage.name} needs a {role}; name the "
                                     "earlier stage it comes from")
                continue
            if source not in before:
                if source in KINDS and recipe.stage(source) is not None:
                    raise ValueError(f"{where}={source}: stage {source} runs after "
                                     f"{stage.name}; a stage reads only earlier ones")
                if source in KINDS:
                    raise ValueError(f"{where}={source}: stage {source} is not in the recipe")
                raise unknown(where, "stage", str(source), before)
            if KINDS[source].makes != role:
                raise ValueError(f"{where}={source}: stage {source} makes a "
                                 f"{KINDS[source].makes}, not a {role}")
            if stage.enabled and not before[source].enabled:
                fixes = [f"enable {source}", f"--set {stage.name}.enabled=false"]
                if not required:
                    fixes.append(f"--set {where}=null")
                disabled.append(f"stage {stage.name} reads its {role} from stage {source}, "
                                f"which is disabled ({' or '.join(fixes)})")
        before[stage.name] = stage
    if disabled:  # all at once, not one per rerun
        raise ValueError("; ".join(disabled))
    if not any(s.kind.reads and s.enabled for s in recipe.stages):
        raise ValueError(f"{recipe.path}: no enabled stage makes a model to export")


def describe(recipe: Recipe) -> str:
    """The recipe's stages and settings as `jaxgen train --help` lists them."""
    lines = []
    for s in recipe.stages:
        steps = (s.config.get("train") or {}).get("steps", TrainConfig.steps)
        extra = f" x {s.config['passes']} passes" if "passes" in s.config else ""
        reads = " ".join(f"{k}={v}" for k, v in s.reads.items())
        state = "" if s.enabled else " (disabled)"
        origin = f"from {s.from_model}" if s.from_model else Path(s.source).name
        lines.append(f"  {s.name:<10}{origin:<27}steps {steps}{extra}"
                     f"{'  reads ' + reads if reads else ''}{state}")
    for name, settings in (("export", recipe.export), ("eval", recipe.eval)):
        values = " ".join(f"{k}={_yaml(v)}" for k, v in dataclasses.asdict(settings).items())
        lines.append(f"  {name:<10}{values}")
    return "\n".join(lines)


def _entry(path: Path, name: str, entry: Any) -> dict[str, Any]:
    if name not in KINDS:
        raise unknown(str(path), "stage", str(name), KINDS)
    entry = dict(entry or {})
    for key in entry:
        if key not in ENTRY_KEYS:
            raise unknown(f"{path}: stages.{name}", "key", str(key), ENTRY_KEYS)
    if "config" not in entry:
        raise ValueError(f"{path}: stage {name} has no config")
    if not isinstance(entry.get("enabled", True), bool):
        raise ValueError(f"{path}: stages.{name}.enabled={entry['enabled']!r}: must be true "
                         "or false")
    return entry


def _one(keys: list[str], where: str) -> str:
    if len(keys) != 2:
        raise ValueError(f"{where}: expected one key after {keys[0]!r}, got {'.'.join(keys[1:])}")
    return keys[1]


def _set_entry(entry: dict[str, Any], keys: list[str], value: Any) -> None:
    name, key = keys[0], keys[1]
    if key == "reads":
        if len(keys) != 3:
            raise ValueError(f"--set {'.'.join(keys)}: expected {name}.reads.INPUT=STAGE")
        if keys[2] not in KINDS[name].reads:
            raise unknown(f"--set {'.'.join(keys)}", "input", keys[2], KINDS[name].reads)
        entry["reads"] = {**(entry.get("reads") or {}), keys[2]: value}
        return
    if len(keys) != 2:
        raise ValueError(f"--set {'.'.join(keys)}: {name}.{key} holds one value")
    if key == "enabled" and not isinstance(value, bool):
        raise ValueError(f"--set {name}.enabled={value!r}: must be true or false")
    if key == "config" and isinstance(value, str):
        value = str(Path(value).resolve())  # a file named on the command line: from here
    entry[key] = value


def _stage_config(recipe: Path, name: str, entry: dict[str, Any]) -> tuple[dict, str]:
    config = entry["config"]
    if isinstance(config, dict):
        return _copy(config), f"{recipe}: stages.{name}.config"
    path = recipe.parent / str(config)
    if not path.is_file():
        raise FileNotFoundError(f"stage {name}'s config {path}: no such file")
    return _copy(read_yaml(path)), str(path)


def _set_config(config: dict[str, Any], name: str, keys: list[str], value: Any) -> None:
    sections = KINDS[name].sections
    where = f"--set {name}.{'.'.join(keys)}"
    if keys[0] not in sections:
        raise unknown(where, f"key of stage {name}", keys[0], [*ENTRY_KEYS, *sections])
    if sections[keys[0]] is None:
        if len(keys) != 1:
            raise ValueError(f"{where}: {name}.{keys[0]} holds one value")
        config[keys[0]] = value
        return
    if len(keys) != 2:
        raise ValueError(f"{where}: expected {name}.{keys[0]}.KEY=VALUE")
    section = config.setdefault(keys[0], {})
    known = _fields(sections[keys[0]]) | set(section)
    if keys[1] not in known:
        raise unknown(where, f"key of {name}.{keys[0]}", keys[1], known)
    section[keys[1]] = value


def _shorten_warmup(train: dict[str, Any], steps: Any) -> None:
    """Warmup at most a tenth of a run whose steps were set without it (a short trial run)."""
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
        warmup = train.get("warmup_steps", TrainConfig.warmup_steps)
        train["warmup_steps"] = min(warmup, steps // 10)


def _fields(target: str) -> set[str]:
    import importlib

    module, name = target.split(":")
    return {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), name))}


def _settings(cls: type, values: dict[str, Any], path: Path, section: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise unknown(str(path), f"key of {section}", str(key), names)
    return cls(**values)


def _copy(config: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
