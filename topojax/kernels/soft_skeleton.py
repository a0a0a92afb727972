"""The clDice soft skeleton: stencil path, reference, Pallas kernel, gradient.

* `soft_skeleton_reference`: clDice's `soft_skel` transcribed with
  `lax.reduce_window` pools (init +inf for min, -inf for max, SAME padding,
  which is torch's -inf padding of `max_pool`: the border is never eroded).
* `skeleton_forward` / `skeleton_backward`: the same pools as separable min/max
  over shifted views inside a `lax.scan`, reusing the erosion inside each
  opening as the next iteration's erosion (a third less pooling), and a
  hand-written reverse pass: autodiff of the stencils made XLA:CPU recompute
  them in every fused consumer and ran 10-50x slower than the forward pass.
  This is the XLA path.
* `soft_skeleton_pallas` / `soft_skeleton_grad_pallas`: the forward and the
  reverse pass as Pallas kernels over blocks of whole images
  (`BlockSizes.batch`; every iteration needs every neighbour, so images are
  not tiled). The backward kernel recomputes the erosions from `x` inside the
  block, so the only residual is `x` itself, where the XLA path stores
  2 * num_iter + 3 arrays.
* `soft_skeleton`: the `custom_vjp` wrapper choosing between them.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from topojax._src import xla

IMPLS = ("xla", "pallas", "pallas_interpret")


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Images per Pallas grid step; each block holds whole images."""
  batch: int = 1


def _spatial_axes(x: jax.Array, ndim: int) -> tuple[int, ...]:
  return tuple(range(x.ndim - ndim, x.ndim))


def _neighbours(x: jax.Array, axis: int, fill: float) -> tuple[jax.Array, jax.Array]:
  """(x[j - 1], x[j + 1]) along `axis`, `fill` outside the image."""
  size = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 0)
  prev = jnp.pad(lax.slice_in_dim(x, 0, size - 1, axis=axis), pad, constant_values=fill)
  pad[axis] = (0, 1)
  following = jnp.pad(lax.slice_in_dim(x, 1, size, axis=axis), pad, constant_values=fill)
  return prev, following


def _shifted_extreme(x: jax.Array, axis: int, op, fill: float) -> jax.Array:
  """op over the 3-neighbourhood along `axis`, outside values set to `fill`."""
  prev, following = _neighbours(x, axis, fill)
  return op(op(prev, x), following)


def erode(x: jax.Array, ndim: int) -> jax.Array:
  """Min over the cross (2D) / 6-neighbourhood (3D), +inf outside the image."""
  pools = [_shifted_extreme(x, a, jnp.minimum, jnp.inf) for a in _spatial_axes(x, ndim)]
  return functools.reduce(jnp.minimum, pools)


def dilate(x: jax.Array, ndim: int) -> jax.Array:
  """Max over the full 3x3 (3x3x3) box, -inf outside the image."""
  return _dilate_stages(x, ndim)[-1]


def _shift_toward_end(x: jax.Array, axis: int) -> jax.Array:
  """out[j] = x[j - 1] along `axis`, zero at the start."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 0)
  return jnp.pad(lax.slice_in_dim(x, 0, x.shape[axis] - 1, axis=axis), pad)


def _shift_toward_start(x: jax.Array, axis: int) -> jax.Array:
  """out[j] = x[j + 1] along `axis`, zero at the end."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, 1)
  return jnp.pad(lax.slice_in_dim(x, 1, x.shape[axis], axis=axis), pad)


def _route_to_first_extremum(g, extremum, candidates):
  """Sends each output's cotangent to the first candidate equal to the extremum.

  `candidates` are (neighbour values, map from output to input position) in
  window order. Routing to the first extremum is the rule of torch's pooling;
  unlike autodiff's tie-balancing selects it stays a few fused elementwise loops.
  """
  zero = jnp.zeros_like(g)
  grad, taken = zero, None
  for values, to_input in candidates:
    mine = values == extremum
    if taken is not None:
      mine = mine & ~taken
    taken = mine if taken is None else taken | mine
    grad = grad + to_input(jnp.where(mine, g, zero))
  return grad


def _pool3_candidates(x, axis, fill, *, with_centre=True):
  prev, following = _neighbours(x, axis, fill)
  centre = [(x, lambda v: v)] if with_centre else []
  return [(prev, functools.partial(_shift_toward_start, axis=axis)), *centre,
          (following, functools.partial(_shift_toward_end, axis=axis))]


def _erode_transpose(g, x, eroded, ndim):
  """Cotangent of `eroded = erode(x)`: one pass over the cross element."""
  candidates = []
  for i, axis in enumerate(_spatial_axes(x, ndim)):
    candidates += _pool3_candidates(x, axis, jnp.inf, with_centre=i == 0)
  return _route_to_first_extremum(g, eroded, candidates)


