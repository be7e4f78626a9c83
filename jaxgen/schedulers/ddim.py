"""DDIM with eta = 0 (Song et al. 2021, "Denoising Diffusion Implicit Models")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.schedulers.config import SchedulerConfig
from jaxgen.schedulers.sampler import Sampler, State, make
from jaxgen.schedulers.tables import discrete_tables, predict_x0


def build(name: str, config: SchedulerConfig, num_steps: int) -> Sampler:
    """DDIM tables: the noise level of each step and of the step it jumps to."""
    t, acp, tables = discrete_tables(name, config, num_steps)
    # diffusers jumps by num_train // num_steps whatever the spacing (even "linspace"/"trailing",
    # where that is not the next listed timestep); below t = 0 it uses final_alpha_cumprod.
    prev = t - config.num_train_timesteps // num_steps
    final = 1.0 if config.set_alpha_to_one else acp[0]
    acp_prev = np.where(prev >= 0, acp[np.maximum(prev, 0)], final)
    tables["alpha_prev"] = np.sqrt(acp_prev)
    tables["sigma_prev"] = np.sqrt(1 - acp_prev)
    return make(name, num_steps, config.prediction_type, t, tables, step)


def step(
    s: Sampler, state: State, i: jax.Array, out: jax.Array, x: jax.Array, noise: jax.Array | None
) -> tuple[jax.Array, State]:
    """x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps (DDIM eq. 12 with sigma_t = 0)."""
    alpha, sigma = s.tables["alpha"][i], s.tables["sigma"][i]
    x0 = predict_x0(s.prediction_type, out, x, alpha, sigma)
    if s.prediction_type == "epsilon":
        eps = out
    elif s.prediction_type == "v_prediction":
        eps = alpha * out + sigma * x
    else:
        eps = (x - alpha * x0) / sigma
    # Clipping x0 does not feed back into eps (diffusers' use_clipped_model_output=False).
    clip = s.tables["clip"][i]
    x0 = jnp.clip(x0, -clip, clip)
    return s.tables["alpha_prev"][i] * x0 + s.tables["sigma_prev"][i] * eps, state
