r"""Trains a topological autoencoder (Moor et al. 2020), then evaluates its latent space.

  python -m experiments.train_autoencoder --config configs/autoencoder.py:runlocal \
      --workdir workdirs/topoae_local

The same `--workdir` resumes from its latest checkpoint (a finished run just
evaluates again). The workdir receives `config.json`, `metrics.jsonl` (the
total loss and every term, `loss/<name>`, unweighted), `checkpoints/`,
`eval_metrics.csv` and `latents.png` (the held-out points' 2-D codes coloured
by label).

The trainer is the segmentation trainer's (`experiments.train`) with another
model and loss signature: the config names the losses
(`topojax.losses.make_autoencoder_loss`, a weighted sum as
`make_loss` but on `(x, z, x_hat)` and per batch, since the topological loss
compares the distances of the whole batch), the model
(`topojax.models.get_model`) and the data set; resume, NaN tripwire and
logging are `topojax.train.loop`'s. A batch is split over the "data" mesh like
any other; the topological loss's distance matrices then need the whole batch,
which XLA gathers.

Evaluation (held-out points, the model in eval mode):
  reconstruction           mean squared error of the reconstructions.
  topological_autoencoder  the topological loss (with the model's
                           `latent_norm`) on consecutive batches of
                           `config.eval.batch_size` held-out points (28,
                           the training batch size, by default); mean and
                           std over batches.
  mst_edges_preserved      per eval batch, the share of the edges of the
                           minimum spanning tree of the inputs (Euclidean)
                           that are also edges of the latent codes' MST: 1
                           when the codes keep every edge the topological loss
                           looks at (the original's logged
                           `matched_pairs_0D` / (B - 1)); mean over batches.
  kl_<sigma>               Moor et al.'s density KL divergence
                           $KL(p_X \,\|\, p_Z)$, lower is better: with distances
                           divided by their maximum,
                           $p(i) \propto \sum_j \exp(-d_{ij}^2 / \sigma)$ in
                           each space (the original's `density_kl_global`;
                           the paper reports KL_0.01, KL_0.1, KL_1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.spatial.distance import pdist
from scipy.spatial.distance import squareform

from experiments import _cli
from topojax import data
from topojax import models
from topojax._src import registry
from topojax.losses import topological_autoencoder_components
from topojax.losses import make_autoencoder_loss
from topojax.train import loop
from topojax.train import report
from topojax.train import sharding
from topojax.train.metric_writer import MetricWriter
from topojax.train.optim import apply_gradients
from topojax.train.optim import make_optimizer
from topojax.train.optim import make_schedule

CHECKPOINT_DIR = "checkpoints"
METRICS_CSV = "eval_metrics.csv"
LATENTS_PNG = "latents.png"

# Data set name -> loader returning `(points [N, D], labels [N])`.
DATASETS = {"spheres": data.spheres, "digits": data.digits}


def load_data(config: ml_collections.ConfigDict):
  """`((train_x, train_y), (test_x, test_y))` of `config.data`, standardised.

  `config.data` holds `name`, `split_seed`, `test_fraction` and the loader's
  keyword arguments (`topojax.data.spheres`'s `num_samples`, `dim`, ...).
  """
  settings = config.data.to_dict()
  loader = registry.lookup(DATASETS, settings.pop("name"), "data set")
  split_seed, test_fraction = settings.pop("split_seed"), settings.pop("test_fraction")
  points, labels = loader(**settings)
  return data.standardized_split(points, labels, test_fraction=test_fraction,
                                 seed=split_seed)


def _latent_norm(model: nnx.Module) -> jax.Array | float:
  """The model's learnable latent scale, or 1 for a model without one."""
  return model.latent_norm[...] if hasattr(model, "latent_norm") else 1.0


# ----------------------------------------------------------------------------
# The trainer.
# ----------------------------------------------------------------------------


def train(config: ml_collections.ConfigDict, workdir: str, *,
          devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Trains to `config.total_steps`, resuming from `workdir`'s latest checkpoint.

  Args:
    config: an experiment config, e.g. `configs.autoencoder.get_config()`.
    workdir: output folder (`config.json`, `metrics.jsonl`, `checkpoints/`).
    devices: devices of the data-parallel mesh (default: all).

  Returns:
    A dict with `model` (the trained `nnx.Module` in training mode,
    replicated on the mesh), `mesh`, `start_step` (0 for a fresh run), `step`
    (the final step) and `losses` (`[steps run]`, this call's total losses).

  Raises:
    ValueError: a batch size not divisible by the number of devices, an
      unknown data set, model or loss name.
    topojax.train.loop.NonFiniteError: a NaN/Inf loss or gradient; names
      the step.
  """
  os.makedirs(workdir, exist_ok=True)
  writer = MetricWriter(workdir)
  writer.write_config(config.to_dict())

  # -------------------------------------------------------------------------
  # Mesh: one "data" axis; batches split over it, everything else replicated.
  # -------------------------------------------------------------------------
  mesh = sharding.make_data_mesh(devices)
  sharding.check_batch_size(config.batch_size, mesh)
  replicated = sharding.replicated(mesh)

  # -------------------------------------------------------------------------
  # Input: batch t is a pure function of t (`sample_batch` on the points as
  # [N, 1, 1, D] "images", no augmentation), so a resumed run sees exactly
  # the batches of an uninterrupted one.
  # -------------------------------------------------------------------------
  (train_x, train_y), _ = load_data(config)

  def train_batch(step: int):
    points, _ = data.sample_batch(train_x[:, None, None, :], train_y[:, None, None],
                                  step=step, batch_size=config.batch_size,
                                  seed=config.seed, augment=False)
    return (sharding.put_batch(points[:, 0, 0, :], mesh),)

  # -------------------------------------------------------------------------
  # Model, optimiser and losses, built by name.
  # -------------------------------------------------------------------------
  model_settings = config.model.to_dict()
  model_cls = models.get_model(model_settings.pop("name"))
  schedule = make_schedule(config)
  tx = make_optimizer(config, schedule)
  loss_fn = make_autoencoder_loss(config.loss.to_dict(), config.loss_options.to_dict(),
                                  config.loss_schedules.to_dict(),
                                  total_steps=config.total_steps)

  def create():
    model = model_cls(train_x.shape[-1], **model_settings, rngs=nnx.Rngs(config.seed))
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

  with jax.set_mesh(mesh):
    graphdef, abstract_state = nnx.split(nnx.eval_shape(create))
    state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
    init_state = jax.jit(lambda: nnx.split(create())[1], out_shardings=state_sharding)

    # -----------------------------------------------------------------------
    # Update step: batch -> (codes, reconstructions) -> weighted loss terms ->
    # grads (the latent scale included) -> optax. BatchNorm statistics update
    # through the model's state.
    # -----------------------------------------------------------------------
    def train_step(state, x):
      model, optimizer = nnx.merge(graphdef, state)
      lr = schedule(optimizer.step[...])

      def objective(model):
        z, x_hat = model(x)
        return loss_fn(x, z, x_hat, latent_norm=_latent_norm(model),
                       step=optimizer.step[...])

      (loss, terms), grads = nnx.value_and_grad(objective, has_aux=True)(model)
      step_metrics = {
          **apply_gradients(model, optimizer, grads, loss, lr),
          **{f"loss/{name}": value for name, value in terms.items()},
          "latent_norm": jnp.asarray(_latent_norm(model), jnp.float32),
      }
      return nnx.state((model, optimizer)), step_metrics

    train_step = jax.jit(train_step, donate_argnums=0,
                         out_shardings=(state_sharding, replicated))

    # -----------------------------------------------------------------------
    # Checkpoint and loop (`topojax.train.loop`, as `experiments.train`).
    # -----------------------------------------------------------------------
    state, start_step, losses = loop.train_with_checkpoints(
        train_step, init_state, abstract_state, replicated, train_batch,
        checkpoint_dir=os.path.join(workdir, CHECKPOINT_DIR), config=config, writer=writer)

  model, _ = nnx.merge(graphdef, state)
  return {
      "model": model,
      "mesh": mesh,
      "start_step": start_step,
      "step": max(start_step, config.total_steps),
      "losses": losses,
  }


# ----------------------------------------------------------------------------
# Evals: the held-out split -> codes -> metrics table, CSV and latents.png.
# ----------------------------------------------------------------------------


def density_kl(x: np.ndarray, z: np.ndarray, sigma: float) -> float:
  r"""Moor et al.'s $KL_\sigma$ between the density estimates of `x` `[N, D]` and `z` `[N, d]`.

  Distances are Euclidean, divided by their maximum in each space; the density
  of point i is $\sum_j \exp(-d_{ij}^2 / \sigma)$, normalised to sum to 1
  over the points; the result is $\sum_i p_X(i) \log(p_X(i) / p_Z(i))$ (the
  original's `MeasureCalculator.density_kl_global`). O(N^2) memory.
  """
  def density(points):
    dist = squareform(pdist(np.asarray(points, np.float64)))
    dist /= max(dist.max(), np.finfo(np.float64).tiny)
    p = np.exp(-np.square(dist) / sigma).sum(axis=-1)
    return p / p.sum()
  p_x, p_z = density(x), density(z)
  return float(np.sum(p_x * (np.log(p_x) - np.log(p_z))))


def save_latent_scatter(path: str, z: np.ndarray, labels: np.ndarray, *,
                        title: str) -> None:
  """Scatter of the first two latent coordinates `z[:, :2]`, one colour per label.

  Up to 10 labels get tab10's colours, the next 10 tab20's light ones (so
  Spheres' enclosing sphere, label 10, is pale); the largest classes are drawn
  first, underneath.
  """
  fig = Figure(figsize=(5.5, 5), layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  palette = list(matplotlib.colormaps["tab10"].colors) + list(
      matplotlib.colormaps["tab20"].colors[1::2])
  z2 = z[:, :2] if z.shape[1] > 1 else np.concatenate([z, np.zeros_like(z)], axis=1)
  classes, counts = np.unique(labels, return_counts=True)
  for k in np.argsort(-counts, kind="stable"):
    mask = labels == classes[k]
    ax.scatter(z2[mask, 0], z2[mask, 1], s=4, alpha=0.8, linewidths=0,
               color=palette[k % len(palette)], label=str(classes[k]))
  if len(classes) <= len(palette):
    handles, names = ax.get_legend_handles_labels()
    order = np.argsort([int(n) for n in names])
    ax.legend([handles[i] for i in order], [names[i] for i in order], title="label",
              loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
              markerscale=3, frameon=False)
  ax.set_xlabel("z[0]")
  ax.set_ylabel("z[1]" if z.shape[1] > 1 else "")
  ax.set_title(title, fontsize=9)
  fig.savefig(path, dpi=110)


def evaluate(config: ml_collections.ConfigDict, workdir: str, model: nnx.Module, *,
             mesh: jax.sharding.Mesh, step: int) -> list[report.MetricSummary]:
  """Scores `model` on the held-out split; writes the report (process 0).

  Prints the metrics table and writes `eval_metrics.csv`, `latents.png` and
  an `eval/*` line in `metrics.jsonl`. The held-out points are replicated on
  the mesh (a few thousand points at most).
  """
  _, (test_x, test_y) = load_data(config)
  eval_model = nnx.merge(*nnx.split(model))  # a copy: `train`'s model stays in train mode
  eval_model.eval()  # BatchNorm uses its running averages
  graphdef, state = nnx.split(eval_model)
  batch_size = config.eval.batch_size
  num_batches = len(test_x) // batch_size
  if not 2 <= batch_size <= len(test_x):
    raise ValueError(
        f"`config.eval.batch_size` must be in [2, {len(test_x)}] (the held-out "
        f"points), got {batch_size}.")

  topo_options = config.loss_options.to_dict().get("topological_autoencoder", {})

  @jax.jit
  def encode_and_score(state, x):
    eval_model = nnx.merge(graphdef, state)
    z, x_hat = eval_model(x)
    batches = lambda a: a[:num_batches * batch_size].reshape(num_batches, batch_size, -1)
    x_batches, z_batches = batches(x), batches(z)
    parts = topological_autoencoder_components(
        x_batches, z_batches, latent_norm=_latent_norm(eval_model), **topo_options)
    topo = (parts.x_to_z + parts.z_to_x) / batch_size  # the loss, per batch
    shared = parts.matched_pairs
    return (z, jnp.mean(jnp.square(x_hat - x), axis=-1), topo,
            shared.astype(jnp.float32) / (batch_size - 1))

  with jax.set_mesh(mesh):
    with jax.transfer_guard("allow"):
      x_device = jax.device_put(test_x, sharding.replicated(mesh))
      z, squared_error, topo, mst_shared = jax.device_get(encode_and_score(state, x_device))
  per_item = {
      "reconstruction": squared_error,  # [N]: its mean is the MSE over all entries
      "topological_autoencoder": topo,  # [batches]
      "mst_edges_preserved": mst_shared,  # [batches]
  }
  for sigma in config.eval.density_sigmas:
    per_item[f"kl_{sigma:g}"] = np.array([density_kl(test_x, z, sigma)])
  rows = report.summarize(per_item)

  if jax.process_index() == 0:
    print(f"\nEvaluation at step {step} on {len(test_x)} held-out points "
          f"({config.data.name}):")
    print(report.format_table(rows))
    report.write_csv(os.path.join(workdir, METRICS_CSV), rows)
    losses = " + ".join(f"{w:g} {name}" for name, w in config.loss.items())
    save_latent_scatter(os.path.join(workdir, LATENTS_PNG), z, test_y,
                        title=f"{config.data.name}, held-out codes at step {step}\n{losses}")
  MetricWriter(workdir).write(step, {f"eval/{r.name}": r.mean for r in rows})
  return rows


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """`train`, then `evaluate`; a finished run in `workdir` is only evaluated.

  Returns:
    `train`'s dict plus `rows` (the `report.MetricSummary` rows) and `eval`
    (metric name -> mean).
  """
  result = train(config, workdir, devices=devices)
  rows = evaluate(config, workdir, result["model"], mesh=result["mesh"],
                  step=result["step"])
  return {**result, "rows": rows, "eval": {r.name: r.mean for r in rows}}


if __name__ == "__main__":
  _cli.run(train_and_evaluate, "configs/autoencoder.py:runlocal")
