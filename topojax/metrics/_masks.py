"""Binary-mask inputs shared by every metric: `[B, *spatial]`, numpy in and out."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from topojax._src import checks

_LAYOUTS = {2: "[B, H, W]", 3: "[B, D, H, W]"}


def check_layout(x, name: str, ndim: int) -> bool:
  """Checks the rank, axes and dtype of a mask batch (numpy or JAX, at trace time).

  Returns:
    Whether `x` is already bool (its values then need no check).
  """
  checks.check_ndim(ndim)
  if x.ndim != ndim + 1:
    raise ValueError(
        f"`{name}` must have shape {_LAYOUTS[ndim]} ({ndim} spatial axes after a "
        f"batch axis, which is required: pass `x[None]` for a single image), got "
        f"shape {x.shape}.")
  if any(s == 0 for s in x.shape[1:]):
    raise ValueError(f"`{name}` has an empty spatial axis: shape {x.shape}.")
  if x.dtype == np.bool_:
    return True
  # jnp.issubdtype also knows JAX's extra float types (bfloat16).
  if not (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)):
    raise ValueError(
        f"`{name}` must be a binary mask (bool, or integer/floating with values "
        f"0 and 1), got dtype {x.dtype}.")
  return False


def as_binary(x, name: str, ndim: int) -> np.ndarray:
  """Validates one batch of binary masks and returns it as a bool array.

  Args:
    x: array-like `[B, *spatial]` with `ndim` spatial axes; bool, or integer or
      floating with values exactly 0 or 1.
    name: the argument name used in error messages.
    ndim: number of spatial axes (2 or 3).

  Returns:
    `x` as a bool numpy array of the same shape.
  """
  x = np.asarray(x)
  if check_layout(x, name, ndim):
    return x
  binary = (x == 0) | (x == 1)
  if not np.all(binary):
    bad = np.unique(x[~binary])[:5].tolist()
    raise ValueError(
        f"`{name}` must be a binary mask with values exactly 0 or 1 (threshold "
        f"probabilities first), got other values such as {bad}.")
  return x.astype(bool)


def as_binary_pair(pred, gt, ndim: int, as_mask=None) -> tuple:
  """Validates `pred` and `gt` as binary masks of the same shape.

  `as_mask(x, name, ndim)` validates one mask (default: `as_binary`, numpy).
  """
  as_mask = as_mask or as_binary
  pred = as_mask(pred, "pred", ndim)
  gt = as_mask(gt, "gt", ndim)
  if pred.shape != gt.shape:
    raise ValueError(
        f"`pred` and `gt` must have the same shape, got {pred.shape} and {gt.shape}.")
  return pred, gt


def count(x: np.ndarray) -> np.ndarray:
  """`[B, *spatial]` bool -> `[B]` int64 number of True entries per example."""
  return np.count_nonzero(x, axis=tuple(range(1, x.ndim))).astype(np.int64)


def batched_structure(ndim: int, connectivity: int) -> np.ndarray:
  """A labelling structure for `[B, *spatial]` that never links two examples."""
  spatial = ndimage.generate_binary_structure(ndim, connectivity)
  structure = np.zeros((3,) + spatial.shape, bool)
  structure[1] = spatial
  return structure
