"""Orbax checkpoints of the whole TrainState: save every N steps, restore the latest.

Resuming is "rerun the same command": the latest complete checkpoint is restored onto the
shardings of a freshly built state, and since batches and keys derive from the step number,
the continued run is bit-identical to one that never stopped.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxgen.train.state import TrainState


class Checkpoints:
    """A directory of step-numbered TrainState checkpoints."""

    def __init__(self, directory: str | Path, every: int, keep: int = 2):
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=every, max_to_keep=keep, create=True,
            # Synchronous: a save has landed before training goes on, so a crash right
            # after it still finds the checkpoint (and tests can "crash" at any point).
            enable_async_checkpointing=False)
        self.directory = Path(directory).absolute()
        self.every = every
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def due(self, step: int) -> bool:
        """Whether the state after `step` steps is on the save interval."""
        return step % self.every == 0

    def save(self, state: TrainState) -> bool:
        """Save `state` under its step; False when that step is already saved."""
        step = int(state.step)
        if step == self.latest_step():
            return False
        return self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore_latest(self, like: TrainState) -> TrainState:
        """The latest checkpoint laid out like `like` (shapes, dtypes, shardings), or `like`."""
        step = self.latest_step()
        if step is None:
            return like
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
