"""Binary morphology on the last `ndim` axes, outside = background."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def dilate_cross(x: jax.Array, ndim: int, iterations: int = 1) -> jax.Array:
  """Binary dilation of bool `x` by the radius-1 cross (4- or 6-neighbours),
  `iterations` times (scipy's `binary_dilation`, skimage's default footprint)."""
  for _ in range(iterations):
    out = x
    for axis in range(x.ndim - ndim, x.ndim):
      n = x.shape[axis]
      if n == 1:
        continue
      pad = [(0, 0)] * x.ndim
      pad[axis] = (1, 1)
      padded = jnp.pad(x, pad, constant_values=False)
      out = (out | lax.slice_in_dim(padded, 0, n, axis=axis)
             | lax.slice_in_dim(padded, 2, n + 2, axis=axis))
    x = out
  return x
