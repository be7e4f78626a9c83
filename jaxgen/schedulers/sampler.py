"""The `Sampler` pytree: per-step tables plus the family's step function.

A sampler is data, not a stateful object: the denoising loop indexes its tables with the
(traced) step index, so one compiled program serves every call with the same step count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

State = Any


class SamplerFns(NamedTuple):
    """The two functions that differ between families (module-level, so hashable and stable)."""

    init_state: Callable[[Sampler, jax.Array], State]
    step: Callable[[Sampler, State, jax.Array, jax.Array, jax.Array, jax.Array | None],
                   tuple[jax.Array, State]]


def _static(**kwargs: Any) -> Any:
    return dataclasses.field(metadata={"static": True}, **kwargs)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Sampler:
    """A diffusion sampler for a fixed number of steps.

    Tables every family provides (float32, indexed by step i):
      in_scale:   scale_model_input multiplier (1 except for Euler-type samplers)
      x_scale, noise_scale: add_noise coefficients of the clean sample and the noise
      alpha, sigma: the VP noise level the model sees at step i (for predict_x0)
    """

    timesteps: jax.Array
    tables: dict[str, jax.Array]
    name: str = _static()
    init_noise_sigma: float = _static()
    needs_noise: bool = _static()
    prediction_type: str = _static()
    fns: SamplerFns = _static(repr=False)

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])

    def scale_model_input(self, sample: jax.Array, i: jax.Array | int) -> jax.Array:
        """The UNet input at step i (Euler divides by sqrt(sigma^2 + 1); others are identity)."""
        return (sample * self.tables["in_scale"][i]).astype(sample.dtype)

    def add_noise(self, original: jax.Array, noise: jax.Array, i: jax.Array | int) -> jax.Array:
        """Forward-diffuse a clean sample to the noise level at the start of step i (img2img)."""
        x = self.tables["x_scale"][i] * original + self.tables["noise_scale"][i] * noise
        return x.astype(original.dtype)

    def init_state(self, sample: jax.Array) -> State:
        """Solver memory before the first step taken (e.g. the previous x0 for multistep)."""
        return self.fns.init_state(self, sample)

    def step(
        self,
        state: State,
        i: jax.Array | int,
        model_output: jax.Array,
        sample: jax.Array,
        noise: jax.Array | None = None,
    ) -> tuple[jax.Array, State]:
        """One denoising step from the start of step i to the start of step i + 1."""
        if self.needs_noise and noise is None:
            raise ValueError(f"sampler {self.name!r} needs a standard normal `noise` array")
        # Solve in float32 like diffusers (it upcasts the sample), whatever the UNet dtype.
        x = sample.astype(jnp.float32)
        out = model_output.astype(jnp.float32)
        eps = None if noise is None else noise.astype(jnp.float32)
        prev, state = self.fns.step(self, state, i, out, x, eps)
        return prev.astype(sample.dtype), state


def no_state(sampler: Sampler, sample: jax.Array) -> State:
    """init_state of single-step samplers: they remember nothing between steps."""
    return ()


def make(name: str, num_steps: int, prediction_type: str, timesteps: Any,
         tables: dict[str, Any], step: Callable[..., tuple[jax.Array, State]], *,
         needs_noise: bool = False, init_state: Callable[..., State] = no_state,
         init_noise_sigma: float = 1.0) -> Sampler:
    """The one way every family builds its Sampler: check the host tables, then place them."""
    from jaxgen.schedulers.tables import check_finite, to_device

    check_finite(name, num_steps, tables)
    return Sampler(timesteps=jnp.asarray(timesteps, dtype=jnp.float32),
                   tables=to_device(tables), name=name, init_noise_sigma=init_noise_sigma,
                   needs_noise=needs_noise, prediction_type=prediction_type,
                   fns=SamplerFns(init_state=init_state, step=step))
