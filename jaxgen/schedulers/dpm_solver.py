"""DPM-Solver++(2M), multistep second order in data prediction (Lu et al. 2022, alg. 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.schedulers.config import SchedulerConfig
from jaxgen.schedulers.sampler import Sampler, State, make
from jaxgen.schedulers.tables import (
    karras_sigmas,
    predict_x0,
    sigma_to_t,
    spaced_timesteps,
    train_sigmas,
    vp_from_sigma,
)


def build(name: str, config: SchedulerConfig, num_steps: int) -> Sampler:
    """Per-step coefficients of x_next = a * x + b * x0 + c * (x0 - x0_prev)."""
    sigmas_train = train_sigmas(config)
    if name.endswith("_karras"):
        k = karras_sigmas(sigmas_train, num_steps)
        t = sigma_to_t(k, sigmas_train)
        # diffusers rounds, except for the cosine schedule, whose int64 cast truncates.
        t = np.trunc(t) if config.beta_schedule == "squaredcos_cap_v2" else np.round(t)
    else:
        t = spaced_timesteps(config, num_steps, solver_grid=True)
        k = np.interp(t, np.arange(len(sigmas_train)), sigmas_train)
    k = np.append(k, 0.0).astype(np.float32).astype(np.float64)  # final sigma "zero"
    alpha, sigma = vp_from_sigma(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.log(alpha) - np.log(sigma)  # half log-SNR; +inf at the final sigma 0
        h = lam[1:] - lam[:-1]
        b = -alpha[1:] * np.expm1(-h)
        # Second-order correction from the previous x0; r0 = h_prev / h (DPM-Solver++ eq. 18).
        c = np.zeros(num_steps)
        c[1:] = 0.5 * b[1:] * h[1:] / h[:-1]
    # The first step has no history and the last one (to sigma 0) is first order in diffusers
    # (lower_order_final / final_sigmas_type="zero").
    c[0] = c[-1] = 0.0
    tables = {
        "in_scale": np.ones(num_steps),
        "x_scale": alpha[:-1],
        "noise_scale": sigma[:-1],
        "alpha": alpha[:-1],
        "sigma": sigma[:-1],
        "a": sigma[1:] / sigma[:-1],
        "b": b,
        "c": c,
    }
    return make(name, num_steps, config.prediction_type, t, tables, step, init_state=init_state)


def init_state(s: Sampler, sample: jax.Array) -> State:
    """(previous x0, whether there is one): a run started mid-schedule begins first order."""
    return jnp.zeros(sample.shape, jnp.float32), jnp.array(False)


def step(
    s: Sampler, state: State, i: jax.Array, out: jax.Array, x: jax.Array, noise: jax.Array | None
) -> tuple[jax.Array, State]:
    """Multistep update; first order when no previous x0 exists."""
    x0_prev, has_prev = state
    x0 = predict_x0(s.prediction_type, out, x, s.tables["alpha"][i], s.tables["sigma"][i])
    c = jnp.where(has_prev, s.tables["c"][i], 0.0)
    prev = s.tables["a"][i] * x + s.tables["b"][i] * x0 + c * (x0 - x0_prev)
    return prev, (x0, jnp.array(True))
