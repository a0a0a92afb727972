r"""TopoMortar (Valverde et al., BMVC 2025): one config for every loss, label type,
training set and framework, on the built-in synthetic TopoMortar or the real
images.

The reduced protocol on a laptop CPU (synthetic data at 64 x 64, the small
UNet, 150 steps per run; all nine losses x {accurate, noisy} labels, seed 0;
then the report):

  python -m experiments.sweep --config configs/topomortar.py:runlocal

The same on the real images (only the groups found on disk are evaluated):

  python -m experiments.sweep --config configs/topomortar.py:runlocal,data_dir=../shared/data/topomortar

One run:

  python -m experiments.train --config configs/topomortar.py:runlocal,loss=cldice,label=noisy \
      --workdir workdirs/topomortar_cldice

The full protocol (512 x 512, TopoMortar's SGD + poly schedule, 12 000 steps of
batch 10; `sweep` lists TopoMortar's study cases with 10 seeds; for a GPU or
a TPU pod, see tpu/README.md):

  python -m experiments.sweep --config configs/topomortar.py:data_dir=/path/to/TopoMortar/dataset --print_commands

Arguments after `:` (comma-separated, see `configs.common.parse_arg`):
  data_dir=PATH            the real dataset folder (`train/`, `val/`, `test/`,
                             `splits.yaml`, `dataset_types.txt`); empty (the
                             default) uses `topojax.data.synthetic_topomortar`,
                             the same splits, label types and test groups.
  loss=NAME                TopoMortar's losses with its weights and schedules
                             (`configs.bricks.LOSS_PRESETS`): cedice (default),
                             rwloss, topoloss, topo, cldice, warping,
                             skelrecall, cbdice, bettimatching.
  label=accurate|noisy|pseudo
                           training labels (the test set is always accurate).
  training_set=large|small 50 or 10 training images.
  framework=supervised|randhue|selfdistillation
                           randhue: hue jitter with probability 0.5 on top of
                             the augmentation; selfdistillation: 3 rounds
                             of total_steps / 3, each from reset weights on
                             the previous round's soft predictions.
  seed=0                   model initialisation, batch order, augmentation.
  size=512                 images and labels resized to size x size.
  runlocal                 size 64, the small UNet, 150 steps.
  optimizer=, schedule=    as in `configs/bricks.py`.
"""

from __future__ import annotations

import itertools

import ml_collections

from configs import bricks
from configs.common import parse_arg

LOSSES = ("cedice", "rwloss", "topoloss", "topo", "cldice", "warping", "skelrecall",
          "cbdice", "bettimatching")
LABELS = ("accurate", "noisy", "pseudo")
TRAINING_SETS = ("large", "small")
FRAMEWORKS = ("supervised", "randhue", "selfdistillation")
DISTILLATION_ROUNDS = 3  # TopoMortar: 3 rounds x 4000 iterations


def _arg(arg: str | None) -> ml_collections.ConfigDict:
  return parse_arg(arg, runlocal=False, data_dir="", loss="cedice", label="accurate",
                   training_set="large", framework="supervised", seed=0, size=512,
                   optimizer="sgd", schedule="poly")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config; `arg` is the text after `:` on the command line."""
  arg = _arg(arg)
  for what, value, allowed in (("loss", arg.loss, LOSSES), ("label", arg.label, LABELS),
                               ("training_set", arg.training_set, TRAINING_SETS),
                               ("framework", arg.framework, FRAMEWORKS)):
    if value not in allowed:
      raise ValueError(f"Unknown {what} {value!r}; choose one of {list(allowed)}.")
  base = ",".join(f"{key}={arg[key]}" for key in ("loss", "optimizer", "schedule"))
  config = bricks.get_config(base + (",runlocal" if arg.runlocal else ""))
  config.seed = arg.seed
  # What the report groups runs by; one name per concept with the arguments.
  config.setting = {key: arg[key] for key in ("loss", "label", "training_set", "framework",
                                              "seed")}
  config.data = {
      "name": "topomortar", "data_dir": arg.data_dir, "label": arg.label,
      "training_set": arg.training_set, "size": 64 if arg.runlocal else arg.size,
      "seed": 0,  # the synthetic dataset's seed: the same walls for every run
  }
  # `topojax.data.AugmentConfig` overrides; the defaults are TopoMortar's
  # nnU-Net-like set, `randhue` adds its hue jitter.
  config.augment = {"hue_probability": 0.5} if arg.framework == "randhue" else {}
  config.distillation_rounds = DISTILLATION_ROUNDS if arg.framework == "selfdistillation" else 1
  if not arg.runlocal:
    config.batch_size = 10
    config.total_steps = 12_000
    config.checkpoint_every = 1_200
    config.eval.batch_size = 10
  return config


def sweep(arg: str | None = None) -> list[dict[str, object]]:
  """The runs of the protocol, as `get_config` overrides (`experiments.sweep`).

  `runlocal`: the reduced protocol, every loss x {accurate, noisy} labels,
  large training set, supervised, seed 0 (18 runs). Otherwise TopoMortar's
  study cases, each for every loss and seeds 0-9: accurate labels on the large
  and the small training set, noisy and pseudo labels, randhue, and
  self-distillation on noisy labels (600 runs).
  """
  arg = _arg(arg)
  if arg.runlocal:
    cases = [("accurate", "large", "supervised"), ("noisy", "large", "supervised")]
    seeds = (0,)
  else:
    cases = [("accurate", "large", "supervised"), ("accurate", "small", "supervised"),
             ("noisy", "large", "supervised"), ("pseudo", "large", "supervised"),
             ("accurate", "large", "randhue"), ("noisy", "large", "selfdistillation")]
    seeds = tuple(range(10))
  return [{"loss": loss, "label": label, "training_set": training_set,
           "framework": framework, "seed": seed}
          for (label, training_set, framework), seed, loss in itertools.product(cases, seeds,
                                                                               LOSSES)]
