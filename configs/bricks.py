r"""Mortar segmentation of synthetic brick walls (TopoMortar-like) with a UNet.

The laptop/CI run (64 x 64 walls, 3-level UNet, 150 SGD steps of batch 8):

  python -m experiments.train --config configs/bricks.py:runlocal \
      --workdir workdirs/bricks_local

  Runtime: ~40-60 s on 2 CPU cores, of which ~15 s is JIT compilation and
  ~5 s evaluation; rerunning the same command restores step 150 and only
  evaluates (~4 s). Expected table on 32 held-out walls (deterministic on
  CPU; predicting mortar everywhere would give Dice ~0.47):

    metric          mean     std   n
    dice          0.9799  0.0125  32
    cldice        0.9921  0.0076  32
    betti0_error  0.7188  1.0964  32
    betti1_error  2.0625  3.3721  32
    hd95          0.1250  0.3307  32

  (Augmentation: TopoMortar's nnU-Net-style set on the device,
  `topojax.data.augment_batch`; `--config.data.augment=False` turns it off.)

  Any loss preset runs the same way, e.g. `runlocal,loss=cldice`. Outputs: the table on stdout and in `eval_metrics.csv`, training
  curves in `metrics.jsonl`, `config.json`, `checkpoints/`, and
  `predictions.png` (image, ground truth, prediction, soft skeletons).

The full run (for a GPU; 128 x 128 walls, 4-level UNet, 5000 SGD steps of
batch 32; not timed here):

  python -m experiments.train --config configs/bricks.py \
      --workdir workdirs/bricks

Arguments after `:` (comma-separated, see `configs.common.parse_arg`):
  runlocal                 the small variant above.
  loss=cedice|cldice|dice_cldice|bettimatching|topoloss|topo|skelrecall|cbdice|warping|
       rwloss
                           cedice: CE + Dice with background (TopoMortar's
                             baseline, the default);
                           cldice: TopoMortar's "clDice",
                             0.5 Dice(with background) + 0.5 clDice(K=3);
                           dice_cldice: the clDice paper's soft_dice_cldice;
                           bettimatching: Dice + 0.5 Betti matching, the
                             latter on in the last 30 % of steps
                             (`config.loss_schedules`);
                           topoloss: CE + 100 TopoLoss (50x50 patches), the
                             latter on in the last 30 % of steps;
                           topo: TopoMortar's TOPO (`topo_malis` alone, on
                             the logit difference, see its docstring);
                           skelrecall: CE + 1 Skeleton Recall (no Dice);
                           cbdice: 0.5 CE + 0.25 Dice + 0.25 cbDice;
                           warping: Dice + 0.1 Warping, the latter on in the
                             last 30 % of steps;
                           rwloss: TopoMortar's RWLoss (region-wise loss
                             with the rectified map), alone.
  optimizer=sgd|adam|adamw sgd: Nesterov momentum 0.99 as TopoMortar (default).
  schedule=poly|warmup_cosine|constant
                           poly: lr (1 - t/T)^0.9 as TopoMortar (default).

Any field can be overridden, e.g. `--config.total_steps=300
--config.loss.dice=0.5 --config.model.features='(8, 16, 32)'`. The same
`--workdir` resumes from its latest checkpoint; a finished run just evaluates.
"""

from __future__ import annotations

import ml_collections

from configs.common import parse_arg

# name -> (loss weights, per-loss options), the names of `topojax.losses`.
LOSS_PRESETS = {
    "cedice": ({"cross_entropy": 1.0, "dice": 1.0},
               {"dice": {"include_background": True}}),
    "cldice": ({"dice": 0.5, "cldice": 0.5},
               {"dice": {"include_background": True}, "cldice": {"num_iter": 3}}),
    "dice_cldice": ({"dice_cldice": 1.0},
                    {"dice_cldice": {"alpha": 0.5, "num_iter": 3}}),
    # Stucki et al.'s 2D setting: Dice + 0.5 Betti matching (superlevel, union).
    "bettimatching": ({"dice": 1.0, "betti_matching": 0.5},
                       {"dice": {"include_background": True}}),
    # TopoMortar's TopoLoss weights: CE + 100 TopoLoss on 50x50 patches, on
    # the foreground's holes (the bricks, the paper's dimension 1); TopoMortar's
    # port pairs dimension 0 of its background channel (`dims: (0,)` on the
    # foreground replicates the reference code's selection).
    "topoloss": ({"cross_entropy": 1.0, "topoloss": 100.0},
                 {"topoloss": {"patch_size": 50}}),
    # TopoMortar's TOPO: distance-map regression + windowed MALIS, alone.
    "topo": ({"topo_malis": 1.0}, {}),
    # TopoMortar's Skeleton Recall: CE + 1 recall of the label's tubed
    # skeleton (computed on device), no Dice.
    "skelrecall": ({"cross_entropy": 1.0, "skeleton_recall": 1.0}, {}),
    # TopoMortar's cbDice: 0.5 CE + 0.25 Dice + 0.25 cbDice (alpha = beta = 1).
    "cbdice": ({"cross_entropy": 0.5, "dice": 0.25, "cbdice": 0.25},
               {"dice": {"include_background": True}}),
    # TopoMortar's Warping: Dice + 0.1 CE on the critical pixels, the latter
    # in the last 30 % of steps.
    "warping": ({"dice": 1.0, "warping": 0.1}, {"dice": {"include_background": True}}),
    # TopoMortar's RWLoss: the region-wise loss with the rectified region-wise
    # map (ratio [1, 1], i.e. `outside=1`), alone, no CE or Dice.
    "rwloss": ({"rwloss": 1.0}, {}),
}

