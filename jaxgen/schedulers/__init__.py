"""Diffusion samplers as pure functions over per-step tables, matching diffusers 0.42.

    sampler = make_sampler("dpmpp_2m", SchedulerConfig.from_json(path), num_steps=25)
    x = noise * sampler.init_noise_sigma
    state = sampler.init_state(x)
    for i in range(num_steps):  # or lax.fori_loop: every method takes a traced i
        out = unet(sampler.scale_model_input(x, i), sampler.timesteps[i])
        x, state = sampler.step(state, i, out, x, step_noise)
"""

from __future__ import annotations

from collections.abc import Callable

from jaxgen.requests import SAMPLERS
from jaxgen.schedulers import ddim, ddpm, dpm_solver, euler
from jaxgen.schedulers.config import SchedulerConfig
from jaxgen.schedulers.sampler import Sampler

__all__ = ["SAMPLERS", "Sampler", "SchedulerConfig", "make_sampler"]

_BUILDERS: dict[str, Callable[[str, SchedulerConfig, int], Sampler]] = {
    "ddim": ddim.build,
    "dpmpp_2m": dpm_solver.build,
    "dpmpp_2m_karras": dpm_solver.build,
    "euler": euler.build,
    "euler_ancestral": euler.build,
    "ddpm": ddpm.build,
}
assert set(_BUILDERS) == set(SAMPLERS), "every request sampler name needs a builder"


def make_sampler(name: str, config: SchedulerConfig, num_steps: int) -> Sampler:
    """The sampler `name` for `num_steps` steps of the model's noise schedule `config`."""
    if name not in _BUILDERS:
        raise ValueError(f"sampler {name!r}: must be one of {', '.join(SAMPLERS)}")
    if not isinstance(config, SchedulerConfig):
        raise ValueError(f"sampler {name!r}: config must be a SchedulerConfig, got {config!r}")
    n_train = config.num_train_timesteps
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not (
        1 <= num_steps <= n_train
    ):
        raise ValueError(
            f"sampler {name!r}: num_steps={num_steps!r} must be an integer in [1, {n_train}]"
        )
    return _BUILDERS[name](name, config, num_steps)
