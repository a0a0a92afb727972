r"""Trains a DECT classifier (Röell and Rieck, ICLR 2024) on digits or 3-D shapes.

  python -m experiments.train_ect --config configs/ect_digits.py:runlocal \
      --workdir workdirs/ect_digits_local

The same `--workdir` resumes from its latest checkpoint (a finished run just
evaluates again). The workdir receives `config.json`, `metrics.jsonl` (loss,
batch accuracy, the learned scale, grad norm), `checkpoints/`,
`eval_metrics.csv` (test accuracy and cross-entropy) and `ect.png` (the
learned ECT images of one test example per class, and the learned directions
of 2-D data).

The model is `topojax.models.ECTClassifier` (an `ECTLayer` with learnable
directions and scale, then the paper's small CNN); the loop (resume, NaN
tripwire, logging, checkpoints) is `topojax.train.loop`'s, the optimiser
`topojax.train.optim`'s, as in `experiments.train_autoencoder`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments import _cli
from topojax import data
from topojax import models
from topojax.train import loop
from topojax.train import report
from topojax.train import sharding
from topojax.train.metric_writer import MetricWriter
from topojax.train.optim import apply_gradients
from topojax.train.optim import make_optimizer
from topojax.train.optim import make_schedule

CHECKPOINT_DIR = "checkpoints"
METRICS_CSV = "eval_metrics.csv"
ECT_PNG = "ect.png"

Batch = dict[str, np.ndarray]


def _load(settings: dict[str, Any]) -> tuple[Batch, np.ndarray, int, Sequence[str]]:
  """`(inputs, labels, dim, class_names)` of the whole data set `settings`."""
  name = settings.pop("name")
  if name == "digits":
    kind = settings.pop("input")
    names = [str(k) for k in range(10)]
    if kind == "image":
      images, labels = data.digits_images()
      return {"x": images}, labels, 2, names
    if kind not in ("points", "graph"):
      raise ValueError(f"Unknown digits input {kind!r}; known: points, graph, image.")
    out = data.digits_point_clouds(edges=kind == "graph", **settings)
    inputs = {"x": out[0], "point_mask": out[1]}
    if kind == "graph":
      inputs["edges"] = out[2]
    return inputs, out[-1], 2, names
  if name == "shapes":
    points, mask, labels = data.shapes_point_clouds(**settings)
    return {"x": points, "point_mask": mask}, labels, 3, list(data.SHAPE_CLASSES)
  raise ValueError(f"Unknown data set {name!r}; known: digits, shapes.")


def load_data(config: ml_collections.ConfigDict):
  """`((train_inputs, train_labels), (test_inputs, test_labels), dim, class_names)`.

  Inputs are dicts of arrays with a leading example axis: `x` (points
  `[N, P, d]` or images `[N, H, W]`) and, for point clouds, `point_mask`
  (and `edges` for graphs). The split holds out `test_fraction` of the
  examples, a permutation seeded by `split_seed`.
  """
  settings = config.data.to_dict()
  split_seed, test_fraction = settings.pop("split_seed"), settings.pop("test_fraction")
  inputs, labels, dim, names = _load(settings)
  n = len(labels)
  order = np.random.default_rng(split_seed).permutation(n)
  num_test = int(np.ceil(test_fraction * n))
  test, train = order[:num_test], order[num_test:]
  take = lambda idx: ({k: v[idx] for k, v in inputs.items()}, labels[idx])
  return take(train), take(test), dim, names


def _apply(model: nnx.Module, inputs: Batch) -> jax.Array:
  simplices = (inputs["edges"],) if "edges" in inputs else ()
  return model(inputs["x"], *simplices, point_mask=inputs.get("point_mask"))


def _scale(model: nnx.Module) -> jax.Array:
  scale = model.ect.current_scale()
  return jnp.asarray(jnp.nan if scale is None else scale, jnp.float32)


# ----------------------------------------------------------------------------
# The trainer.
# ----------------------------------------------------------------------------


def train(config: ml_collections.ConfigDict, workdir: str, *,
          devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Trains to `config.total_steps`, resuming from `workdir`'s latest checkpoint.

  Returns:
    A dict with `model`, `mesh`, `start_step`, `step` and `losses` (this
    call's training losses), as `experiments.train_autoencoder.train`.
  """
  os.makedirs(workdir, exist_ok=True)
  writer = MetricWriter(workdir)
  writer.write_config(config.to_dict())
  mesh = sharding.make_data_mesh(devices)
  sharding.check_batch_size(config.batch_size, mesh)
  replicated = sharding.replicated(mesh)

  (train_inputs, train_y), _, dim, names = load_data(config)
  n = len(train_y)
  index_images, index_labels = np.arange(n).reshape(n, 1, 1, 1), np.zeros((n, 1, 1), np.int32)

  def train_batch(step: int):
    # `sample_batch` on the example indices: epoch permutations keyed by
    # (seed, epoch), so batch t is a pure function of t (resume-exact).
    index, _ = data.sample_batch(index_images, index_labels, step=step,
                                 batch_size=config.batch_size, seed=config.seed,
                                 augment=False)
    index = index.reshape(-1).astype(np.int64)
    return sharding.put_batch(({k: v[index] for k, v in train_inputs.items()},
                               train_y[index]), mesh)

  model_settings = config.model.to_dict()
  model_cls = models.get_model(model_settings.pop("name"))
  schedule = make_schedule(config)
  tx = make_optimizer(config, schedule)

  def create():
    model = model_cls(dim, len(names), **model_settings, rngs=nnx.Rngs(config.seed))
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

  with jax.set_mesh(mesh):
    graphdef, abstract_state = nnx.split(nnx.eval_shape(create))
    state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
    init_state = jax.jit(lambda: nnx.split(create())[1], out_shardings=state_sharding)

    def train_step(state, inputs, labels):
      model, optimizer = nnx.merge(graphdef, state)
      lr = schedule(optimizer.step[...])

      def objective(model):
        logits = _apply(model, inputs)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, logits

      (loss, logits), grads = nnx.value_and_grad(objective, has_aux=True)(model)
      accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
      step_metrics = {**apply_gradients(model, optimizer, grads, loss, lr),
                      "accuracy": accuracy, "scale": _scale(model)}
      return nnx.state((model, optimizer)), step_metrics

    train_step = jax.jit(train_step, donate_argnums=0,
                         out_shardings=(state_sharding, replicated))
    state, start_step, losses = loop.train_with_checkpoints(
        train_step, init_state, abstract_state, replicated, train_batch,
        checkpoint_dir=os.path.join(workdir, CHECKPOINT_DIR), config=config, writer=writer)

  model, _ = nnx.merge(graphdef, state)
  return {"model": model, "mesh": mesh, "start_step": start_step,
          "step": max(start_step, config.total_steps), "losses": losses}


