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
from collections.abc import Callable
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
TEACHER_LABELS = "teacher_labels.npy"
TRAIN_COST_JSON = "train_cost.json"
METRICS_CSV = "eval_metrics.csv"
PREDICTIONS_PNG = "predictions.png"


# ----------------------------------------------------------------------------
# The trainer.
# ----------------------------------------------------------------------------


def _wall_config(config: ml_collections.ConfigDict) -> data.BrickWallConfig:
  return data.BrickWallConfig().resized(config.data.height, config.data.width)


def _dataset(config: ml_collections.ConfigDict, part: str) -> tuple[np.ndarray, np.ndarray]:
  """`(images [N, H, W, 3], labels [N, H, W])` for "train" or "eval".

  `config.data.name`: "bricks" (synthetic walls, the default) or "topomortar":
  training images with `config.data.label` labels from the `training_set`,
  evaluation on every test group (accurate labels), from the real dataset at
  `config.data.data_dir`, or from `topojax.data.synthetic_topomortar` when
  `data_dir` is empty.
  """
  if part != "train":
    split = load_test_split(config)
    return split.images, split.labels
  if config.data.get("name", "bricks") == "topomortar":
    options = {"label": config.data.label, "training_set": config.data.training_set,
               "size": config.data.size}
    if config.data.data_dir:
      loaded = data.load_topomortar(config.data.data_dir, split="train", **options)
    else:
      loaded = data.synthetic_topomortar("train", **options, seed=config.data.get("seed", 0))
    return loaded.images, loaded.labels
  return data.brick_walls(config.data.num_train, seed=config.data.train_seed,
                          config=_wall_config(config))


def _augment_config(config: ml_collections.ConfigDict) -> data.AugmentConfig | None:
  """The on-device augmentation (`config.augment` overrides TopoMortar's
  defaults), or None when `config.data.augment` is off."""
  if not config.data.get("augment", True):
    return None
  return data.AugmentConfig(**config.get("augment", {}))


@functools.partial(jax.jit, static_argnums=0)
def _foreground_prob(graphdef, state, images):
  """Module level, so every evaluation of one model shape reuses one compilation."""
  logits = nnx.merge(graphdef, state)(images)
  return jax.nn.softmax(logits, axis=-1)[..., 1]


def predict_foreground(model: nnx.Module, images: np.ndarray, *, mesh: jax.sharding.Mesh,
                       batch_size: int) -> np.ndarray:
  """Foreground probabilities (softmax channel 1) of `images`, in batches on `mesh`.

  Each batch is split over the mesh's "data" axis; the last one is padded with
  copies of its last image and the padding dropped. On a pod every process
  gets the whole result.

  Args:
    model: a segmentation model, `[B, H, W, C] -> [B, H, W, 2]` logits.
    images: `[N, H, W, C]` host images.
    mesh: the data-parallel mesh the model is replicated on.
    batch_size: images per call; a multiple of the devices on "data".

  Returns:
    `[N, H, W]` float32 probabilities.

  Raises:
    ValueError: a `batch_size` not divisible by the devices on "data".
  """
  sharding.check_batch_size(batch_size, mesh)
  images = np.asarray(images)
  probs = []
  with jax.set_mesh(mesh):
    graphdef, state = nnx.split(model)
    for start in range(0, len(images), batch_size):
      chunk = images[start:start + batch_size]
      padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk), 0)])
      out = _foreground_prob(graphdef, state, sharding.put_batch(padded, mesh))
      # Gathers every host's shards: on a pod no process holds the whole batch.
      probs.append(multihost_utils.process_allgather(out, tiled=True)[:len(chunk)])
  if not probs:
    return np.zeros((0,) + images.shape[1:3], np.float32)
  return np.concatenate(probs).astype(np.float32)


def load_test_split(config: ml_collections.ConfigDict) -> data.TopoMortarSplit:
  """The test images of a run's dataset, with ids and groups.

  `config.data.name` "topomortar": the real dataset at `config.data.data_dir`
  (every test group on disk; the loader logs the missing ones) or, with an
  empty `data_dir`, `topojax.data.synthetic_topomortar` with
  `config.data.seed`; both at `config.data.size`. "bricks": the trainer's
  held-out walls as one in-distribution group.
  """
  name = config.data.get("name", "bricks")
  if name == "topomortar":
    if config.data.get("data_dir", ""):
      return data.load_topomortar(config.data.data_dir, split="test", size=config.data.size)
    return data.synthetic_topomortar(split="test", size=config.data.size,
                                     seed=config.data.get("seed", 0))
  if name == "bricks":
    images, labels = data.brick_walls(config.data.num_eval, seed=config.data.eval_seed,
                                      config=_wall_config(config))
    ids = tuple(f"{i:03d}" for i in range(len(images)))
    return data.TopoMortarSplit(images, labels, ids, ("indistr",) * len(images))
  raise ValueError(f"`config.data.name` must be 'topomortar' or 'bricks', got {name!r}.")


def _teacher_labels(path: str, predict: Callable[[], np.ndarray]) -> np.ndarray:
  """The previous round's soft predictions, computed once and kept in `path`."""
  if os.path.exists(path):
    return np.load(path)
  labels = predict().astype(np.float32)
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp.npy"
    np.save(temporary, labels)
    os.replace(temporary, path)  # atomic: a killed run never leaves half a file
  return labels