def _dilate_stages(x, ndim):
  """[x, max over spatial axis 1, over axes 1-2, ...]: the box max is separable."""
  stages = [x]
  for axis in _spatial_axes(x, ndim):
    stages.append(_shifted_extreme(stages[-1], axis, jnp.maximum, -jnp.inf))
  return stages


def skeleton_forward(x, num_iter, ndim, *, keep_residuals):
  """Returns S_K and, if kept, the erosions x_0..x_{K+1} and S_{-1}..S_{K-1}.

  With S_{-1} = 0 the first layer S_0 = relu(x_0 - O(x_0)) is the same update
  as the others (bit for bit), so one scan step covers k = 0..K.
  """
  def step(carry, _):
    x, skel = carry
    eroded = erode(x, ndim)  # x_{k+1}: shared with the next opening
    delta = jax.nn.relu(x - dilate(eroded, ndim))
    residuals = (x, skel) if keep_residuals else None
    return (eroded, skel + jax.nn.relu(delta - skel * delta)), residuals

  # A scan (not a Python loop) keeps each step's stencils in one fused body and
  # compiles once whatever num_iter is.
  (last, skel), residuals = lax.scan(
      step, (x, jnp.zeros_like(x)), None, length=num_iter + 1)
  if not keep_residuals:
    return skel
  erosions, skels = residuals
  return skel, (jnp.concatenate([erosions, last[None]]), skels)


def _skeleton_step_transpose(skel_bar, skel_prev, x, opened):
  """Cotangents of S_{k-1} and of diff = x_k - O(x_k) through one update."""
  zero = jnp.zeros_like(skel_bar)
  diff = x - opened
  delta = jax.nn.relu(diff)
  active = delta - skel_prev * delta > 0
  delta_bar = jnp.where(active, skel_bar * (1.0 - skel_prev), zero)
  skel_prev_bar = skel_bar - jnp.where(active, skel_bar * delta, zero)
  return skel_prev_bar, jnp.where(diff > 0, delta_bar, zero)


def skeleton_backward(residuals, skel_bar, num_iter, ndim, *, materialise=xla.materialised):
  """Cotangent of x from the forward residuals (`skeleton_forward`)."""
  erosions, skels = residuals  # x_0..x_{K+1}; S_{-1}..S_{K-1}
  zero = jnp.zeros_like(skel_bar)
  erosion = lambda k: lax.dynamic_index_in_dim(erosions, k, keepdims=False)
  axes = _spatial_axes(skel_bar, ndim)

  def step(carry, inputs):
    # Reverse step k. The erosions it reads arrive through the carry (fetched
    # one step ahead), and the erosion transpose of step k+1 runs here on its
    # pending cotangent: like conditionals, loop carries are buffers.
    skel_bar, pending_eroded_bar, pending_diff_bar, x, x_next, x_next2 = carry
    k, skel_prev = inputs
    live = k >= 0
    x_bar_next = materialise(
        live, lambda g, d, x, e: d + _erode_transpose(g, x, e, ndim),
        pending_eroded_bar, pending_diff_bar, x_next, x_next2)
    stages = materialise(live, lambda e: _dilate_stages(e, ndim), x_next)
    skel_prev_bar, diff_bar = materialise(
        live, _skeleton_step_transpose, skel_bar, skel_prev, x, stages[-1])
    opened_bar = -diff_bar
    for i, axis in reversed(list(enumerate(axes))):  # undo the separable max
      opened_bar = materialise(
          live, lambda g, a, b, axis=axis: _route_to_first_extremum(
              g, b, _pool3_candidates(a, axis, -jnp.inf)),
          opened_bar, stages[i], stages[i + 1])
    x_prev = erosion(jnp.maximum(k - 1, 0))
    return (skel_prev_bar, x_bar_next + opened_bar, diff_bar, x_prev, x, x_next), None

  last = erosion(num_iter + 1)  # x_{K+2} is never needed: its cotangent is 0
  init = (skel_bar, zero, zero, erosion(num_iter), last, last)
  (_, eroded_bar, diff_bar, _, x0, x1), _ = lax.scan(
      step, init, (jnp.arange(num_iter + 1), skels), reverse=True)
  return diff_bar + _erode_transpose(eroded_bar, x0, x1, ndim)


def _reduce_window_pool(x, ndim, window, init, op):
  dims = (1,) * (x.ndim - ndim) + tuple(window)
  return lax.reduce_window(x, init, op, dims, (1,) * x.ndim, "SAME")


def _reference_erode(x, ndim):
  pools = []
  for a in range(ndim):
    window = [1] * ndim
    window[a] = 3
    pools.append(_reduce_window_pool(x, ndim, window, jnp.inf, lax.min))
  return functools.reduce(jnp.minimum, pools)


