"""Trace-time argument checks: shapes and dtypes only, never values under jit.

Every public function validates its inputs with these helpers so that bad input
fails with a message naming the argument, before anything is computed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_ndim(ndim: int) -> int:
  """Validates the number of spatial axes (2 or 3)."""
  if ndim not in (2, 3):
    raise ValueError(f"`ndim` must be 2 or 3 (spatial axes), got {ndim!r}.")
  return ndim


def check_positive_int(value: int, name: str, *, allow_zero: bool = False) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"`{name}` must be an int, got {type(value).__name__}.")
  if value < 0 or (value == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"`{name}` must be {bound}, got {value}.")
  return int(value)


def check_floating(x: jax.Array, name: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"`{name}` must have a floating dtype, got {x.dtype}.")


def check_integer(x: jax.Array, name: str) -> None:
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(f"`{name}` must have an integer dtype (class indices), got {x.dtype}.")


def check_spatial(x: jax.Array, name: str, ndim: int) -> None:
  """`x` must have at least `ndim` spatial axes, each non-empty."""
  if x.ndim < ndim:
    raise ValueError(
        f"`{name}` must have at least {ndim} axes (the last {ndim} are spatial), "
        f"got shape {x.shape}.")
  if any(s == 0 for s in x.shape[x.ndim - ndim:]):
    raise ValueError(f"`{name}` has an empty spatial axis: shape {x.shape}.")


def check_logits_and_labels(logits: jax.Array, labels: jax.Array) -> int:
  """Validates segmentation inputs and returns the number of spatial axes.

  Args:
    logits: `[B, *spatial, C]`, floating, C >= 2.
    labels: `[B, *spatial]`, integer class indices, or (binary problems,
      C = 2) floating soft labels: the foreground probability in [0, 1], e.g.
      a teacher's predictions in self-distillation.

  Returns:
    The number of spatial axes (2 or 3).
  """
  check_floating(logits, "logits")
  if logits.ndim not in (4, 5):
    raise ValueError(
        "`logits` must be [B, H, W, C] or [B, D, H, W, C] (channels-last), "
        f"got shape {logits.shape}.")
  if logits.shape[-1] < 2:
    raise ValueError(
        "`logits` must have C >= 2 classes on the last axis (C=2 for binary "
        f"segmentation), got shape {logits.shape}.")
  if is_soft(labels):
    if logits.shape[-1] != 2:
      raise ValueError(
          "Floating (soft) `labels` are foreground probabilities of a binary problem: "
          f"`logits` must have C = 2 classes, got shape {logits.shape}.")
  elif not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError("`labels` must have an integer dtype (class indices) or a floating "
                     f"one (soft binary labels), got {labels.dtype}.")
  if labels.shape != logits.shape[:-1]:
    raise ValueError(
        f"`labels` must have shape logits.shape[:-1] = {logits.shape[:-1]}, "
        f"got {labels.shape}.")
  check_spatial(labels, "labels", logits.ndim - 2)
  return logits.ndim - 2


def is_soft(labels: jax.Array) -> bool:
  """Whether `labels` are soft (floating foreground probabilities), not class indices."""
  return bool(jnp.issubdtype(labels.dtype, jnp.floating))


def hard_labels(labels: jax.Array) -> jax.Array:
  """Class indices: integer labels unchanged, soft labels thresholded at 0.5.

  Losses built on a mask of the truth (skeletons, distance transforms, simple
  points) use this, so they accept a teacher's soft labels too. A soft label
  outside [0, 1] (or NaN) becomes -1, so `labels_in_range` still flags it.
  """
  if not is_soft(labels):
    return labels
  hard = (labels > 0.5).astype(jnp.int32)
  return jnp.where((labels >= 0) & (labels <= 1), hard, -1)


def soft_one_hot(labels: jax.Array, num_classes: int, dtype) -> jax.Array:
  """`[..., C]` targets: one-hot class indices, or `(1 - q, q)` for soft labels q."""
  if is_soft(labels):
    q = labels.astype(dtype)
    return jnp.stack([1 - q, q], axis=-1)
  return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def labels_in_range(labels: jax.Array, num_classes: int) -> jax.Array:
  """`[B]` mask: whether all class indices of each example lie in [0, C)
  (soft labels: in [0, 1]; NaN is out of range).

  Under `jit` the values are unknown at trace time, so losses use this mask to
  turn the loss of an example with out-of-range labels into NaN (a flag the
  trainer's NaN tripwire catches) instead of silently treating those pixels as
  background.
  """
  upper = 1 if is_soft(labels) else num_classes - 1
  return jnp.all((labels >= 0) & (labels <= upper), axis=tuple(range(1, labels.ndim)))


def raise_if_labels_out_of_range(labels: jax.Array, num_classes: int) -> None:
  """Eager-only value check (a no-op on tracers, where the NaN flag applies)."""
  if isinstance(labels, jax.core.Tracer):
    return
  lo, hi = jnp.min(labels).item(), jnp.max(labels).item()
  if is_soft(labels):
    if not 0 <= lo <= hi <= 1:  # also catches NaN
      raise ValueError(f"Soft `labels` must lie in [0, 1], got values in [{lo}, {hi}].")
  elif lo < 0 or hi >= num_classes:
    raise ValueError(
        f"`labels` must lie in [0, {num_classes - 1}] (C = logits.shape[-1] = "
        f"{num_classes}), got values in [{lo}, {hi}].")


def check_map_pair(pred: jax.Array, target: jax.Array) -> int:
  """`pred` and `target`: floating maps of one shape `[B, H, W]` or `[B, D, H, W]`,
  at least 2 pixels per spatial axis. Returns the number of spatial axes."""
  if pred.shape != target.shape:
    raise ValueError(f"`pred` and `target` must have the same shape, got {pred.shape} "
                     f"and {target.shape}.")
  if pred.ndim not in (3, 4):
    raise ValueError(f"`pred` must be a batch of 2D images [B, H, W] or volumes "
                     f"[B, D, H, W], got shape {pred.shape}.")
  if min(pred.shape[1:]) < 2:
    raise ValueError(f"`pred` needs at least 2 pixels along every spatial axis, got "
                     f"shape {pred.shape}.")
  for name, x in (("pred", pred), ("target", target)):
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise ValueError(f"`{name}` must be floating, got {x.dtype}.")
  return pred.ndim - 1


def raise_if_nonfinite(x: jax.Array, name: str) -> None:
  """Eager-only check that `x` has no NaN or inf (a no-op on tracers, where
  callers set a flag instead). NumPy, so that it also runs inside a trace."""
  if isinstance(x, jax.core.Tracer):
    return
  if not np.all(np.isfinite(np.asarray(x))):
    raise ValueError(f"`{name}` has NaN or inf values; persistence is undefined.")
