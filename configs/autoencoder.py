r"""Topological autoencoder (Moor et al., ICML 2020) on Spheres, 2-D latent space.

The laptop/CI run (the paper's Spheres data, its MLP autoencoder, 1000 Adam
steps of batch 28, about 3 epochs):

  python -m experiments.train_autoencoder --config configs/autoencoder.py:runlocal \
      --workdir workdirs/topoae_local

  Runtime: ~12 s on 2 CPU cores (one CPU device); rerunning the same command
  restores step 1000 and only evaluates (~5 s). Expected table on the 1000
  held-out points (deterministic on one CPU device):

    metric                     mean     std     n
    reconstruction           0.9729  0.7368  1000
    topological_autoencoder  0.2831  0.0581    35
    mst_edges_preserved      0.2074  0.0595    35
    kl_0.01                  0.2228  0.0000     1
    kl_0.1                   0.4263  0.0000     1
    kl_1                     0.0092  0.0000     1

  With `runlocal,loss=reconstruction` (a plain autoencoder, ~9 s):
  reconstruction 0.94, topological loss 3.18, MST edges preserved 0.22,
  KL_0.01 0.46, KL_0.1 0.61, KL_1 0.013. In `latents.png` the plain
  autoencoder places most small spheres outside the large one; with the
  topological term the large sphere encloses them, as in the paper. The
  metrics are described in `experiments/train_autoencoder.py`. Outputs: the
  table on stdout and in `eval_metrics.csv`, training curves (total loss and
  each term) in `metrics.jsonl`, `config.json`, `checkpoints/`, `latents.png`.

The full run (the original's 100 epochs of the 9000 training points, 32200
steps):

  python -m experiments.train_autoencoder --config configs/autoencoder.py \
      --workdir workdirs/topoae

  Runtime: ~60 s on 2 CPU cores (one CPU device). Held-out: reconstruction
  0.885, topological loss 0.217, MST edges preserved 0.23, KL_0.01 0.071,
  KL_0.1 0.297, KL_1 0.0061; `latents.png` shows the ten small spheres as tight
  clusters in the middle of the enclosing sphere's disc of points.

Arguments after `:` (comma-separated, see `configs.common.parse_arg`):
  runlocal                 the small variant above.
  loss=topological_autoencoder|reconstruction
                           topological_autoencoder: reconstruction MSE +
                             lam * the topological autoencoder loss (default);
                           reconstruction: a plain autoencoder, the baseline.
  lam=0.43                 the weight of the topological term (the original's
                             tuned value for Spheres).
  data=spheres|digits      spheres: the paper's synthetic data (default);
                           digits: scikit-learn's 8 x 8 digits (1797 points;
                             needs scikit-learn, no download).

Any field can be overridden, e.g. `--config.total_steps=1000
--config.loss.topological_autoencoder=1.0 --config.model.hidden='(64, 64)'`.
The same `--workdir` resumes from its latest checkpoint; a finished run just
evaluates.

Settings from the original (BorgwardtLab/topological-autoencoders,
`experiments/train_model/best_runs/Spheres/TopoRegEdgeSymmetric.json` and
`src/models/submodules.py`, `MLPAutoencoder_Spheres`): batch 28, lam 0.43,
Adam with L2 weight decay 1e-5, the 101 -> 32 -> 32 -> 2 MLP with BatchNorm,
10 % of the points held out with seed 42 and standardised. It tuned the
learning rate to 2.7e-4 for 100 epochs; the short runs here use 1e-3.
"""

from __future__ import annotations

import ml_collections

from configs.common import parse_arg

# Preset name -> loss names, as `topojax.losses` (the registry's
# `AUTOENCODER_LOSSES`) calls them; the topological term is weighted by `lam`.
LOSS_PRESETS = ("topological_autoencoder", "reconstruction")

# Data set name -> its settings; `experiments.train_autoencoder.load_data` reads them.
DATA_PRESETS = {
    # Moor et al.'s Spheres: 10 spheres of radius 5 in R^101 (500 points each)
    # inside one of radius 25 (5000 points).
    "spheres": {"name": "spheres", "num_samples": 500, "dim": 100, "radius": 5.0,
                "seed": 42},
    "digits": {"name": "digits"},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config; `arg` is the text after `:` on the command line."""
  arg = parse_arg(arg, runlocal=False, loss="topological_autoencoder", lam=0.43,
                  data="spheres")
  if arg.loss not in LOSS_PRESETS:
    raise ValueError(f"Unknown loss {arg.loss!r}; choose one of {sorted(LOSS_PRESETS)}.")
  if arg.data not in DATA_PRESETS:
    raise ValueError(f"Unknown data {arg.data!r}; choose one of {sorted(DATA_PRESETS)}.")
  config = ml_collections.ConfigDict()
  config.seed = 0  # model init and batch order

  # The split is the original's: 10 % held out with seed 42, standardised
  # with the training statistics.
  config.data = {**DATA_PRESETS[arg.data], "split_seed": 42, "test_fraction": 0.1}

  # A plain autoencoder has no latent scale to learn (the original's Vanilla model).
  config.model = {"name": "mlp_autoencoder", "hidden": (32, 32), "latent_dim": 2,
                  "batch_norm": True,
                  "learn_latent_norm": arg.loss == "topological_autoencoder"}

  config.loss = {"reconstruction": 1.0}
  if arg.loss == "topological_autoencoder":
    config.loss.topological_autoencoder = arg.lam
  config.loss_options = {}  # e.g. {"topological_autoencoder": {"x_scale": "max"}}
  config.loss_schedules = {}

  config.optimizer = {"name": "adam", "b1": 0.9, "b2": 0.999, "weight_decay": 1e-5}
  config.schedule = {"name": "constant"}
  config.lr = 1e-3
  config.grad_clip_norm = 0.0  # the original does not clip

  config.batch_size = 28  # global; divisible by the number of devices
  config.total_steps = 32_200  # 100 epochs of 9000 points
  config.log_every = 100
  config.checkpoint_every = 2000
  config.keep_checkpoints = 2

  # Evals on the held-out points: the topological loss averaged over batches of
  # `batch_size` (the last partial batch dropped), the rest on all of them.
  config.eval = {"batch_size": 28, "density_sigmas": (0.01, 0.1, 1.0)}

  if arg.runlocal:  # ~3 epochs
    config.total_steps = 1000
    config.log_every = 50
    config.checkpoint_every = 500
  return config
