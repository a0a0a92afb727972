"""The clDice morphological soft skeleton (Shit et al., CVPR 2021).

Two implementations with identical forward values:

* `soft_skeleton_reference` transcribes the clDice/MONAI code with
  `lax.reduce_window` pools (init +inf for min, -inf for max, SAME padding, which
  is torch's -inf padding of `max_pool`, so the image border is never eroded).
* `soft_skeleton` computes the same pools as separable min/max over shifted
  views inside a `lax.scan`, reuses the erosion inside each opening as the next
  iteration's erosion (a third less pooling), and has a hand-written backward
  pass: autodiff of the stencils made XLA:CPU recompute them in every fused
  consumer and ran 10-50x slower than the forward pass (see
  `_soft_skeleton_bwd`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks, xla


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


def _spatial_axes(x: jax.Array, ndim: int) -> tuple[int, ...]:
  return tuple(range(x.ndim - ndim, x.ndim))


def soft_erode(x: jax.Array, *, ndim: int = 2) -> jax.Array:
  r"""Soft erosion: min over the cross (2D) / 6-neighbourhood (3D) element.

  It is the minimum of axis-aligned 3-long min-pools; pixels outside the image
  count as $+\infty$, so the border is not eroded (the clDice convention).

  Args:
    x: `[..., *spatial]`, the last `ndim` axes spatial.
    ndim: number of spatial axes, 2 or 3.

  Returns:
    Array of the shape and dtype of `x`.
  """
  checks.check_ndim(ndim)
  x = jnp.asarray(x)
  checks.check_spatial(x, "x", ndim)
  pools = [_shifted_extreme(x, a, jnp.minimum, jnp.inf) for a in _spatial_axes(x, ndim)]
  return functools.reduce(jnp.minimum, pools)


def soft_dilate(x: jax.Array, *, ndim: int = 2) -> jax.Array:
  """Soft dilation: max over the full 3x3 (3x3x3) box, outside counts as -inf."""
  checks.check_ndim(ndim)
  x = jnp.asarray(x)
  checks.check_spatial(x, "x", ndim)
  return _dilate_stages(x, ndim)[-1]


def soft_open(x: jax.Array, *, ndim: int = 2) -> jax.Array:
  """Soft opening, dilate(erode(x)). Not a true opening: it can exceed `x`."""
  return soft_dilate(soft_erode(x, ndim=ndim), ndim=ndim)


def _check_skeleton_args(x, num_iter, ndim):
  checks.check_ndim(ndim)
  checks.check_positive_int(num_iter, "num_iter", allow_zero=True)
  x = jnp.asarray(x)
  checks.check_floating(x, "x")
  checks.check_spatial(x, "x", ndim)
  return x


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
  """Cotangent of `eroded = soft_erode(x)`: one pass over the cross element."""
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


def _skeleton_forward(x, num_iter, ndim, *, keep_residuals):
  """Returns S_K and, if kept, the erosions x_0..x_{K+1} and S_{-1}..S_{K-1}.

  With S_{-1} = 0 the first layer S_0 = relu(x_0 - O(x_0)) is the same update
  as the others (bit for bit), so one scan step covers k = 0..K.
  """
  def step(carry, _):
    x, skel = carry
    eroded = soft_erode(x, ndim=ndim)  # x_{k+1}: shared with the next opening
    delta = jax.nn.relu(x - soft_dilate(eroded, ndim=ndim))
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _soft_skeleton(x, num_iter, ndim):
  return _skeleton_forward(x, num_iter, ndim, keep_residuals=False)


def _soft_skeleton_fwd(x, num_iter, ndim):
  return _skeleton_forward(x, num_iter, ndim, keep_residuals=True)


def _skeleton_step_transpose(skel_bar, skel_prev, x, opened):
  """Cotangents of S_{k-1} and of diff = x_k - O(x_k) through one update."""
  zero = jnp.zeros_like(skel_bar)
  diff = x - opened
  delta = jax.nn.relu(diff)
  active = delta - skel_prev * delta > 0
  delta_bar = jnp.where(active, skel_bar * (1.0 - skel_prev), zero)
  skel_prev_bar = skel_bar - jnp.where(active, skel_bar * delta, zero)
  return skel_prev_bar, jnp.where(diff > 0, delta_bar, zero)


def _soft_skeleton_bwd(num_iter, ndim, residuals, skel_bar):
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
    x_bar_next = xla.materialised(
        live, lambda g, d, x, e: d + _erode_transpose(g, x, e, ndim),
        pending_eroded_bar, pending_diff_bar, x_next, x_next2)
    stages = xla.materialised(live, lambda e: _dilate_stages(e, ndim), x_next)
    skel_prev_bar, diff_bar = xla.materialised(
        live, _skeleton_step_transpose, skel_bar, skel_prev, x, stages[-1])
    opened_bar = -diff_bar
    for i, axis in reversed(list(enumerate(axes))):  # undo the separable max
      opened_bar = xla.materialised(
          live, lambda g, a, b, axis=axis: _route_to_first_extremum(
              g, b, _pool3_candidates(a, axis, -jnp.inf)),
          opened_bar, stages[i], stages[i + 1])
    x_prev = erosion(jnp.maximum(k - 1, 0))
    return (skel_prev_bar, x_bar_next + opened_bar, diff_bar, x_prev, x, x_next), None

  last = erosion(num_iter + 1)  # x_{K+2} is never needed: its cotangent is 0
  init = (skel_bar, zero, zero, erosion(num_iter), last, last)
  (_, eroded_bar, diff_bar, _, x0, x1), _ = lax.scan(
      step, init, (jnp.arange(num_iter + 1), skels), reverse=True)
  return (diff_bar + _erode_transpose(eroded_bar, x0, x1, ndim),)


_soft_skeleton.defvjp(_soft_skeleton_fwd, _soft_skeleton_bwd)


@functools.partial(jax.jit, static_argnames=("num_iter", "ndim"))
def soft_skeleton(x: jax.Array, *, num_iter: int = 10, ndim: int = 2) -> jax.Array:
  r"""clDice soft skeleton of a soft (or binary) mask.

  With $E$ the soft erosion and $O = D \circ E$ the soft opening,

  $$S_0 = \mathrm{relu}(x - O(x)), \quad x_k = E^k(x),\quad
  \delta_k = \mathrm{relu}(x_k - O(x_k)),\quad
  S_k = S_{k-1} + \mathrm{relu}(\delta_k - S_{k-1}\,\delta_k),$$

  for $k = 1..K$ with $K$ = `num_iter`; returns $S_K$. Values are those of
  clDice's `soft_skel` and MONAI's `monai.losses.cldice.soft_skel`.

  The gradient is a hand-written reverse pass (reverse-mode only: `grad`,
  `vjp`; not `jvp`). It routes each pool's gradient to the first extremum of its
  window, as torch's pooling does; autodiff of `soft_skeleton_reference` splits
  exact ties instead, so the two differ only where neighbours are exactly equal.

  Args:
    x: floating array `[..., *spatial]` with values in [0, 1]; the last `ndim`
      axes are spatial, leading axes batch (no channel axis needed: pass one
      channel, or move channels in front).
    num_iter: number of erosion steps K (clDice's `iter_`); choose about the
      radius of the thickest structure.
    ndim: number of spatial axes, 2 or 3.

  Returns:
    The soft skeleton, shape and dtype of `x`, values in [0, 1] for inputs in
    [0, 1].

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.skeleton import soft_skeleton
    >>> bar = jnp.zeros((7, 9)).at[2:5, 1:8].set(1.0)
    >>> soft_skeleton(bar, num_iter=3)[3].astype(int).tolist()
    [0, 0, 1, 1, 1, 1, 1, 0, 0]

  References:
    Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular
    Structure Segmentation", CVPR 2021.
  """
  x = _check_skeleton_args(x, num_iter, ndim)
  return _soft_skeleton(x, num_iter, ndim)


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


@functools.partial(jax.jit, static_argnames=("num_iter", "ndim"))
def soft_skeleton_reference(x: jax.Array, *, num_iter: int = 10, ndim: int = 2) -> jax.Array:
  """Line-by-line transcription of clDice's `soft_skel` with `reduce_window`.

  The test oracle for `soft_skeleton` (same arguments and values).
  """
  x = _check_skeleton_args(x, num_iter, ndim)
  skel = jax.nn.relu(x - _reference_open(x, ndim))
  for _ in range(num_iter):
    x = _reference_erode(x, ndim)
    delta = jax.nn.relu(x - _reference_open(x, ndim))
    skel = skel + jax.nn.relu(delta - skel * delta)
  return skel