# loss name -> `topojax.losses.weight_schedule` arguments, per preset: the
# topology terms TopoMortar turns on late run only in the last 30 % of steps.
LOSS_SCHEDULES = {
    "bettimatching": {"betti_matching": {"name": "step", "start_fraction": 0.7}},
    "topoloss": {"topoloss": {"name": "step", "start_fraction": 0.7}},
    "warping": {"warping": {"name": "step", "start_fraction": 0.7}},
}

# name -> optax optimiser settings; `experiments.train` reads `name`,
# `weight_decay` and passes the rest to the optax constructor.
OPTIMIZER_PRESETS = {
    "sgd": {"name": "sgd", "momentum": 0.99, "nesterov": True, "weight_decay": 3e-5},
    "adam": {"name": "adam", "b1": 0.9, "b2": 0.999, "weight_decay": 0.0},
    "adamw": {"name": "adamw", "b1": 0.9, "b2": 0.999, "weight_decay": 1e-4},
}
# Peak learning rates that work with each optimiser on this task.
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3}

SCHEDULE_PRESETS = {
    "poly": {"name": "poly", "power": 0.9},
    "warmup_cosine": {"name": "warmup_cosine", "warmup_steps": 100, "end_fraction": 0.01},
    "constant": {"name": "constant"},
}


def _choose(presets, name, what):
  if name not in presets:
    raise ValueError(f"Unknown {what} {name!r}; choose one of {sorted(presets)}.")
  return presets[name]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config; `arg` is the text after `:` on the command line."""
  arg = parse_arg(arg, runlocal=False, loss="cedice", optimizer="sgd",
                  schedule="poly")
  config = ml_collections.ConfigDict()
  config.seed = 0  # model init and batch order/augmentation

  # Synthetic walls; eval walls use another seed, so they are unseen.
  config.data = {
      "height": 128, "width": 128,
      "num_train": 512, "train_seed": 0,
      "num_eval": 64, "eval_seed": 1,
      "augment": True,
  }

  config.model = {"name": "unet", "features": (32, 64, 128, 256)}

  loss_weights, loss_options = _choose(LOSS_PRESETS, arg.loss, "loss")
  config.loss = loss_weights
  config.loss_options = loss_options
  config.loss_schedules = LOSS_SCHEDULES.get(arg.loss, {})

  config.optimizer = _choose(OPTIMIZER_PRESETS, arg.optimizer, "optimizer")
  config.schedule = _choose(SCHEDULE_PRESETS, arg.schedule, "schedule")
  config.lr = DEFAULT_LR[arg.optimizer]
  config.grad_clip_norm = 12.0  # nnU-Net's clipping, 0 disables

  config.batch_size = 32  # global; divisible by the number of devices
  config.total_steps = 5000
  config.log_every = 50
  config.checkpoint_every = 500
  config.keep_checkpoints = 2

  config.eval = {"batch_size": 32, "num_examples_plot": 4, "skeleton_iter": 10}

  if arg.runlocal:
    config.data.height = config.data.width = 64
    config.data.num_train = 128
    config.data.num_eval = 32
    config.model.features = (16, 32, 64)
    config.batch_size = 8
    config.total_steps = 150
    config.log_every = 10
    config.checkpoint_every = 50
    config.eval.batch_size = 16
    if "warmup_steps" in config.schedule:
      config.schedule.warmup_steps = 10
  return config
