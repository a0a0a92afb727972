r"""TopoMortar (Valverde et al., BMVC 2025) with the real images: one config, any loss.

The laptop/CI run (images downscaled to 64 x 64, the small UNet, 150 steps):

  python -m experiments.train --config configs/topomortar.py:runlocal,data_dir=../shared/data/topomortar \
      --workdir workdirs/topomortar_local

  Runtime: ~28 s on 2 CPU cores (first run; it caches the decoded 64 x 64
  arrays under ~/.cache/topojax). Held-out in-distribution test set (50
  images, the only group in ../shared/data; the loader logs the six missing
  ones): Dice 0.85, clDice 0.87, Betti0 error 23.8, Betti1 error 10.2, HD95
  1.34 (CE + Dice, SGD, 150 steps).

The full-resolution protocol (512 x 512, TopoMortar's SGD + poly schedule):

  python -m experiments.train --config configs/topomortar.py:data_dir=/path/to/TopoMortar/dataset,loss=cldice \
      --workdir workdirs/topomortar_cldice

Arguments after `:` (comma-separated, see `configs.common.parse_arg`):
  data_dir=PATH            the dataset folder (`train/`, `val/`, `test/`,
                             `splits.yaml`, `dataset_types.txt`); required.
  loss=NAME                one of `configs.bricks.LOSS_PRESETS` (TopoMortar's
                             weights and schedules): cedice (default), rwloss,
                             topoloss, topo, cldice, dice_cldice, warping,
                             skelrecall, cbdice, betti_matching.
  label=accurate|noisy|pseudo
                           training labels (the test set is always accurate).
  training_set=large|small 50 or 10 training images.
  size=512                 images and labels resized to size x size.
  runlocal                 size 64, the small UNet, 150 steps.
  optimizer=, schedule=    as in `configs/bricks.py`.

Evaluation runs on every test group found on disk (the loader logs which of
the seven are present).
"""

from __future__ import annotations

import ml_collections

from configs import bricks
from configs.common import parse_arg

LABELS = ("accurate", "noisy", "pseudo")
TRAINING_SETS = ("large", "small")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config; `arg` is the text after `:` on the command line."""
  arg = parse_arg(arg, runlocal=False, data_dir="", loss="cedice", label="accurate",
                  training_set="large", size=512, optimizer="sgd", schedule="poly")
  if not arg.data_dir:
    raise ValueError("`data_dir=` is required: the TopoMortar dataset folder.")
  for what, value, allowed in (("label", arg.label, LABELS),
                               ("training_set", arg.training_set, TRAINING_SETS)):
    if value not in allowed:
      raise ValueError(f"Unknown {what} {value!r}; choose one of {list(allowed)}.")
  base = ",".join(f"{key}={arg[key]}" for key in ("loss", "optimizer", "schedule"))
  config = bricks.get_config(base + (",runlocal" if arg.runlocal else ""))
  config.data = {
      "name": "topomortar", "data_dir": arg.data_dir, "label": arg.label,
      "training_set": arg.training_set, "size": 64 if arg.runlocal else arg.size,
      "augment": True,
  }
  return config
