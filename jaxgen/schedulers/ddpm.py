"""Ancestral DDPM sampling (Ho et al. 2020), on a strided schedule as in diffusers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.schedulers.config import SchedulerConfig
from jaxgen.schedulers.sampler import Sampler, State, make
from jaxgen.schedulers.tables import discrete_tables, predict_x0


def build(name: str, config: SchedulerConfig, num_steps: int) -> Sampler:
    """Posterior q(x_prev | x_t, x0) coefficients between consecutive listed timesteps."""
    t, acp, tables = discrete_tables(name, config, num_steps)
    acp_t = acp[t]
    # The step after the last one lands on the clean image: alpha_prod = 1 there.
    acp_prev = np.append(acp_t[1:], 1.0)
    beta_prod = 1 - acp_t
    # The effective alpha of a strided step, rounded to float32 as diffusers does: 1 - alpha
    # is ill-conditioned at fine strides, so matching diffusers needs the same rounding.
    alpha = (acp_t.astype(np.float32) / acp_prev.astype(np.float32)).astype(np.float64)
    beta = 1 - alpha
    tables["coef_x0"] = np.sqrt(acp_prev) * beta / beta_prod
    tables["coef_x"] = np.sqrt(alpha) * (1 - acp_prev) / beta_prod
    # "fixed_small" variance (eq. 7's beta tilde); diffusers adds no noise at t = 0.
    variance = np.maximum((1 - acp_prev) / beta_prod * beta, 1e-20)
    tables["noise_std"] = np.where(t > 0, np.sqrt(variance), 0.0)
    return make(name, num_steps, config.prediction_type, t, tables, step, needs_noise=True)


def step(
    s: Sampler, state: State, i: jax.Array, out: jax.Array, x: jax.Array, noise: jax.Array | None
) -> tuple[jax.Array, State]:
    """x_prev = posterior mean(x0, x_t) + posterior std * noise (DDPM eqs. 6-7)."""
    x0 = predict_x0(s.prediction_type, out, x, s.tables["alpha"][i], s.tables["sigma"][i])
    clip = s.tables["clip"][i]
    x0 = jnp.clip(x0, -clip, clip)
    mean = s.tables["coef_x0"][i] * x0 + s.tables["coef_x"][i] * x
    return mean + s.tables["noise_std"][i] * noise, state
