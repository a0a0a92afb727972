"""One thin wrapper around Orbax's `CheckpointManager` (the args API).

The trainer saves one pytree per step (model and optimiser state, as the
`nnx.State` of both) and restores it into an abstract tree that carries the
target shardings, so a checkpoint written on one mesh loads onto another.
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp

PyTree = Any


class Checkpointer:
  """Saves every `save_interval_steps` steps, keeps the newest `max_to_keep`.

  Saves are asynchronous: `save` returns once the arrays are copied off the
  device, so the caller may donate them; call `wait_until_finished` (or
  `close`) before reading the files or leaving the process.
  """

  def __init__(self, directory: str | os.PathLike[str], *, max_to_keep: int = 2,
               save_interval_steps: int = 1):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(os.fspath(directory)),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
            create=True))

  def latest_step(self) -> int | None:
    """The newest saved step, or None when there is no checkpoint yet."""
    return self._manager.latest_step()

  def should_save(self, step: int) -> bool:
    """Whether `step` is due for a checkpoint under `save_interval_steps`."""
    return self._manager.should_save(step)

  def save(self, step: int, state: PyTree, *, force: bool = False) -> bool:
    """Saves `state` at `step` if the interval says so (always with `force`).

    Returns whether a save was started.
    """
    return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def restore(self, step: int, abstract_state: PyTree) -> PyTree:
    """Loads `step` into the shapes, dtypes and shardings of `abstract_state`.

    Args:
      step: a saved step, e.g. `latest_step()`.
      abstract_state: the saved tree's structure with `jax.ShapeDtypeStruct`
        leaves that carry the target `sharding` (Orbax otherwise falls back to
        the shardings in the files, unsafe on another topology).
    """
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
