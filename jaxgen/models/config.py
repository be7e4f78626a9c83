"""Model configs read from diffusers/transformers `config.json` files."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from jaxgen.requests import ConfigError

T = TypeVar("T")


def config_from_dict(cls: type[T], raw: dict[str, Any], source: str,
                     must_equal: dict[str, Any] | None = None) -> T:
    """Build dataclass `cls` from a config dict.

    Keys that are fields of `cls` are taken; keys in `must_equal` must hold that value (a
    feature jaxgen does not implement, at its inert setting) or a ConfigError names them;
    other keys (bookkeeping such as `_class_name`, `sample_size`) are ignored.
    """
    for key, allowed in (must_equal or {}).items():
        if key in raw and raw[key] != allowed and raw[key] != _as_list(allowed):
            raise ConfigError(
                f"{source}: {key}={raw[key]!r} is not supported (jaxgen implements {allowed!r})"
            )
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: _as_tuple(v) for k, v in raw.items() if k in names}
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    return {k: _as_list(v) for k, v in dataclasses.asdict(config).items()}


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _as_list(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def per_block(value: Any, n: int) -> tuple:
    """diffusers allows an int for 'the same in every block' or a per-block list."""
    return tuple(value) if isinstance(value, tuple | list) else (value,) * n
