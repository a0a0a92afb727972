"""Exact Euclidean distance transform on device (2D and 3D, jit and vmap friendly).

Separable and exact in integer arithmetic: the squared distance to the nearest
zero along the first spatial axis (two cumulative scans), then, along each
further axis, the lower envelope $\\min_k g(k) + (i - k)^2$ of the previous
pass. The envelope is taken offset by offset, $|i - k| = 0, 1, 2, \\dots$, in
a `while_loop` that stops as soon as $k^2$ exceeds every current value (no
larger offset can improve any voxel): the cost is O(size x largest distance),
the memory O(size).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks

NO_ZERO = ("scipy", "inf")
_INT32_LIMIT = 2**31 - 1


def _inside(mask: jax.Array) -> jax.Array:
  return mask if mask.dtype == jnp.bool_ else mask != jnp.zeros((), mask.dtype)


def _first_axis(inside: jax.Array, axis: int, far: int) -> jax.Array:
  """Squared distance to the nearest zero on the same line of `axis`, int32.

  Lines without a zero get `far**2`.
  """
  n = inside.shape[axis]
  shape = [1] * inside.ndim
  shape[axis] = n
  idx = jnp.arange(n, dtype=jnp.int32).reshape(shape)
  zero = ~inside
  before = lax.cummax(jnp.where(zero, idx, jnp.int32(-2 * far)), axis=axis)
  after = lax.cummin(jnp.where(zero, idx, jnp.int32(3 * far)), axis=axis, reverse=True)
  line = jnp.minimum(jnp.minimum(idx - before, after - idx), jnp.int32(far))
  return line * line


def _envelope_pass(g: jax.Array, axis: int, far_sq: int, live: jax.Array) -> jax.Array:
  """$\\min_k g[..., k, ...] + (i - k)^2$ along `axis` (int32, exact).

  `live` (broadcastable to `g`) marks the images whose values matter: the
  early stop looks only at them (images without any zero are overwritten by
  the caller).
  """
  n = g.shape[axis]
  if n == 1:
    return g
  pad = [(0, 0)] * g.ndim
  pad[axis] = (n - 1, n - 1)
  padded = jnp.pad(g, pad, constant_values=far_sq)

  def cond(state):
    k, best = state
    worst = jnp.max(jnp.where(live, best, jnp.zeros_like(best)))
    return (k < n) & (k * k < worst)

  def body(state):
    k, best = state
    left = lax.dynamic_slice_in_dim(padded, n - 1 - k, n, axis)   # g[i - k]
    right = lax.dynamic_slice_in_dim(padded, n - 1 + k, n, axis)  # g[i + k]
    return k + 1, jnp.minimum(best, k * k + jnp.minimum(left, right))

  _, best = lax.while_loop(cond, body, (jnp.int32(1), g))
  return best


def _check(mask: jax.Array, ndim: int) -> jax.Array:
  checks.check_ndim(ndim)
  mask = jnp.asarray(mask)
  checks.check_spatial(mask, "mask", ndim)
  spatial = mask.shape[mask.ndim - ndim:]
  far = sum(spatial)
  if far * far + sum(n * n for n in spatial) > _INT32_LIMIT:
    raise ValueError(
        f"`mask` is too large for int32 squared distances: spatial shape {spatial}.")
  return mask


def squared_edt(mask: jax.Array, *, ndim: int) -> tuple[jax.Array, jax.Array]:
  """Exact squared distances (int32) and the `[...]` flag "image has a zero".

  Voxels of an image without any zero hold values `>= sum(spatial)**2`
  (meaningless); see `edt` for the conventions applied to them.
  """
  return _squared_edt(_check(mask, ndim), ndim)


@functools.partial(jax.jit, static_argnums=(1,))
def _squared_edt(mask: jax.Array, ndim: int) -> tuple[jax.Array, jax.Array]:
  spatial = mask.shape[mask.ndim - ndim:]
  far = sum(spatial)  # exceeds every in-image distance
  inside = _inside(mask)
  space = tuple(range(mask.ndim - ndim, mask.ndim))
  has_zero = jnp.any(~inside, axis=space)
  live = jnp.expand_dims(has_zero, space)
  sq = _first_axis(inside, mask.ndim - ndim, far)
  for axis in space[1:]:
    sq = _envelope_pass(sq, axis, far * far, live)
  return sq, has_zero


def edt(mask: jax.Array, *, ndim: int, no_zero: str = "scipy") -> jax.Array:
  r"""Exact Euclidean distance transform of each image, on device.

  Equals `scipy.ndimage.distance_transform_edt(mask[b])` for every image b:
  each nonzero voxel gets the Euclidean distance (unit spacing) to the nearest
  zero voxel of its image, zero voxels get 0,

  $$D(x) = \min_{y:\ m(y) = 0} \lVert x - y \rVert_2 .$$

  Squared distances are computed exactly in int32 (see the module docstring),
  then square-rooted in float32.

  An image without any zero voxel has no finite distance. `no_zero="scipy"`
  (default) reproduces scipy there: the distance to a phantom zero just before
  the first voxel along the first spatial axis, at $(-1, 0, \dots, 0)$:
  $D(x) = \sqrt{(x_0 + 1)^2 + \sum_{a > 0} x_a^2}$ (finite, so losses built
  on it stay finite; it is what the reference PyTorch losses see through
  MONAI/scipy). `no_zero="inf"` returns `inf` on such images instead.

  Not differentiable (the input is a mask); the output carries no gradient.

  Args:
    mask: `[..., *spatial]`, bool or numeric (nonzero = inside); the last
      `ndim` axes are spatial, leading axes are batch (any number).
    ndim: 2 or 3 spatial axes.
    no_zero: "scipy" or "inf", the value on images without any zero voxel.

  Returns:
    `[..., *spatial]` float32 distances.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax._src.distance import edt
    >>> mask = jnp.ones((1, 5, 5), bool).at[0, 0, 0].set(False)
    >>> squared = lambda d: (d ** 2).round().astype(int).tolist()
    >>> squared(edt(mask, ndim=2)[0, :3, :3])
    [[0, 1, 4], [1, 2, 5], [4, 5, 8]]
    >>> squared(edt(jnp.ones((2, 3), bool), ndim=2))  # scipy's phantom at (-1, 0)
    [[1, 2, 5], [4, 5, 8]]
  """
  if no_zero not in NO_ZERO:
    raise ValueError(f"`no_zero` must be one of {NO_ZERO}, got {no_zero!r}.")
  return _edt(_check(mask, ndim), ndim, no_zero)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _edt(mask: jax.Array, ndim: int, no_zero: str) -> jax.Array:
  sq, has_zero = _squared_edt(mask, ndim)
  space = tuple(range(mask.ndim - ndim, mask.ndim))
  distance = jnp.sqrt(sq.astype(jnp.float32))
  if no_zero == "inf":
    fallback = jnp.full((1,) * mask.ndim, jnp.inf, jnp.float32)
  else:
    fallback = jnp.zeros((1,) * mask.ndim, jnp.int32)
    for axis in space:  # a phantom zero at (-1, 0, ..., 0)
      shape = [1] * mask.ndim
      shape[axis] = mask.shape[axis]
      start = 1 if axis == space[0] else 0
      step = jnp.arange(start, mask.shape[axis] + start, dtype=jnp.int32).reshape(shape)
      fallback = fallback + step * step
    fallback = jnp.sqrt(fallback.astype(jnp.float32))
  return lax.stop_gradient(jnp.where(jnp.expand_dims(has_zero, space), distance, fallback))