# ----------------------------------------------------------------------------
# Evals: test accuracy, the table, CSV and ect.png.
# ----------------------------------------------------------------------------


def save_ect_plot(path: str, curves: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                  names: Sequence[str], directions: np.ndarray, *, title: str) -> None:
  """One learned ECT image `[D, T]` per class (the first test example of it),
  with true and predicted class; for 2-D data, a last panel with the learned
  directions on the unit circle."""
  classes = [c for c in range(len(names)) if np.any(labels == c)]
  panels = len(classes) + (directions.shape[1] == 2)
  cols = min(panels, 6)
  rows = -(-panels // cols)
  fig = Figure(figsize=(2.2 * cols, 2.3 * rows + 0.4), layout="constrained")
  FigureCanvasAgg(fig)
  axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
  for ax, c in zip(axes, classes):
    k = int(np.flatnonzero(labels == c)[0])
    ax.imshow(curves[k], aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_title(f"{names[c]} (pred {names[predictions[k]]})", fontsize=8)
    ax.set_xlabel("threshold", fontsize=7)
    ax.set_ylabel("direction", fontsize=7)
    ax.tick_params(labelsize=6)
  if directions.shape[1] == 2:
    ax = axes[len(classes)]
    theta = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="0.8", lw=0.8)
    ax.scatter(directions[:, 0], directions[:, 1], s=8)
    ax.set_aspect("equal")
    ax.set_title("learned directions", fontsize=8)
    ax.tick_params(labelsize=6)
  for ax in axes[panels:]:
    ax.axis("off")
  fig.suptitle(title, fontsize=9)
  fig.savefig(path, dpi=100)


def evaluate(config: ml_collections.ConfigDict, workdir: str, model: nnx.Module, *,
             mesh: jax.sharding.Mesh, step: int) -> list[report.MetricSummary]:
  """Test accuracy and cross-entropy of `model`; prints the table and writes
  `eval_metrics.csv`, `ect.png` and an `eval/*` line in `metrics.jsonl`."""
  _, (test_inputs, test_y), _, names = load_data(config)
  graphdef, state = nnx.split(model)

  @jax.jit
  def predict(state, inputs, labels):
    model = nnx.merge(graphdef, state)
    curves = model.features(inputs["x"], *((inputs["edges"],) if "edges" in inputs else ()),
                            point_mask=inputs.get("point_mask"))
    logits = _apply(model, inputs)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return curves, jnp.argmax(logits, -1), loss, model.ect.directions()

  with jax.set_mesh(mesh):
    with jax.transfer_guard("allow"):
      placed = jax.device_put((test_inputs, test_y), sharding.replicated(mesh))
      curves, predictions, loss, directions = jax.device_get(predict(state, *placed))
  correct = (predictions == test_y).astype(np.float64)
  rows = report.summarize({"accuracy": correct, "cross_entropy": loss})
  if jax.process_index() == 0:
    print(f"\nEvaluation at step {step} on {len(test_y)} test examples ({config.data.name}):")
    print(report.format_table(rows))
    print(f"Test accuracy: {correct.mean():.4f}")
    report.write_csv(os.path.join(workdir, METRICS_CSV), rows)
    save_ect_plot(os.path.join(workdir, ECT_PNG), curves, test_y, predictions, names,
                  directions, title=f"{config.data.name}: learned ECTs at step {step}, "
                  f"test accuracy {correct.mean():.3f}")
  MetricWriter(workdir).write(step, {f"eval/{r.name}": r.mean for r in rows})
  return rows


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """`train`, then `evaluate`; returns `train`'s dict plus `rows` and `eval`."""
  result = train(config, workdir, devices=devices)
  rows = evaluate(config, workdir, result["model"], mesh=result["mesh"], step=result["step"])
  return {**result, "rows": rows, "eval": {r.name: r.mean for r in rows}}


if __name__ == "__main__":
  _cli.run(train_and_evaluate, "configs/ect_digits.py:runlocal")
