"""The model's noise schedule, read from a diffusers `scheduler_config.json`.

A checkpoint's scheduler config describes how the model was trained (betas, prediction type,
timestep spacing); it does not choose the sampling algorithm. The sampler name does that, so
algorithm options found in the file (solver order, Karras sigmas, ...) are ignored, while keys
that describe the model and would change the math are either honoured or rejected.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")

# Keys that either never change the math here or that select the sampling algorithm, which
# the sampler name decides (e.g. a DPMSolver config's solver_order is irrelevant to "euler").
_IGNORED_KEYS = frozenset(
    {
        "skip_prk_steps",  # PNDM only
        "sample_max_value",  # only used with thresholding, which is rejected below
        "dynamic_thresholding_ratio",  # idem
        "use_karras_sigmas",  # the sampler name says whether sigmas are Karras
        "use_exponential_sigmas",
        "use_beta_sigmas",
        "use_lu_lambdas",
        "algorithm_type",
        "solver_order",
        "solver_type",
        "lower_order_final",
        "euler_at_final",
        "final_sigmas_type",
        "lambda_min_clipped",
    }
)

# Keys accepted only at the value that leaves the math unchanged; any other value is an error,
# because silently ignoring it would sample a different process than the model was trained on.
_NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "trained_betas": (None,),
    "thresholding": (False,),
    "rescale_betas_zero_snr": (False,),
    "variance_type": (None, "fixed_small"),
    "timestep_type": ("discrete",),
    "interpolation_type": ("linear",),
    "sigma_min": (None,),
    "sigma_max": (None,),
    "use_flow_sigmas": (False,),
    "use_dynamic_shifting": (False,),
    "flow_shift": (1.0,),
    "time_shift_type": ("exponential",),
}


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    """The training noise schedule of a latent diffusion model (defaults: Stable Diffusion 1.x)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 1
    clip_sample: bool = False
    set_alpha_to_one: bool = False
    clip_sample_range: float = 1.0

    def __post_init__(self) -> None:
        _check_int("num_train_timesteps", self.num_train_timesteps, minimum=2)
        _check_int("steps_offset", self.steps_offset, minimum=0)
        for key in ("beta_start", "beta_end", "clip_sample_range"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"scheduler config {key}={value!r}: must be a positive number")
        if self.beta_start >= 1 or self.beta_end >= 1:
            raise ValueError(
                f"scheduler config beta_start={self.beta_start!r}, beta_end={self.beta_end!r}: "
                "betas must be below 1"
            )
        _check_choice("beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        _check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        _check_choice("timestep_spacing", self.timestep_spacing, TIMESTEP_SPACINGS)
        for key in ("clip_sample", "set_alpha_to_one"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"scheduler config {key}={getattr(self, key)!r}: must be a bool")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SchedulerConfig:
        """Read diffusers scheduler_config.json contents; raise ValueError on unsupported values."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key.startswith("_") or key in _IGNORED_KEYS:
                continue
            if key in fields:
                kwargs[key] = value
            elif key in _NEUTRAL_VALUES:
                if not any(_same(value, ok) for ok in _NEUTRAL_VALUES[key]):
                    allowed = " or ".join(repr(v) for v in _NEUTRAL_VALUES[key])
                    raise ValueError(
                        f"scheduler config {key}={_short(value)}: not supported (only {allowed})"
                    )
            else:
                raise ValueError(f"scheduler config {key}={_short(value)}: unknown key")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> SchedulerConfig:
        """Read a diffusers scheduler_config.json file."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict[str, Any]:
        """The config as a diffusers-compatible dict (every field explicit)."""
        return dataclasses.asdict(self)


def _same(value: Any, ok: Any) -> bool:
    # `True == 1` in Python, so compare flags by identity: only a JSON bool counts as a flag.
    return value is ok if isinstance(ok, bool) or ok is None else value == ok


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"scheduler config {key}={value!r}: must be an integer >= {minimum}")


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"scheduler config {key}={value!r}: must be one of {', '.join(choices)}")
