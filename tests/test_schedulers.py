"""jaxgen.schedulers against diffusers 0.42, step by step, in float32 on a 1x4x8x8 latent.

Both sides get the same fake UNet (out = 0.5 * model_input + r_i, r_i from a NumPy seed per
step) and the same step noise; every intermediate sample must match within relative L2 1e-5.
Largest relative L2 error over all comparisons here, measured on CPU with diffusers 0.42.1
and torch 2.13: ddim 3.8e-7, ddpm 4.4e-7, dpmpp_2m 8.0e-7, dpmpp_2m_karras 2.0e-6 (the
cosine schedule, whose Karras sigmas reach 2e4), euler 2.8e-7, euler_ancestral 2.9e-7.
"""

from __future__ import annotations

import json

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_ddpm, scheduling_euler_ancestral_discrete

from jaxgen.requests import SAMPLERS
from jaxgen.schedulers import SchedulerConfig, make_sampler

SHAPE = (1, 4, 8, 8)
STEPS = 10
RTOL = 1e-5

DIFFUSERS = {
    "ddim": (diffusers.DDIMScheduler, {}),
    "dpmpp_2m": (
        diffusers.DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    "dpmpp_2m_karras": (
        diffusers.DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "euler": (diffusers.EulerDiscreteScheduler, {}),
    "euler_ancestral": (diffusers.EulerAncestralDiscreteScheduler, {}),
    "ddpm": (diffusers.DDPMScheduler, {}),
}
# Modules whose randn_tensor the reference run replaces with our step noise.
NOISE_MODULES = {"euler_ancestral": scheduling_euler_ancestral_discrete, "ddpm": scheduling_ddpm}

SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SD21 = {  # stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def _draws(steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial unit noise, fake-UNet offsets r_i and step noise, one NumPy seed each."""
    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    r = np.stack([np.random.default_rng(100 + i).standard_normal(SHAPE, np.float32)
                  for i in range(steps)])
    z = np.stack([np.random.default_rng(200 + i).standard_normal(SHAPE, np.float32)
                  for i in range(steps)])
    return x, r, z


def _diffusers_run(monkeypatch, name, config, steps, start=0):
    """diffusers' denoising loop from step `start`; returns (scheduler, samples after each step)."""
    cls, overrides = DIFFUSERS[name]
    sched = cls.from_config({**config.to_dict(), **overrides})
    sched.set_timesteps(steps)
    noise = [None]
    if name in NOISE_MODULES:
        monkeypatch.setattr(NOISE_MODULES[name], "randn_tensor", lambda *a, **k: noise[0])
    if hasattr(sched, "set_begin_index"):
        # Index sigmas by step, not by looking the timestep up: Karras timesteps of the cosine
        # schedule repeat (998, 998, ...), where the lookup picks the wrong step and crashes.
        sched.set_begin_index(start)
    x0, r, z = _draws(steps)
    if start == 0:
        x = torch.from_numpy(x0) * sched.init_noise_sigma
    else:  # image-to-image: x0 plays the clean latent, z[0] the added noise
        x = sched.add_noise(torch.from_numpy(x0), torch.from_numpy(z[0]),
                            sched.timesteps[start:start + 1])
    samples = [x.numpy().copy()]
    for i in range(start, steps):
        t = sched.timesteps[i]
        out = 0.5 * sched.scale_model_input(x, t) + torch.from_numpy(r[i])
        noise[0] = torch.from_numpy(z[i])
        x = sched.step(out, t, x).prev_sample
        samples.append(x.numpy().copy())
    return sched, samples


def _jax_run(name, config, steps, start=0):
    """The same loop with our sampler, eagerly, one step at a time."""
    s = make_sampler(name, config, steps)
    x0, r, z = _draws(steps)
    if start == 0:
        x = jnp.asarray(x0) * s.init_noise_sigma
    else:
        x = s.add_noise(jnp.asarray(x0), jnp.asarray(z[0]), jnp.int32(start))
    state = s.init_state(x)
    samples = [np.asarray(x)]
    for i in range(start, steps):
        i = jnp.int32(i)
        out = 0.5 * s.scale_model_input(x, i) + r[i]
        x, state = s.step(state, i, out, x, jnp.asarray(z[i]))
        samples.append(np.asarray(x))
    return s, samples


def _rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def _compare(monkeypatch, name, config, steps=STEPS, start=0):
    sched, ref = _diffusers_run(monkeypatch, name, config, steps, start)
    s, ours = _jax_run(name, config, steps, start)
    np.testing.assert_allclose(np.asarray(s.timesteps), sched.timesteps.numpy()[:steps],
                               rtol=0, atol=1e-4)
    assert s.init_noise_sigma == pytest.approx(float(sched.init_noise_sigma), rel=1e-6)
    assert len(ours) == len(ref) == steps - start + 1
    errors = [_rel_err(a, b) for a, b in zip(ours, ref, strict=True)]
    assert max(errors) < RTOL, f"relative L2 errors per step: {errors}"
    return max(errors)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_every_step_matches_diffusers(monkeypatch, name, prediction_type, spacing):
    config = SchedulerConfig(prediction_type=prediction_type, timestep_spacing=spacing)
    _compare(monkeypatch, name, config)


OTHER_CONFIGS = [
    *[(n, {"prediction_type": "sample"}) for n in SAMPLERS if n != "euler_ancestral"],
    *[(n, {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}) for n in SAMPLERS],
    *[(n, {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing"})
      for n in SAMPLERS],
    ("ddim", {"clip_sample": True}),
    ("ddpm", {"clip_sample": True, "clip_sample_range": 2.0}),
    ("ddim", {"set_alpha_to_one": True, "steps_offset": 0}),
]


@pytest.mark.parametrize(("name", "fields"), OTHER_CONFIGS)
def test_other_schedules_match_diffusers(monkeypatch, name, fields):
    # euler_ancestral has no "sample" prediction in diffusers (ours has: x0 = model output).
    _compare(monkeypatch, name, SchedulerConfig(**fields))


@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("name", SAMPLERS)
def test_short_runs_match_diffusers(monkeypatch, name, steps):
    # One and two steps exercise the first/last-step special cases of DPM-Solver++.
    _compare(monkeypatch, name, SchedulerConfig(timestep_spacing="trailing"), steps=steps)


@pytest.mark.parametrize("name", SAMPLERS)
def test_image_to_image_start_matches_diffusers(monkeypatch, name):
    # add_noise at step 4, then denoise from there; DPM-Solver++ must restart at first order.
    _compare(monkeypatch, name, SchedulerConfig(prediction_type="v_prediction"), start=4)


@pytest.mark.parametrize("steps", [3, 25, 50, 61, 998])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_timesteps_match_diffusers(name, spacing, steps):
    config = SchedulerConfig(timestep_spacing=spacing)
    cls, overrides = DIFFUSERS[name]
    sched = cls.from_config({**config.to_dict(), **overrides})
    sched.set_timesteps(steps)
    s = make_sampler(name, config, steps)
    ref = sched.timesteps.numpy()
    assert s.timesteps.shape == (steps,)
    np.testing.assert_allclose(np.asarray(s.timesteps), ref[:steps], rtol=0, atol=1e-4)
    # diffusers' float arange leaves a bogus extra timestep -1 for some trailing step counts;
    # ours stops at num_steps.
    assert list(ref[steps:]) in ([], [-1])
    assert s.init_noise_sigma == pytest.approx(float(sched.init_noise_sigma), rel=1e-6)


def _fori_loop_run(sampler, x, r, z):
    def body(i, carry):
        x, state = carry
        out = 0.5 * sampler.scale_model_input(x, i) + r[i]
        return sampler.step(state, i, out, x, z[i])

    state = sampler.init_state(x)
    return jax.lax.fori_loop(0, sampler.num_steps, body, (x * sampler.init_noise_sigma, state))[0]


@pytest.mark.parametrize("name", ["dpmpp_2m_karras", "euler_ancestral", "ddpm"])
def test_jit_fori_loop_matches_diffusers(monkeypatch, name):
    # The sampler is a pytree argument: its tables are traced, and i is a traced int32.
    config = SchedulerConfig(prediction_type="v_prediction", timestep_spacing="trailing")
    _, ref = _diffusers_run(monkeypatch, name, config, STEPS)
    x0, r, z = _draws(STEPS)
    final = jax.jit(_fori_loop_run)(make_sampler(name, config, STEPS), x0, r, z)
    assert _rel_err(np.asarray(final), ref[-1]) < RTOL


def test_sampler_is_a_pytree_of_tables():
    s = make_sampler("dpmpp_2m", SchedulerConfig(), 10)
    leaves = jax.tree_util.tree_leaves(s)
    assert any(leaf is s.timesteps for leaf in leaves)
    assert all(isinstance(leaf, jax.Array) and leaf.dtype == jnp.float32 for leaf in leaves)
    rebuilt = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(s), leaves)
    assert rebuilt.name == "dpmpp_2m" and rebuilt.fns == s.fns
    # Equal static fields: two samplers of the same name and step count share a compilation.
    assert jax.tree_util.tree_structure(s) == jax.tree_util.tree_structure(
        make_sampler("dpmpp_2m", SchedulerConfig(), 10)
    )


def test_noise_flags_and_missing_noise():
    assert {n for n in SAMPLERS if make_sampler(n, SchedulerConfig(), 4).needs_noise} == {
        "euler_ancestral",
        "ddpm",
    }
    s = make_sampler("ddpm", SchedulerConfig(), 4)
    x = jnp.zeros(SHAPE)
    with pytest.raises(ValueError, match="noise"):
        s.step(s.init_state(x), 0, x, x)


def test_bfloat16_sample_keeps_dtype():
    s = make_sampler("euler", SchedulerConfig(), 4)
    x = jnp.ones(SHAPE, jnp.bfloat16)
    assert s.scale_model_input(x, 0).dtype == jnp.bfloat16
    assert s.step(s.init_state(x), 0, x, x)[0].dtype == jnp.bfloat16


def test_from_dict_sd15():
    config = SchedulerConfig.from_dict(SD15)
    assert config == SchedulerConfig()
    assert config.prediction_type == "epsilon" and config.timestep_spacing == "leading"


def test_from_dict_sd21_v_prediction(tmp_path):
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps(SD21))
    config = SchedulerConfig.from_json(path)
    assert config == SchedulerConfig(prediction_type="v_prediction")
    assert SchedulerConfig.from_dict(config.to_dict()) == config


def test_from_dict_ignores_algorithm_options():
    # The sampler name picks the algorithm; a DPMSolver config's options must not break Euler.
    d = {**SD15, "solver_order": 3, "use_karras_sigmas": True, "algorithm_type": "dpmsolver",
         "thresholding": False, "variance_type": None, "interpolation_type": "linear"}
    assert SchedulerConfig.from_dict(d) == SchedulerConfig()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("beta_schedule", "foo"),
        ("trained_betas", [0.1, 0.2]),
        ("prediction_type", "flow_prediction"),
        ("timestep_spacing", "middle"),
        ("thresholding", True),
        ("rescale_betas_zero_snr", True),
        ("variance_type", "learned_range"),
        ("timestep_type", "continuous"),
        ("num_train_timesteps", 0),
        ("steps_offset", -1),
        ("clip_sample", "yes"),
        ("shift", 3.0),
    ],
)
def test_from_dict_rejects_bad_values(key, value):
    with pytest.raises(ValueError) as err:
        SchedulerConfig.from_dict({**SD15, key: value})
    assert key in str(err.value) and repr(value) in str(err.value)


@pytest.mark.parametrize(
    ("name", "steps", "match"),
    [
        ("plms", 10, "plms"),
        ("ddim", 0, "num_steps=0"),
        ("ddim", 1001, "num_steps=1001"),
        ("euler", 2.5, "num_steps=2.5"),
        ("euler", True, "num_steps=True"),
        # leading + steps_offset=1 at 1000 steps reaches t=1000 (diffusers: IndexError).
        ("ddim", 1000, "num_steps=1000"),
        # DPM-Solver's leading grid repeats t=1 at 1000 steps (diffusers: NaNs).
        ("dpmpp_2m", 1000, "num_steps=1000"),
        # ... and at 999 steps its t=1000 and t=999 share the clamped top sigma (diffusers: NaNs).
        ("dpmpp_2m", 999, "num_steps=999"),
    ],
)
def test_make_sampler_rejects_bad_arguments(name, steps, match):
    with pytest.raises(ValueError, match=match):
        make_sampler(name, SchedulerConfig(), steps)