def train(config: ml_collections.ConfigDict, workdir: str, *,
          devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Trains to `config.total_steps`, resuming from `workdir`'s latest checkpoint.

  With `config.distillation_rounds = R > 1` (self-distillation) training runs
  R rounds of `total_steps // R` steps in `workdir/round_<r>/`, each from
  freshly initialised weights and a new optimiser, on the previous round's
  soft predictions of the un-augmented training images (kept in
  `round_<r>/teacher_labels.npy`); the first round uses the labels. Every
  round resumes on its own, so a killed run loses no finished round.

  Writes `train_cost.json`: the median seconds per train step after
  compilation, the compile time and the compiled step's memory (XLA's memory
  analysis: arguments + outputs + temporaries), for the cost report.

  Args:
    config: an experiment config, e.g. `configs.bricks.get_config()`.
    workdir: output folder (`config.json`, `metrics.jsonl`, `checkpoints/`).
    devices: devices of the data-parallel mesh (default: all).

  Returns:
    A dict with `model` (the trained `nnx.Module`, replicated on the mesh),
    `mesh`, `start_step` (the step restored from in the last round, 0 for a
    fresh run), `step` (the final step) and `losses` (`[steps run]`, this
    call's training losses over all rounds).

  Raises:
    ValueError: a batch size not divisible by the number of devices.
    NonFiniteError: a NaN/Inf loss or gradient; names the step.
  """
  os.makedirs(workdir, exist_ok=True)
  MetricWriter(workdir).write_config(config.to_dict())

  # -------------------------------------------------------------------------
  # Mesh: one "data" axis; batches split over it, everything else replicated.
  # -------------------------------------------------------------------------
  mesh = sharding.make_data_mesh(devices)
  sharding.check_batch_size(config.batch_size, mesh)
  logging.info("Data-parallel mesh: %s", mesh)

  images, labels = _dataset(config, "train")
  rounds = config.get("distillation_rounds", 1)
  steps = config.total_steps // rounds
  if steps < 1:
    raise ValueError(f"`total_steps` ({config.total_steps}) must be at least "
                     f"`distillation_rounds` ({rounds}).")
  losses, timer = [], loop.StepTimer()
  for r in range(rounds):
    round_dir = workdir if rounds == 1 else os.path.join(workdir, f"round_{r}")
    if r:
      labels = _teacher_labels(
          os.path.join(round_dir, TEACHER_LABELS),
          lambda: predict_foreground(result["model"], images, mesh=mesh,
                                     batch_size=config.eval.batch_size))
      logging.info("Self-distillation round %d of %d.", r + 1, rounds)
    result = _train_round(config, round_dir, images, labels, steps=steps, mesh=mesh,
                          timer=timer)
    losses.append(result["losses"])
  if jax.process_index() == 0 and timer.seconds_per_step is not None:
    timer.write(os.path.join(workdir, TRAIN_COST_JSON), devices=mesh.size)
  return {**result, "losses": np.concatenate(losses)}


def _train_round(config: ml_collections.ConfigDict, workdir: str, images: np.ndarray,
                 labels: np.ndarray, *, steps: int, mesh: jax.sharding.Mesh,
                 timer: loop.StepTimer) -> dict[str, Any]:
  """`steps` steps from fresh weights (or `workdir`'s checkpoint) on `(images, labels)`."""
  os.makedirs(workdir, exist_ok=True)
  writer = MetricWriter(workdir)
  replicated = sharding.replicated(mesh)

  # -------------------------------------------------------------------------
  # Input: a Grain dataset indexed by step (batch t is a pure function of t,
  # so a resumed run sees exactly the batches of an uninterrupted one); each
  # host loads only its rows of the global batch. Augmentation runs on device
  # inside the train step.
  # -------------------------------------------------------------------------
  shard_index, shard_count = sharding.process_batch_shard(mesh)
  batches = data.batch_dataset(images, labels, batch_size=config.batch_size,
                               seed=config.seed, shard_index=shard_index,
                               shard_count=shard_count)

  def train_batch(step: int):
    return sharding.put_local_batch(batches[step], mesh)

  augment = _augment_config(config)
  augment_key = jax.random.key(config.seed)

  # -------------------------------------------------------------------------
  # Model and optimiser, built by name.
  # -------------------------------------------------------------------------
  model_settings = config.model.to_dict()
  model_cls = models.get_model(model_settings.pop("name"))
  schedule = make_schedule(config, total_steps=steps)
  tx = make_optimizer(config, schedule)
  loss_fn = make_loss(config.loss.to_dict(), config.loss_options.to_dict(),
                      config.loss_schedules.to_dict() if "loss_schedules" in config else None,
                      total_steps=steps)

  def create():
    model = model_cls(images.shape[-1], NUM_CLASSES, **model_settings,
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
    # Update step: augment -> per-example loss -> batch mean -> grads -> optax.
    # -----------------------------------------------------------------------
    def train_step(state, images, labels):
      model, optimizer = nnx.merge(graphdef, state)
      step = optimizer.step[...]
      lr = schedule(step)
      if augment is not None:
        images, labels = data.augment_batch(jax.random.fold_in(augment_key, step), images,
                                            labels, augment)

      def mean_loss(model):
        return jnp.mean(loss_fn(model(images), labels, step=step))

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
        timer.wrap(train_step), init_state, abstract_state, replicated, train_batch,
        checkpoint_dir=os.path.join(workdir, CHECKPOINT_DIR), config=config, writer=writer,
        total_steps=steps)
    if start_step < steps:
      timer.measure_memory(train_step, state, *train_batch(0))

  model, _ = nnx.merge(graphdef, state)
  return {
      "model": model,
      "mesh": mesh,
      "start_step": start_step,
      "step": max(start_step, steps),
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
  images, labels = _dataset(config, "eval")
  foreground = predict_foreground(model, images, mesh=mesh, batch_size=config.eval.batch_size)
  pred = (foreground > 0.5).astype(np.int32)  # the argmax of two classes

  # The Betti matching error (slow to compile) is left to experiments.evaluate.
  rows = report.summarize(report.segmentation_metrics(pred, labels, betti_matching=False))
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
