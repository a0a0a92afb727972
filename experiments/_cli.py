"""The command line every experiment script shares: `--config`, `--workdir`,
and `jax.distributed.initialize()` on pod hosts (`TOPOJAX_JAX_INIT`, set by
tpu/run_tpu.sh; see `maybe_initialize_distributed`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from topojax.train import loop


def maybe_initialize_distributed() -> bool:
  """Calls `jax.distributed.initialize()` when `TOPOJAX_JAX_INIT` is set.

  Gated because it fails on a lone CPU/GPU host. On a TPU pod (tpu/run_tpu.sh)
  JAX reads the coordinator and process ids from the TPU metadata; elsewhere
  (several CPU processes on one machine, a GPU cluster without SLURM) set
  `TOPOJAX_COORDINATOR` (host:port of process 0), `TOPOJAX_NUM_PROCESSES` and
  `TOPOJAX_PROCESS_ID`; each one that is unset is left to JAX to detect.

  Returns:
    Whether it initialised.

  Raises:
    ValueError: `TOPOJAX_NUM_PROCESSES` or `TOPOJAX_PROCESS_ID` not an integer.
  """
  if os.environ.get("TOPOJAX_JAX_INIT", "").lower() in ("", "0", "false", "no"):
    return False
  kwargs: dict[str, object] = {}
  if os.environ.get("TOPOJAX_COORDINATOR"):
    kwargs["coordinator_address"] = os.environ["TOPOJAX_COORDINATOR"]
  for name, arg in (("TOPOJAX_NUM_PROCESSES", "num_processes"),
                    ("TOPOJAX_PROCESS_ID", "process_id")):
    text = os.environ.get(name)
    if text:
      try:
        kwargs[arg] = int(text)
      except ValueError:
        raise ValueError(f"{name}={text!r} is not an integer.") from None
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d of %d devices local.",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def run(train_and_evaluate: Callable[..., object], example_config: str) -> None:
  """Defines the flags and runs `train_and_evaluate(config, workdir)`.

  The flags are defined here, when a script runs, not when it is imported:
  tests import several experiment modules into one process.
  """
  config_flags.DEFINE_config_file(
      "config", None, f"Experiment config file, e.g. {example_config}.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Output folder; an existing one is resumed.")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(loop.quiet_orbax)
    maybe_initialize_distributed()
    train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)

  app.run(main)
