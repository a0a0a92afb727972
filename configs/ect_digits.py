r"""DECT classifier (Röell and Rieck, ICLR 2024) on scikit-learn's 8 x 8 digits.

The laptop/CI run (the weighted ECT of the grey-level digit images,
`topojax.ect.image_ect`, with 32 learnable directions x 32 thresholds and a
learnable scale; the paper's small CNN; Adam, 600 steps of batch 64):

  python -m experiments.train_ect --config configs/ect_digits.py:runlocal \
      --workdir workdirs/ect_digits_local

  Measured: 96.9 % test accuracy (349 of 360 held-out digits, cross-entropy
  0.12) in 73 s wall time on 2 CPU cores (one CPU device, other jobs
  running beside it; about 0.09 s a step after a ~7 s compile). Rerunning the
  same command restores step 600 and only evaluates. Prototypes at 1000 steps
  (lr 1e-3): `input=points` about 89 %, `input=graph` about 91 %. Outputs:
  the accuracy table on stdout and in `eval_metrics.csv`, training curves in
  `metrics.jsonl`, `config.json`, `checkpoints/`, `ect.png` (one learned ECT
  per digit and the learned directions).

Arguments after `:` (comma-separated, see `configs.common.parse_arg`):
  runlocal                 the short run above.
  input=image|points|graph image: the weighted ECT of the grey levels
                             (default); points: the nonzero pixels as a
                             planar point cloud (grid centred in the unit
                             disc); graph: plus the edges between 4-adjacent
                             pixels.
  directions=32            D, the learned directions.
  thresholds=32            T.
  lr=0.003                 Adam learning rate.

Any field can be overridden, e.g. `--config.total_steps=500
--config.model.learn_scale=False`. The same `--workdir` resumes from its
latest checkpoint; a finished run just evaluates.

Settings from the paper (dect-evaluation): Adam, gradient clipping at norm
5, the `EctCnnModel` (Conv 8, pool, Conv 16, pool, MLP). The split holds out
20 % of the 1797 digits (seeded permutation).
"""

from __future__ import annotations

import ml_collections

from configs.common import parse_arg

INPUTS = ("image", "points", "graph")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config; `arg` is the text after `:` on the command line."""
  arg = parse_arg(arg, runlocal=False, input="image", directions=32, thresholds=32, lr=3e-3)
  if arg.input not in INPUTS:
    raise ValueError(f"Unknown input {arg.input!r}; choose one of {list(INPUTS)}.")
  config = ml_collections.ConfigDict()
  config.seed = 0  # model init and batch order

  config.data = {"name": "digits", "input": arg.input, "split_seed": 0, "test_fraction": 0.2}
  if arg.input != "image":
    config.data.center = "grid"

  config.model = {
      "name": "ect_classifier",
      "num_directions": arg.directions, "num_thresholds": arg.thresholds, "radius": 1.0,
      "directions": "uniform", "learn_directions": True,
      "scale": 20.0, "learn_scale": True, "min_scale": 5.0,
      "normalize": "global_max",
      "input": "image" if arg.input == "image" else "points",
      "weighted": arg.input == "image",
      "features": (8, 16), "hidden": (64,),
  }

  config.optimizer = {"name": "adam", "b1": 0.9, "b2": 0.999, "weight_decay": 0.0}
  config.schedule = {"name": "constant"}
  config.lr = arg.lr
  config.grad_clip_norm = 5.0  # the paper's

  config.batch_size = 64  # global; divisible by the number of devices
  config.total_steps = 3000  # ~130 epochs of 1437 training digits
  config.log_every = 100
  config.checkpoint_every = 1000
  config.keep_checkpoints = 2

  if arg.runlocal:
    config.total_steps = 600
    config.log_every = 50
    config.checkpoint_every = 300
  return config
