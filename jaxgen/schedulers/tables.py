"""Per-step tables shared by the sampler families, built once in NumPy on the host.

Everything here mirrors diffusers 0.42 (`set_timesteps`, `alphas_cumprod`, sigma tables) so
the samplers feed the UNet the same timesteps and noise levels. alphas_cumprod, sigmas and
timesteps are rounded to float32 where diffusers rounds them; the per-step coefficients derived
from them are computed in float64 and rounded once, within a few ulp of diffusers' torch math.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.schedulers.config import SchedulerConfig

_F32_MAX = float(np.finfo(np.float32).max)


def alphas_cumprod(config: SchedulerConfig) -> np.ndarray:
    """Cumulative product of (1 - beta_t) over the training schedule, [N] float32 values."""
    n = config.num_train_timesteps
    if config.beta_schedule == "linear":
        betas = np.linspace(config.beta_start, config.beta_end, n)
    elif config.beta_schedule == "scaled_linear":
        betas = np.linspace(config.beta_start**0.5, config.beta_end**0.5, n) ** 2
    else:  # squaredcos_cap_v2: Nichol & Dhariwal's cosine schedule, betas capped at 0.999
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array(
            [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)]
        )
    # Round like diffusers: float32 betas and alphas, a float64 product (torch's CPU cumprod
    # accumulates in double), stored as float32. Matching that rounding matters near t = 0,
    # where diffusers' 1 - alphas_cumprod loses most of its float32 digits.
    alphas = (np.float32(1.0) - betas.astype(np.float32)).astype(np.float64)
    return np.cumprod(alphas).astype(np.float32).astype(np.float64)


def train_sigmas(config: SchedulerConfig) -> np.ndarray:
    """Karras sigmas sqrt((1 - a) / a) of every training timestep, float32 [N] as in diffusers."""
    acp = alphas_cumprod(config)
    return np.sqrt((1 - acp) / acp).astype(np.float32)


def spaced_timesteps(
    config: SchedulerConfig, num_steps: int, *, integer: bool = True, solver_grid: bool = False
) -> np.ndarray:
    """diffusers' `set_timesteps` spacing: [num_steps] float32 values (as float64), descending.

    integer=False keeps linspace timesteps fractional (the Euler schedulers);
    solver_grid=True spaces num_steps + 1 points and drops t = 0 (DPMSolverMultistep).
    """
    n_train = config.num_train_timesteps
    points = num_steps + 1 if solver_grid else num_steps
    if config.timestep_spacing == "linspace":
        t = np.linspace(0, n_train - 1, points)
        t = t.round() if integer else t
        t = t[::-1]
    elif config.timestep_spacing == "leading":
        t = (np.arange(points) * (n_train // points))[::-1] + config.steps_offset
    else:  # trailing
        # A float arange can yield one extra point just above 0 (e.g. 61 steps), which diffusers
        # keeps as a bogus timestep -1; the [:num_steps] below drops it.
        t = np.round(np.arange(n_train, 0, -n_train / num_steps)) - 1
    return t[:num_steps].astype(np.float32).astype(np.float64)


def karras_sigmas(sigmas: np.ndarray, num_steps: int, rho: float = 7.0) -> np.ndarray:
    """Noise levels of Karras et al. 2022 (EDM, eq. 5) between the schedule's extremes, float64."""
    sigma_min, sigma_max = float(sigmas[0]), float(sigmas[-1])
    ramp = np.linspace(0, 1, num_steps)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (max_inv + ramp * (min_inv - max_inv)) ** rho


def sigma_to_t(sigma: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timestep of each sigma, by interpolating in log sigma (diffusers)."""
    log_sigmas = np.log(sigmas)
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    w = (log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1])
    w = np.clip(w, 0, 1)
    return (1 - w) * low + w * (low + 1)


def vp_from_sigma(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha_t, sigma_t) of the variance-preserving process at Karras noise level sigma."""
    alpha = 1 / np.sqrt(sigma**2 + 1)
    return alpha, sigma * alpha


def check_finite(name: str, num_steps: int, tables: dict[str, np.ndarray]) -> None:
    """Raise ValueError if a step count gives a degenerate schedule (repeated timesteps)."""
    for key, value in tables.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(
                f"sampler {name!r} with num_steps={num_steps}: the schedule is degenerate "
                f"(non-finite {key}; repeated timesteps?)"
            )


def to_device(tables: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """float32 device copies of the host tables."""
    return {k: jnp.asarray(np.asarray(v, dtype=np.float32)) for k, v in tables.items()}


def predict_x0(
    prediction_type: str, model_output: jax.Array, sample: jax.Array, alpha: jax.Array,
    sigma: jax.Array,
) -> jax.Array:
    """Denoised estimate from a VP model's output at noise level (alpha_t, sigma_t)."""
    if prediction_type == "epsilon":
        return (sample - sigma * model_output) / alpha
    if prediction_type == "v_prediction":  # Salimans & Ho 2022: v = alpha * eps - sigma * x0
        return alpha * sample - sigma * model_output
    return model_output


def discrete_tables(
    name: str, config: SchedulerConfig, num_steps: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(integer timesteps, alphas_cumprod, base tables) of the DDPM-family samplers."""
    t = spaced_timesteps(config, num_steps).astype(np.int64)
    n_train = config.num_train_timesteps
    if t.min() < 0 or t.max() >= n_train:
        # e.g. "leading" with steps_offset=1 and num_steps == num_train_timesteps gives t = N,
        # where diffusers fails with an IndexError.
        raise ValueError(
            f"sampler {name!r} with num_steps={num_steps}: timesteps {t.max()}..{t.min()} fall "
            f"outside the {n_train} training timesteps ({config.timestep_spacing} spacing)"
        )
    acp = alphas_cumprod(config)
    alpha, sigma = np.sqrt(acp[t]), np.sqrt(1 - acp[t])
    base = {
        "in_scale": np.ones(num_steps),
        "x_scale": alpha,
        "noise_scale": sigma,
        "alpha": alpha,
        "sigma": sigma,
        # clip_sample bounds x0; float32 max makes the clip a no-op without a static branch.
        "clip": np.full(num_steps, config.clip_sample_range if config.clip_sample else _F32_MAX),
    }
    return t, acp, base
