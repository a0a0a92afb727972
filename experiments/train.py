r"""Trains a segmentation model on synthetic brick walls, then evaluates it.

  python -m experiments.train --config configs/bricks.py:runlocal \
      --workdir workdirs/bricks_local

The same `--workdir` resumes from its latest checkpoint (a finished run just
evaluates again). The workdir receives `config.json`, `metrics.jsonl`,
`checkpoints/`, `eval_metrics.csv` and `predictions.png`.

The trainer knows nothing about topology: the config names the losses
(`topojax.losses.make_loss`), the model (`topojax.models.get_model`) and the
optimiser, and the update step only ever sees a per-example loss `[B]`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from experiments import _cli
from topojax import data
from topojax import metrics
from topojax import models
from topojax.losses import make_loss
from topojax.train import loop
from topojax.train import report
from topojax.train import sharding
from topojax.train.loop import NonFiniteError  # noqa: F401 (re-exported)
from topojax.train.metric_writer import MetricWriter
from topojax.train.optim import apply_gradients
from topojax.train.optim import make_optimizer
from topojax.train.optim import make_schedule

NUM_CLASSES = 2  # background, mortar
CHECKPOINT_DIR = "checkpoints"
METRICS_CSV = "eval_metrics.csv"
PREDICTIONS_PNG = "predictions.png"


# ----------------------------------------------------------------------------
# Per-image metrics of the evals. (Optimiser, schedule, tripwire and the step
# loop live in `topojax.train.optim` and `topojax.train.loop`, shared with
# `experiments.train_autoencoder`.)
# ----------------------------------------------------------------------------


def _per_image_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
  betti = metrics.betti_errors(pred, gt)
  return {
      "dice": metrics.dice(pred, gt),
      "cldice": metrics.cldice(pred, gt),
      "betti0_error": betti[:, 0],
      "betti1_error": betti[:, 1],
      "hd95": metrics.hd95(pred, gt),
  }


# ----------------------------------------------------------------------------
# The trainer.
# ----------------------------------------------------------------------------


def _wall_config(config: ml_collections.ConfigDict) -> data.BrickWallConfig:
  return data.BrickWallConfig().resized(config.data.height, config.data.width)


def _dataset(config: ml_collections.ConfigDict, part: str) -> tuple[np.ndarray, np.ndarray]:
  """`(images [N, H, W, 3], labels [N, H, W])` for "train" or "eval".

  `config.data.name`: "bricks" (synthetic walls, the default) or "topomortar"
  (the real dataset at `config.data.data_dir`: training images with
  `config.data.label` labels from the `training_set`, evaluation on every test
  group present, accurate labels).
  """
  if config.data.get("name", "bricks") == "topomortar":
    split = "train" if part == "train" else "test"
    loaded = data.load_topomortar(
        config.data.data_dir, split=split,
        label=config.data.label if part == "train" else "accurate",
        training_set=config.data.training_set, size=config.data.size)
    return loaded.images, loaded.labels
  count, seed = ((config.data.num_train, config.data.train_seed) if part == "train"
                 else (config.data.num_eval, config.data.eval_seed))
  return data.brick_walls(count, seed=seed, config=_wall_config(config))


def train(config: ml_collections.ConfigDict, workdir: str, *,
          devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Trains to `config.total_steps`, resuming from `workdir`'s latest checkpoint.

  Args:
    config: an experiment config, e.g. `configs.bricks.get_config()`.
    workdir: output folder (`config.json`, `metrics.jsonl`, `checkpoints/`).
    devices: devices of the data-parallel mesh (default: all).

  Returns:
    A dict with `model` (the trained `nnx.Module`, replicated on the mesh),
    `mesh`, `start_step` (the step restored from, 0 for a fresh run), `step`
    (the final step) and `losses` (`[steps run]`, this call's training losses).

  Raises:
    ValueError: a batch size not divisible by the number of devices.
    NonFiniteError: a NaN/Inf loss or gradient; names the step.
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
  logging.info("Data-parallel mesh: %s", mesh)

  # -------------------------------------------------------------------------
  # Input: synthetic walls or TopoMortar in host memory; batch t is a pure function of t,
  # so a resumed run sees exactly the batches of an uninterrupted one.
  # -------------------------------------------------------------------------
  train_images, train_labels = _dataset(config, "train")

  def train_batch(step: int):
    batch = data.sample_batch(train_images, train_labels, step=step,
                              batch_size=config.batch_size, seed=config.seed,
                              augment=config.data.augment)
    return sharding.put_batch(batch, mesh)

  # -------------------------------------------------------------------------
  # Model and optimiser, built by name.
  # -------------------------------------------------------------------------
  model_settings = config.model.to_dict()
  model_cls = models.get_model(model_settings.pop("name"))
  schedule = make_schedule(config)
  tx = make_optimizer(config, schedule)
  loss_fn = make_loss(config.loss.to_dict(), config.loss_options.to_dict(),
                      config.loss_schedules.to_dict() if "loss_schedules" in config else None,
                      total_steps=config.total_steps)

  def create():
    model = model_cls(train_images.shape[-1], NUM_CLASSES, **model_settings,
                      rngs=nnx.Rngs(config.seed))
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

  with jax.set_mesh(mesh):
    # -----------------------------------------------------------------------
    # Shard / transfer: shapes first, then initialise straight into replicated
    # device memory (big_vision's eval_shape -> shardings -> jit(init)).
    # -----------------------------------------------------------------------
    graphdef, abstract_state = nnx.split(nnx.eval_shape(create))
    state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
    init_state = jax.jit(lambda: nnx.split(create())[1],
                         out_shardings=state_sharding)

    # -----------------------------------------------------------------------
    # Update step: per-example loss -> batch mean -> grads -> optax.
    # -----------------------------------------------------------------------
    def train_step(state, images, labels):
      model, optimizer = nnx.merge(graphdef, state)
      lr = schedule(optimizer.step[...])

      def mean_loss(model):
        return jnp.mean(loss_fn(model(images), labels, step=optimizer.step[...]))

      loss, grads = nnx.value_and_grad(mean_loss)(model)
      step_metrics = apply_gradients(model, optimizer, grads, loss, lr)
      return nnx.state((model, optimizer)), step_metrics

    train_step = jax.jit(train_step, donate_argnums=0,
                         out_shardings=(state_sharding, replicated))

    # -----------------------------------------------------------------------
    # Checkpoint and loop (`topojax.train.loop`): resume from the latest step
    # in this workdir, if any; NaN/Inf tripwire; metrics every `log_every`.
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
# Evals: held-out walls (another seed), argmax masks -> metrics table, CSV and
# a PNG of example predictions.
# ----------------------------------------------------------------------------


def evaluate(config: ml_collections.ConfigDict, workdir: str, model: nnx.Module, *,
             mesh: jax.sharding.Mesh, step: int) -> list[report.MetricSummary]:
  """Scores `model` on unseen walls (or TopoMortar's test images); writes the report.

  Prints the metrics table and writes `eval_metrics.csv`, `predictions.png`
  and an `eval/*` line in `metrics.jsonl` (process 0 only).
  """
  sharding.check_batch_size(config.eval.batch_size, mesh)
  images, labels = _dataset(config, "eval")
  with jax.set_mesh(mesh):
    graphdef, state = nnx.split(model)

    @functools.partial(jax.jit, out_shardings=sharding.batch_sharding(mesh))
    def foreground_prob(state, images):
      logits = nnx.merge(graphdef, state)(images)
      return jax.nn.softmax(logits, axis=-1)[..., 1]

    batch_size = config.eval.batch_size
    probs = []
    for start in range(0, len(images), batch_size):
      chunk = images[start:start + batch_size]
      padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk), 0)])
      out = foreground_prob(state, sharding.put_batch(padded, mesh))
      # Gathers every host's shards: on a pod no process holds the whole batch.
      probs.append(multihost_utils.process_allgather(out, tiled=True)[:len(chunk)])
  foreground = np.concatenate(probs)
  pred = (foreground > 0.5).astype(np.int32)  # the argmax of two classes

  rows = report.summarize(_per_image_metrics(pred, labels))
  if jax.process_index() == 0:
    print(f"\nEvaluation at step {step} on {len(images)} held-out walls:")
    print(report.format_table(rows))
    report.write_csv(os.path.join(workdir, METRICS_CSV), rows)
    report.save_prediction_grid(
        os.path.join(workdir, PREDICTIONS_PNG), images, labels, foreground,
        num_examples=config.eval.num_examples_plot,
        skeleton_iter=config.eval.skeleton_iter)
  MetricWriter(workdir).write(step, {f"eval/{r.name}": r.mean for r in rows})
  return rows


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """`train`, then `evaluate`; a finished run in `workdir` is only evaluated.

  Returns:
    `train`'s dict plus `rows` (the `report.MetricSummary` rows) and `eval`
    (metric name -> mean over the eval images).
  """
  result = train(config, workdir, devices=devices)
  rows = evaluate(config, workdir, result["model"], mesh=result["mesh"],
                  step=result["step"])
  return {**result, "rows": rows, "eval": {r.name: r.mean for r in rows}}


if __name__ == "__main__":
  _cli.run(train_and_evaluate, "configs/bricks.py:runlocal")