def _reference_open(x, ndim):
  eroded = _reference_erode(x, ndim)
  return _reduce_window_pool(eroded, ndim, [3] * ndim, -jnp.inf, lax.max)


def soft_skeleton_reference(x: jax.Array, num_iter: int, ndim: int) -> jax.Array:
  """Line-by-line transcription of clDice's `soft_skel` with `reduce_window`."""
  skel = jax.nn.relu(x - _reference_open(x, ndim))
  for _ in range(num_iter):
    x = _reference_erode(x, ndim)
    delta = jax.nn.relu(x - _reference_open(x, ndim))
    skel = skel + jax.nn.relu(delta - skel * delta)
  return skel


def _as_image_blocks(arrays, ndim, block_sizes):
  """Flattens leading axes to one batch axis, padded to whole blocks."""
  shape = arrays[0].shape
  spatial = shape[len(shape) - ndim:]
  batch = math.prod(shape[:len(shape) - ndim])
  bb = min(block_sizes.batch, batch)
  pad = -batch % bb
  flat = [jnp.pad(a.reshape((batch,) + spatial), [(0, pad)] + [(0, 0)] * ndim) for a in arrays]
  block = pl.BlockSpec((bb,) + spatial, lambda i: (i,) + (0,) * ndim)
  unflatten = lambda a: a[:batch].reshape(shape)
  return flat, block, (batch + pad) // bb, unflatten


def _run_blocks(kernel, arrays, ndim, block_sizes, interpret):
  flat, block, grid, unflatten = _as_image_blocks(arrays, ndim, block_sizes)
  out = pl.pallas_call(
      kernel, grid=(grid,), in_specs=[block] * len(flat), out_specs=block,
      out_shape=jax.ShapeDtypeStruct(flat[0].shape, flat[0].dtype), interpret=interpret)(*flat)
  return unflatten(out)


def soft_skeleton_pallas(x: jax.Array, num_iter: int, ndim: int, *,
                         block_sizes: BlockSizes = BlockSizes(),
                         interpret: bool = False) -> jax.Array:
  """`skeleton_forward` as a Pallas kernel over blocks of whole images."""
  def kernel(x_ref, out_ref):
    out_ref[...] = skeleton_forward(x_ref[...], num_iter, ndim, keep_residuals=False)
  return _run_blocks(kernel, [x], ndim, block_sizes, interpret)


def _unconditional(live, fn, *args):
  del live  # inside a kernel nothing is fused across the call: no cond needed
  return fn(*args)


def soft_skeleton_grad_pallas(x: jax.Array, skel_bar: jax.Array, num_iter: int, ndim: int, *,
                              block_sizes: BlockSizes = BlockSizes(),
                              interpret: bool = False) -> jax.Array:
  """Cotangent of `x` as a Pallas kernel; recomputes the forward pass per block."""
  def kernel(x_ref, g_ref, out_ref):
    _, residuals = skeleton_forward(x_ref[...], num_iter, ndim, keep_residuals=True)
    out_ref[...] = skeleton_backward(residuals, g_ref[...], num_iter, ndim,
                                     materialise=_unconditional)
  return _run_blocks(kernel, [x, skel_bar], ndim, block_sizes, interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def soft_skeleton(x: jax.Array, num_iter: int, ndim: int, impl: str = "xla",
                  block_sizes: BlockSizes = BlockSizes()) -> jax.Array:
  """The soft skeleton `S_K` of `x` (last `ndim` axes spatial) with its reverse pass.

  `impl` is "xla" (stencils under XLA, residuals stored), "pallas" or
  "pallas_interpret" (kernels; the backward recomputes from `x`).
  """
  return _soft_skeleton_fwd(x, num_iter, ndim, impl, block_sizes)[0]


def _soft_skeleton_fwd(x, num_iter, ndim, impl, block_sizes):
  if impl == "xla":
    return skeleton_forward(x, num_iter, ndim, keep_residuals=True)
  interpret = impl == "pallas_interpret"
  skel = soft_skeleton_pallas(x, num_iter, ndim, block_sizes=block_sizes, interpret=interpret)
  return skel, x


def _soft_skeleton_bwd(num_iter, ndim, impl, block_sizes, residuals, skel_bar):
  if impl == "xla":
    return (skeleton_backward(residuals, skel_bar, num_iter, ndim),)
  return (soft_skeleton_grad_pallas(residuals, skel_bar, num_iter, ndim, block_sizes=block_sizes,
                                    interpret=impl == "pallas_interpret"),)


soft_skeleton.defvjp(_soft_skeleton_fwd, _soft_skeleton_bwd)
