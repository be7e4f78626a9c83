"""The training state (one explicit pytree) and its optimiser: AdamW, warmup + cosine, clipping."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgen.train.config import TrainConfig

PyTree = Any


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a training run needs to continue; saved whole by the checkpoints.

    frozen: parameters the loss reads but never updates (the VAE while the UNet trains).
    rng: raw key data; step s draws from fold_in(rng, s), so randomness follows the step.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    ema_params: PyTree
    frozen: PyTree
    rng: jax.Array

    def step_key(self) -> jax.Array:
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.steps, end_value=cfg.learning_rate * cfg.end_lr_fraction)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2,
                    weight_decay=cfg.weight_decay),
    )


def create_state(params: PyTree, cfg: TrainConfig, frozen: PyTree | None = None) -> TrainState:
    tx = make_optimizer(cfg)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
        # A copy, not the same buffers: the train step donates params and EMA separately.
        ema_params=jax.tree.map(jnp.copy, params), frozen=frozen if frozen is not None else {},
        rng=jax.random.key_data(jax.random.key(cfg.seed)))


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
    """EMA decay with a warmup, (1 + s) / (10 + s) capped at `decay`.

    Early averages then track the fast-moving weights instead of the random init, which
    matters for the short CPU runs this project trains.
    """
    s = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + s) / (10.0 + s))


def apply_gradients(state: TrainState, grads: PyTree, cfg: TrainConfig) -> TrainState:
    tx = make_optimizer(cfg)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    d = ema_decay_at(state.step, cfg.ema_decay)
    ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.ema_params, params)
    return dataclasses.replace(state, step=state.step + 1, params=params, opt_state=opt_state,
                               ema_params=ema)
