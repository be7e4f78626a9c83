"""The data-parallel train step and the loop that drives it.

The step is a pure function of (state, batch) under one jax.jit: the state is replicated over
a 'data' mesh axis of every local device, the batch is split along it, and XLA inserts the
gradient all-reduce. The loop only feeds batches, logs metrics and saves checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jaxgen.engine.sharding import devices_dividing
from jaxgen.train.checkpoint import Checkpoints
from jaxgen.train.config import TrainConfig
from jaxgen.train.state import TrainState, apply_gradients, learning_rate_schedule
from jaxgen.train.vae import LossFn

Batch = dict[str, Any]
StepFn = Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]


def make_train_step(loss_fn: LossFn, cfg: TrainConfig) -> StepFn:
    """step(state, batch) -> (state, metrics): one optimiser update, a pure function."""
    schedule = learning_rate_schedule(cfg)

    def step(state: TrainState, batch: Batch):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, aux), grads = grad_fn(state.params, state.frozen, batch, state.step_key())
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "lr": schedule(state.step), **aux}
        return apply_gradients(state, grads, cfg), metrics

    return step


def data_mesh(devices: list[jax.Device] | None = None, batch_size: int | None = None) -> Mesh:
    """A 1-D mesh named 'data' over `devices` (default: every local device); with
    `batch_size`, over as many of them as divide it (devices_dividing)."""
    devices = list(devices or jax.local_devices())
    if batch_size is not None:
        devices = devices_dividing(batch_size, devices)
    return Mesh(np.array(devices), ("data",))


@dataclasses.dataclass(frozen=True)
class ShardedStep:
    """A train step compiled for a mesh: replicated state, batch split over 'data'."""

    mesh: Mesh
    fn: StepFn

    def place_state(self, state: TrainState) -> TrainState:
        return jax.device_put(state, NamedSharding(self.mesh, PartitionSpec()))

    def place_batch(self, batch: Batch) -> Batch:
        n = self.mesh.shape["data"]
        for name, value in batch.items():
            if value.shape[0] % n:
                raise ValueError(f"batch {name!r}: size {value.shape[0]} is not a multiple of "
                                 f"the {n} devices of the 'data' axis")
        return jax.device_put(batch, NamedSharding(self.mesh, PartitionSpec("data")))

    def __call__(self, state: TrainState, batch: Batch):
        return self.fn(state, batch)


def shard_train_step(step: StepFn, mesh: Mesh,
                     compiler_options: dict[str, Any] | None = None) -> ShardedStep:
    """jit `step` for `mesh`; `compiler_options` are XLA's (tests lower the optimisation
    level, so tiny models compile faster)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("data"))
    fn = jax.jit(step, in_shardings=(replicated, split), out_shardings=(replicated, replicated),
                 donate_argnums=0,  # the old state's buffers become the new state's
                 compiler_options=compiler_options)
    return ShardedStep(mesh, fn)


class MetricsLog:
    """Appends one JSON object per line; a resumed run continues the same file."""

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


@dataclasses.dataclass(frozen=True)
class RunSummary:
    state: TrainState
    steps_run: int
    finished: bool  # reached cfg.steps (False: stopped by the time budget)
    images_per_s: float | None  # after the first (compiling) step
    compile_s: float | None
    history: list[dict[str, float]]


def run_training(state: TrainState, step: ShardedStep, batches: Callable[[int], Batch],
                 cfg: TrainConfig, *, checkpoints: Checkpoints | None = None,
                 log: MetricsLog | None = None, minutes: float | None = None,
                 desc: str = "train", progress: bool = True) -> RunSummary:
    """Train from state.step up to cfg.steps, or until `minutes` have passed."""
    log = log or MetricsLog(None)
    start = int(state.step)
    t0 = time.monotonic()
    deadline = None if minutes is None else t0 + 60 * minutes
    history: list[dict[str, float]] = []
    first_done = window_start = None
    window_images = timed_images = 0
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, disable=not progress, leave=False)
    prev_metrics = None
    for s in range(start, cfg.steps):
        state, metrics = step(state, step.place_batch(batches(s)))
        # Wait for the previous step only: the next batch is built while this one runs, and
        # the host never races ahead of the time budget.
        if prev_metrics is not None:
            jax.block_until_ready(prev_metrics)
        prev_metrics = metrics
        done = s + 1
        if first_done is None:
            jax.block_until_ready(metrics)
            first_done = window_start = time.monotonic()
        else:
            window_images += cfg.batch_size
            timed_images += cfg.batch_size
        out_of_time = deadline is not None and time.monotonic() > deadline
        if done % cfg.log_every == 0 or done in (cfg.steps, start + 1) or out_of_time:
            record = {k: float(v) for k, v in jax.device_get(metrics).items()}
            now = time.monotonic()
            record.update(step=done, elapsed_s=round(now - t0, 3))
            if window_images:
                record["images_per_s"] = round(window_images / (now - window_start), 2)
            window_start, window_images = now, 0
            history.append(record)
            log.write(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        bar.update(1)
        if checkpoints is not None and checkpoints.due(done):
            checkpoints.save(state)
        if out_of_time:
            break
    bar.close()
    jax.block_until_ready(state)
    end = time.monotonic()
    if checkpoints is not None and int(state.step) > start:
        checkpoints.save(state)
    steps_run = int(state.step) - start
    rate = timed_images / (end - first_done) if timed_images and first_done else None
    return RunSummary(state=state, steps_run=steps_run, finished=int(state.step) >= cfg.steps,
                      images_per_s=rate, compile_s=None if first_done is None else first_done - t0,
                      history=history)
