"""Model configs read from diffusers/transformers `config.json` files."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from jaxgen.requests import ConfigError

T = TypeVar("T")


def config_from_dict(cls: type[T], raw: dict[str, Any], source: str,
                     must_equal: dict[str, Any] | None = None) -> T:
    """Build dataclass `cls` from a config dict.

    Keys that are fields of `cls` are taken, each checked against its field's type (a JSON
    value of another type is a ConfigError naming the file, key and value); keys in
    `must_equal` must hold that value (a feature jaxgen does not implement, at its inert
    setting) or a ConfigError names them; other keys (bookkeeping such as `_class_name`) are
    ignored.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a JSON object of settings, not {_short(raw)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            if not _is_a(raw[f.name], hints[f.name]):
                raise ConfigError(f"{source}: {f.name}={_short(raw[f.name])} is not "
                                  f"{_describe(hints[f.name])}")
            values[f.name] = _as_tuple(raw[f.name])
    for key, allowed in (must_equal or {}).items():
        if key in raw and raw[key] != allowed and raw[key] != _as_list(allowed):
            raise ConfigError(
                f"{source}: {key}={raw[key]!r} is not supported (jaxgen implements {allowed!r})"
            )
    return cls(**values)


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config field's type (int, float, bool, str, None, tuples
    of those, and unions of them)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, list | tuple) and len(value) > 0 and all(
            _is_a(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:  # True == 1 in Python: only a JSON bool is a flag
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return f"a non-empty list of {_PLURALS.get(item, _describe(item))}"
    if hint is type(None):
        return "null"
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, hint.__name__)


_PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def to_dict(config: Any) -> dict[str, Any]:
    return {k: _as_list(v) for k, v in dataclasses.asdict(config).items()}


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _as_list(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def per_block(value: Any, n: int) -> tuple:
    """diffusers allows an int for 'the same in every block' or a per-block list."""
    return tuple(value) if isinstance(value, tuple | list) else (value,) * n
