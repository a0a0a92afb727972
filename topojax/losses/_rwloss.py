"""Region-wise loss with the rectified region-wise map (Valverde & Tohka, 2023).

The loss takes logits `[B, *spatial, C]` and integer labels `[B, *spatial]`
like the other segmentation losses and returns `[B]`. The map is a function
of the labels only: it is built on device from the exact distance transform
(`topojax._src.distance.edt`, equal to scipy's) under `stop_gradient`, and the
gradient reaches the logits only through the softmax probabilities.

Two jitted stages, as in `_skeleton`: the map (the EDT) and the differentiable
core; under an outer `jit` both inline into one program.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks
from topojax._src import distance
from topojax.losses._segmentation import _flag_invalid


def _check_labels(labels, num_classes) -> tuple[jax.Array, int, int]:
  """`labels` `[B, H, W]` or `[B, D, H, W]` integer; returns (labels, C, ndim)."""
  labels = jnp.asarray(labels)
  checks.check_integer(labels, "labels")
  if labels.ndim not in (3, 4):
    raise ValueError(f"`labels` must be [B, H, W] or [B, D, H, W], got shape {labels.shape}.")
  ndim = labels.ndim - 1
  checks.check_spatial(labels, "labels", ndim)
  num_classes = checks.check_positive_int(num_classes, "num_classes")
  if num_classes < 2:
    raise ValueError(f"`num_classes` must be >= 2, got {num_classes}.")
  return labels, num_classes, ndim


def _outside_values(outside, num_classes: int) -> jax.Array:
  """`outside` as a float32 `[C]` vector (a scalar is broadcast)."""
  outside = jnp.asarray(outside)
  if not (jnp.issubdtype(outside.dtype, jnp.floating)
          or jnp.issubdtype(outside.dtype, jnp.integer)):
    raise ValueError(f"`outside` must be a number or a [C] array, got dtype {outside.dtype}.")
  if outside.shape not in ((), (num_classes,)):
    raise ValueError(
        f"`outside` must be a scalar or have shape (C,) = ({num_classes},), "
        f"got {outside.shape}.")
  return jnp.broadcast_to(outside.astype(jnp.float32), (num_classes,))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _rrw_map(labels: jax.Array, num_classes: int, ndim: int,
             outside: jax.Array) -> jax.Array:
  """`[B, *spatial, C]` float32 RRW map (see `rrw_map`)."""
  classes = jnp.arange(num_classes, dtype=labels.dtype)
  of_class = labels[:, None] == classes.reshape((1, -1) + (1,) * ndim)  # [B, C, *spatial]
  dist = distance.edt(of_class, ndim=ndim)  # 0 outside the class; scipy's phantom if full
  space = tuple(range(2, of_class.ndim))
  # max >= 1 wherever the class is present; the bound only guards absent classes
  # (all-zero distances), whose map is then `outside` everywhere.
  peak = jnp.maximum(jnp.max(dist, axis=space, keepdims=True), 1.0)
  rest = outside.reshape((1, -1) + (1,) * ndim)
  rrw = jnp.where(of_class, -dist / peak, rest)
  return lax.stop_gradient(jnp.moveaxis(rrw, 1, -1))


def rrw_map(labels: jax.Array, num_classes: int, *, outside=1.0) -> jax.Array:
  r"""Rectified region-wise map (RRW map) of integer labels, on device.

  For each example b and class c, with $T_c$ the mask of class c and
  $D_c = \mathrm{EDT}(T_c)$ the Euclidean distance of each pixel of class c to
  the nearest pixel of another class (0 outside c; unit spacing,
  `scipy.ndimage.distance_transform_edt` exactly):

  $$\mathrm{RRW}_{c}(x) = \begin{cases} -D_c(x) / \max_y D_c(y) & x \in T_c \\
  r_c & x \notin T_c \end{cases}$$

  so the map lies in $[-1, 0)$ inside class c (most negative at the centre of
  each object, normalised per example and class) and is $r_c$ (`outside`, 1 in
  the paper) elsewhere. The reference writes it as $-D_c/(\max D_c +
  10^{-15})$ with the zero entries then set to 1; the two agree, since
  $D_c \ge 1$ on $T_c$.

  Edge cases: a class absent from an image has $D_c = 0$ everywhere; its map
  is $r_c$ everywhere (the division is guarded, no NaN). A class filling the
  whole image has no boundary: as in scipy, distances are taken to a phantom
  background pixel just before the first row, $(-1, 0, \dots)$, so the map is
  negative everywhere (the reference's value through scipy). Labels outside
  [0, C) belong to no class and get $r_c$ in every channel (eagerly, a
  `ValueError`).

  Args:
    labels: `[B, H, W]` or `[B, D, H, W]` integer class indices in [0, C).
    num_classes: C >= 2.
    outside: $r_c$, the value outside class c: a number or a `[C]` array
      (TopoMortar's `ratio`, `[1, 1]`).

  Returns:
    `[B, *spatial, C]` float32 map, channels-last; no gradient.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import rrw_map
    >>> labels = jnp.zeros((1, 1, 7), jnp.int32).at[0, 0, 1:6].set(1)
    >>> rrw = rrw_map(labels, 2)[0, 0]  # [7, C]
    >>> (3 * rrw[:, 1]).round().astype(int).tolist()  # the object: -EDT/3, 1 outside
    [3, -1, -2, -3, -2, -1, 3]
    >>> rrw[:, 0].astype(int).tolist()  # the background: EDT 1 at both ends
    [-1, 1, 1, 1, 1, 1, -1]
  """
  labels, num_classes, ndim = _check_labels(labels, num_classes)
  checks.raise_if_labels_out_of_range(labels, num_classes)
  return _rrw_map(labels, num_classes, ndim, _outside_values(outside, num_classes))


@jax.jit
def _rw_core(logits: jax.Array, labels: jax.Array, rrw: jax.Array) -> jax.Array:
  valid = checks.labels_in_range(labels, logits.shape[-1])
  probs = jax.nn.softmax(logits, axis=-1)
  loss = jnp.mean(probs * rrw.astype(probs.dtype), axis=tuple(range(1, probs.ndim)))
  return _flag_invalid(loss, valid)


def rwloss(logits: jax.Array, labels: jax.Array, *, outside=1.0) -> jax.Array:
  r"""Region-wise loss with the rectified region-wise map (RRW), per example.

  With p the softmax probabilities and RRW the map of `rrw_map` (a function
  of the labels only, under `stop_gradient`), over the N pixels and C classes
  of example b:

  $$\mathcal{L}_b = \frac{1}{NC}\sum_{i}\sum_{c=1}^{C} p_{ic}\,\mathrm{RRW}_{ic},
  \qquad \mathrm{RRW}_{ic} = \begin{cases} -\mathrm{EDT}(T_c)_i / \max
  \mathrm{EDT}(T_c) & i \in T_c \\ r_c\ (=1) & i \notin T_c. \end{cases}$$

  Probability on the true class is rewarded (more so far from the class
  boundary), probability on any other class is penalised uniformly. The mean
  of this `[B]` output is the reference's `torch.mean(softmax * rrwmap)` over
  (batch, class, space); it is TopoMortar's `RegionWiseLoss` (`rwmap_type=
  "rrwmap"`, `ratio=[1, 1]`), used there alone, without CE or Dice. The loss
  is negative at its optimum: for a perfect prediction it is
  $-\frac{1}{NC}\sum_c \sum_{i \in T_c} \mathrm{EDT}_i/\max\mathrm{EDT}$.
  The map is computed on device (exact EDT), not with CPU scipy; see
  `rrw_map` for absent classes (map = $r_c$, no division by zero) and classes
  filling the image.

  Args:
    logits: `[B, *spatial, C]` floating logits (2 or 3 spatial axes).
    labels: `[B, *spatial]` integer class indices in [0, C), or soft binary
      labels (thresholded at 0.5).
    outside: $r_c$, a number or `[C]` array (1 in the paper and TopoMortar).

  Returns:
    `[B]` losses in $[-1/C, \max_c r_c / C]$ for $r_c \ge -1$ (each
    pixel's $\sum_c p_{ic}\mathrm{RRW}_{ic}$ is a convex combination). An
    example with out-of-range labels gives NaN under `jit` (eagerly, a
    `ValueError`).

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from topojax.losses import rwloss
    >>> labels = jnp.zeros((2, 1, 7), jnp.int32).at[0, 0, 1:6].set(1)
    >>> logits = 20.0 * jax.nn.one_hot(labels, 2)
    >>> # Example 0: -(1/3 + 2/3 + 1 + 2/3 + 1/3 + 2)/14 (the object, then the
    >>> # background's two end pixels); example 1 has no boundary (`rrw_map`).
    >>> [f"{v:.4f}" for v in rwloss(logits, labels).tolist()]  # perfect; all background
    ['-0.3571', '-0.2715']
    >>> [f"{v:.4f}" for v in rwloss(-logits, labels).tolist()]  # everything wrong: 7/14
    ['0.5000', '0.5000']

  References:
    Valverde & Tohka, "Region-wise loss for biomedical image segmentation",
    Pattern Recognition 136, 2023 (arXiv 2108.01405). Valverde et al.,
    "TopoMortar", arXiv 2503.03365.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  checks.check_logits_and_labels(logits, labels)
  num_classes = logits.shape[-1]
  checks.raise_if_labels_out_of_range(labels, num_classes)
  labels = checks.hard_labels(labels)  # the map is a distance transform of a mask
  if jnp.finfo(logits.dtype).bits < 32:  # low-precision logits: reduce in float32
    logits = logits.astype(jnp.float32)
  rrw = _rrw_map(labels, num_classes, logits.ndim - 2, _outside_values(outside, num_classes))
  return _rw_core(logits, labels, lax.stop_gradient(rrw))
