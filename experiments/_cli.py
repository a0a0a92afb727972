"""The command line every experiment script shares: `--config`, `--workdir`,
and `jax.distributed.initialize()` on pod hosts (`TOPOJAX_JAX_INIT`, set by
tpu/launch.sh)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from topojax.train import loop


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
    if os.environ.get("TOPOJAX_JAX_INIT"):
      jax.distributed.initialize()
    train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)

  app.run(main)
