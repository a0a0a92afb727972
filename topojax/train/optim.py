"""Optimiser and learning-rate schedule, chosen by name in the config.

Shared by the experiments (`experiments/train.py`,
`experiments/train_autoencoder.py`): `config.optimizer`, `config.schedule`,
`config.lr`, `config.total_steps` and `config.grad_clip_norm` name them.
"""

from __future__ import annotations

import jax
import ml_collections
import optax
from flax import nnx


def make_schedule(config: ml_collections.ConfigDict, *,
                  total_steps: int | None = None) -> optax.Schedule:
  """`config.schedule.name`: poly (TopoMortar), warmup_cosine or constant.

  The schedule spans `total_steps` (default `config.total_steps`; a
  self-distillation round spans its own steps).
  """
  settings, lr = config.schedule, config.lr
  total = config.total_steps if total_steps is None else total_steps
  if settings.name == "poly":  # lr * (1 - t / T) ** power
    return optax.polynomial_schedule(lr, 0.0, settings.power, total)
  if settings.name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, settings.warmup_steps, total, lr * settings.end_fraction)
  if settings.name == "constant":
    return optax.constant_schedule(lr)
  raise ValueError(
      f"Unknown schedule {settings.name!r}; known: poly, warmup_cosine, constant.")


def make_optimizer(config: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  """Clip by global norm, then sgd / adam (coupled L2 decay, as torch) or adamw.

  `config.optimizer` holds `name`, `weight_decay` and the keyword arguments of
  the optax constructor (e.g. `momentum`, `nesterov`, `b1`, `b2`).
  """
  settings = config.optimizer.to_dict()
  name = settings.pop("name")
  weight_decay = settings.pop("weight_decay", 0.0)
  if name == "adamw":
    core = [optax.adamw(schedule, weight_decay=weight_decay, **settings)]
  elif name in ("sgd", "adam"):
    core = [optax.add_decayed_weights(weight_decay),
            getattr(optax, name)(schedule, **settings)]
  else:
    raise ValueError(f"Unknown optimizer {name!r}; known: sgd, adam, adamw.")
  clip = [optax.clip_by_global_norm(config.grad_clip_norm)] if config.grad_clip_norm else []
  return optax.chain(*clip, *core)


def apply_gradients(model: nnx.Module, optimizer: nnx.Optimizer, grads, loss: jax.Array,
                    lr: jax.Array) -> dict[str, jax.Array]:
  """`optimizer.update(model, grads)`, and the step metrics every trainer logs.

  optax's Adam bias correction raises a Python float to the int32 step count,
  which strict dtype promotion (the tests' setting) rejects, so the update
  runs under standard promotion (no dtype changes for float32 parameters).
  """
  with jax.numpy_dtype_promotion("standard"):
    optimizer.update(model, grads)
  return {
      "loss": loss,
      "grad_norm": optax.tree.norm(grads),
      "param_norm": optax.tree.norm(nnx.state(model, nnx.Param)),
      "lr": lr,
  }
