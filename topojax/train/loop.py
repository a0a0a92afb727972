"""The step loop shared by the experiments: resume, NaN/Inf tripwire, metric
logging, progress bar and checkpoints.

An experiment builds its jitted `train_step(state, *batch) -> (state, metrics)`
(one `nnx.State` of model and optimiser, a dict of scalar metrics with a
`"loss"` entry) and a pure `batch_fn(step)`; `restore_or_init` and `run_steps`
do the rest, so every trainer resumes, logs and stops on NaNs the same way.
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import tqdm
from absl import logging

from topojax.train.checkpoint import Checkpointer
from topojax.train.metric_writer import MetricWriter

PyTree = Any


class NonFiniteError(FloatingPointError):
  """Training produced a NaN or Inf loss or gradient."""


def progress_bar(initial: int, total: int) -> tqdm.tqdm:
  """A tqdm bar on an interactive terminal; silent in CI and in logs."""
  quiet = not sys.stderr.isatty() or bool(os.environ.get("CI"))
  return tqdm.tqdm(initial=initial, total=total, disable=quiet, desc="train",
                   dynamic_ncols=True)


def check_finite(step: int, step_metrics: dict[str, Any]) -> None:
  """The NaN/Inf tripwire: stops training at the first bad step."""
  bad = {k: float(v) for k, v in step_metrics.items() if not np.isfinite(v)}
  if bad:
    raise NonFiniteError(
        f"Non-finite training metrics at step {step}: {bad}. Stopping; the "
        "latest checkpoint predates this step.")


def quiet_orbax(record: std_logging.LogRecord) -> bool:
  """Drops Orbax's INFO chatter (dozens of lines per save); keeps warnings.

  Install with `absl.logging.get_absl_handler().addFilter(quiet_orbax)`.
  """
  return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def restore_or_init(checkpointer: Checkpointer, abstract_state: PyTree,
                    sharding: jax.sharding.Sharding,
                    init_fn: Callable[[], PyTree]) -> tuple[PyTree, int]:
  """The latest checkpoint's state (placed with `sharding`), else `init_fn()`.

  Args:
    checkpointer: the run's checkpoints.
    abstract_state: the state's structure with shape/dtype leaves (e.g. from
      `nnx.split(nnx.eval_shape(create))`).
    sharding: where every leaf goes on restore (replicated for data parallel).
    init_fn: builds a fresh state (a jitted init with `out_shardings`).

  Returns:
    `(state, start_step)`, `start_step` 0 for a fresh run.
  """
  start_step = checkpointer.latest_step() or 0
  if not start_step:
    return init_fn(), 0
  logging.info("Resuming from the checkpoint of step %d.", start_step)
  restore_target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract_state)
  return checkpointer.restore(start_step, restore_target), start_step


def run_steps(train_step: Callable[..., tuple[PyTree, dict[str, jax.Array]]],
              state: PyTree, batch_fn: Callable[[int], tuple[Any, ...]], *,
              start_step: int, total_steps: int, checkpointer: Checkpointer,
              writer: MetricWriter, log_every: int) -> tuple[PyTree, np.ndarray]:
  """Steps `start_step + 1 .. total_steps`: `train_step(state, *batch_fn(step - 1))`.

  The tripwire checks each step's metrics one step late, so the host never
  waits on the step it has just dispatched; a step due for a checkpoint (and
  the last step) is checked before it is saved, so no checkpoint holds NaNs.
  Metrics go to `writer` every `log_every` steps and at the last step. Inside
  the loop implicit host<->device copies are errors (they would be hidden
  syncs): `batch_fn` must place its arrays explicitly
  (`topojax.train.sharding.put_batch`).

  Returns:
    `(state, losses)`: the final state and `[steps run]` float32 training
    losses (the `"loss"` metric of every step run).

  Raises:
    NonFiniteError: a NaN/Inf metric; names the step.
  """
  if start_step >= total_steps:
    logging.info("Training already complete (step %d).", start_step)
  losses = []
  progress = progress_bar(start_step, total_steps)

  def record(step: int, device_metrics) -> None:
    host_metrics = jax.device_get(device_metrics)
    check_finite(step, host_metrics)
    losses.append(float(host_metrics["loss"]))
    if step % log_every == 0 or step == total_steps:
      writer.write(step, host_metrics)
      progress.set_postfix(loss=f"{losses[-1]:.4f}")

  pending = None  # (step, device metrics) not yet recorded
  try:
    with jax.transfer_guard("disallow"):
      for step in range(start_step + 1, total_steps + 1):
        state, step_metrics = train_step(state, *batch_fn(step - 1))
        if pending is not None:
          record(*pending)
        pending = (step, step_metrics)
        if checkpointer.should_save(step) or step == total_steps:
          record(*pending)
          pending = None
          checkpointer.save(step, state, force=True)
        progress.update(1)
  finally:
    progress.close()
    checkpointer.wait_until_finished()
  return state, np.asarray(losses, np.float32)


def train_with_checkpoints(train_step: Callable[..., tuple[PyTree, dict[str, jax.Array]]],
                           init_fn: Callable[[], PyTree], abstract_state: PyTree,
                           sharding: jax.sharding.Sharding,
                           batch_fn: Callable[[int], tuple[Any, ...]], *, checkpoint_dir: str,
                           config, writer: MetricWriter,
                           total_steps: int | None = None) -> tuple[PyTree, int, np.ndarray]:
  """A whole run: resume from `checkpoint_dir` (`restore_or_init`), then `run_steps`.

  `config` gives `log_every`, `checkpoint_every`, `keep_checkpoints` and
  `total_steps` (unless given). Returns `(state, start_step, losses)`.
  """
  total_steps = config.total_steps if total_steps is None else total_steps
  with Checkpointer(checkpoint_dir, max_to_keep=config.keep_checkpoints,
                    save_interval_steps=config.checkpoint_every) as checkpointer:
    state, start_step = restore_or_init(checkpointer, abstract_state, sharding, init_fn)
    state, losses = run_steps(train_step, state, batch_fn, start_step=start_step,
                              total_steps=total_steps, checkpointer=checkpointer,
                              writer=writer, log_every=config.log_every)
  return state, start_step, losses


class StepTimer:
  """Measures what a train step costs: wall time per step and compiled memory.

  `wrap(train_step)` records when each call starts. `run_steps` waits for
  step t's metrics before it dispatches step t + 2, so in steady state the
  interval between calls is the step's cost (device compute, or the host's
  batch loading if that is slower); the first call's duration is mostly
  compilation. Two figures: the mean interval (training time per step, as
  TopoMortar compares losses: a term switched on late costs only where it
  runs) and the median over the last `LATE_FRACTION` of the steps (every
  scheduled term on). `measure_memory` reads XLA's memory analysis of the
  compiled step (arguments + outputs + temporaries; on CPU the host memory it
  needs).
  """

  LATE_FRACTION = 0.3  # TopoMortar's late topology terms run in the last 30 %

  def __init__(self):
    self._intervals: list[float] = []
    self._compile_seconds = 0.0
    self._memory_bytes: int | None = None

  def wrap(self, train_step: Callable[..., Any]) -> Callable[..., Any]:
    last_start = None

    def timed(*args):
      nonlocal last_start
      start = time.perf_counter()
      out = train_step(*args)
      if last_start is None:
        self._compile_seconds += time.perf_counter() - start
      else:
        self._intervals.append(start - last_start)
      last_start = start
      return out
    return timed

  @property
  def seconds_per_step(self) -> float | None:
    """Mean interval, without the first (it waits for the compilation)."""
    steady = self._intervals[1:]
    return float(np.mean(steady)) if steady else None

  @property
  def late_seconds_per_step(self) -> float | None:
    """Median interval over the last `LATE_FRACTION` of the timed steps."""
    steady = self._intervals[1:]
    late = steady[int(len(steady) * (1 - self.LATE_FRACTION)):]
    return float(np.median(late)) if late else None

  def measure_memory(self, jitted_step, *args) -> None:
    """Memory of the compiled step (its cached executable, not a recompilation)."""
    analysis = jitted_step.lower(*args).compile().memory_analysis()
    if analysis is not None:
      self._memory_bytes = int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                               + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)

  def write(self, path: str, **extra: Any) -> None:
    """Writes `train_cost.json`-style figures to `path`."""
    with open(path, "w") as f:
      json.dump({"seconds_per_step": self.seconds_per_step,
                 "late_seconds_per_step": self.late_seconds_per_step,
                 "compile_seconds": self._compile_seconds,
                 "steps_timed": max(len(self._intervals) - 1, 0),
                 "step_memory_bytes": self._memory_bytes,
                 "platform": jax.default_backend(), **extra}, f, indent=1)
