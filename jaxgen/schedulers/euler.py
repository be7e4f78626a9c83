"""Euler and Euler-ancestral samplers of the probability-flow ODE (Karras et al. 2022, alg. 1)."""

from __future__ import annotations

import math

import jax
import numpy as np

from jaxgen.schedulers.config import SchedulerConfig
from jaxgen.schedulers.sampler import Sampler, State, make
from jaxgen.schedulers.tables import (
    predict_x0,
    spaced_timesteps,
    train_sigmas,
    vp_from_sigma,
)


def build(name: str, config: SchedulerConfig, num_steps: int) -> Sampler:
    """Karras sigmas at the (possibly fractional) timesteps, plus the final sigma 0."""
    t = spaced_timesteps(config, num_steps, integer=False)
    sigmas_train = train_sigmas(config)
    # np.interp clamps beyond the last training timestep, as diffusers does.
    k = np.interp(t, np.arange(len(sigmas_train)), sigmas_train)
    k = np.append(k, 0.0).astype(np.float32).astype(np.float64)  # diffusers' float32 sigmas
    alpha, sigma = vp_from_sigma(k[:-1])
    tables = {
        # The UNet was trained on VP samples x_vp = x / sqrt(k^2 + 1).
        "in_scale": alpha,
        "alpha": alpha,
        "sigma": sigma,
        "x_scale": np.ones(num_steps),
        "noise_scale": k[:-1],
        "k_sigma": k[:-1],
    }
    k_from, k_to = k[:-1], k[1:]
    if name == "euler_ancestral":
        # Split the step into a deterministic jump to sigma_down and fresh noise of std sigma_up
        # so that sigma_down^2 + sigma_up^2 = sigma_to^2 (k-diffusion get_ancestral_step).
        tables["sigma_up"] = np.sqrt(k_to**2 * (k_from**2 - k_to**2) / k_from**2)
        tables["dt"] = np.sqrt(k_to**2 - tables["sigma_up"] ** 2) - k_from
        step_fn = ancestral_step
    else:
        tables["dt"] = k_to - k_from
        step_fn = step
    k_max = float(np.max(k))
    # diffusers starts "leading" schedules from the VP-normalised max noise level, others not.
    init_sigma = k_max if config.timestep_spacing != "leading" else math.sqrt(k_max**2 + 1)
    return make(name, num_steps, config.prediction_type, t, tables, step_fn,
                needs_noise=name == "euler_ancestral", init_noise_sigma=init_sigma)


def step(
    s: Sampler, state: State, i: jax.Array, out: jax.Array, x: jax.Array, noise: jax.Array | None
) -> tuple[jax.Array, State]:
    """x_next = x + (x - x0) / sigma * (sigma_next - sigma): one Euler step of dx/dsigma."""
    alpha = s.tables["alpha"][i]
    x0 = predict_x0(s.prediction_type, out, x * alpha, alpha, s.tables["sigma"][i])
    return x + (x - x0) / s.tables["k_sigma"][i] * s.tables["dt"][i], state


def ancestral_step(
    s: Sampler, state: State, i: jax.Array, out: jax.Array, x: jax.Array, noise: jax.Array | None
) -> tuple[jax.Array, State]:
    """Euler step to sigma_down, then add noise * sigma_up."""
    x, state = step(s, state, i, out, x, noise)
    return x + noise * s.tables["sigma_up"][i], state
