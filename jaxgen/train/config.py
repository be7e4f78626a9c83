"""Training configs: one frozen dataclass per concern, read from a stage's YAML file.

A stage YAML reads as the list of choices a user makes::

    vae: {block_out_channels: [32, 64, 64], ...}     # model configs, diffusers field names
    loss: {kl_weight: 1.0e-6}
    train: {steps: 4000, batch_size: 32, learning_rate: 1.0e-3}
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and bookkeeping of one training stage."""

    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    end_lr_fraction: float = 0.05  # cosine decays to this fraction of the peak
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.99
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    log_every: int = 25
    seed: int = 0
    # Compute dtype of the forward/backward pass; params, optimiser state and EMA stay float32.
    # auto: bfloat16 on GPU/TPU (native there), float32 on CPU (emulated bfloat16 is slower).
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"train config precision={self.precision!r}: must be one of "
                             f"{', '.join(PRECISIONS)}")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train config {name}={getattr(self, name)!r}: must be >= 1")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"train config warmup_steps={self.warmup_steps!r}: must be in "
                             f"[0, steps={self.steps})")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train config ema_decay={self.ema_decay!r}: must be in [0, 1)")


    def compute_dtype(self) -> Any:
        """The dtype the models compute in, `precision` resolved for the default backend."""
        import jax
        import jax.numpy as jnp

        if self.precision == "auto":
            return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
        return jnp.dtype(self.precision).type


def from_section(cls: type[T], raw: dict[str, Any] | None, source: str) -> T:
    """Build dataclass `cls` from a YAML section; unknown keys are errors, not silently dropped."""
    raw = dict(raw or {})
    names = sorted(f.name for f in dataclasses.fields(cls))
    for key in raw:
        if key not in names:
            raise unknown(source, "key", str(key), names)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def read_yaml(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def unknown(where: str, thing: str, name: str, known: Iterable[str]) -> ValueError:
    """The error for a name that is none of `known`: it names the nearest known one."""
    known = sorted(known)
    nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
    hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
    return ValueError(f"{where}: {name!r} is not a known {thing}{hint} "
                      f"(known: {', '.join(known)})")
