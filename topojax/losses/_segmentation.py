"""Region and centerline segmentation losses: cross-entropy, Dice, clDice.

All losses take logits `[B, *spatial, C]` (channels-last, softmax over C; C = 2
for binary segmentation) and integer labels `[B, *spatial]`, and return one value
per example, `[B]`. Sums run per image over space (and classes where stated).
For binary problems the labels may also be soft, the foreground probability q
in [0, 1] (a teacher's predictions in self-distillation): the one-hot target
becomes (1 - q, q) in every formula.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from topojax._src import checks
from topojax.skeleton import soft_skeleton


def _segmentation_loss(*, static_argnames=()):
  """Wraps a loss core: argument checks (eagerly also label values), then jit.

  Shape and dtype checks run at trace time; the label-range check raises only
  when labels are concrete, and the jitted core flags them with NaN otherwise.
  """
  def wrap(core):
    jitted = jax.jit(core, static_argnames=static_argnames)

    @functools.wraps(core)
    def loss(logits, labels, **hyperparameters):
      logits, labels = jnp.asarray(logits), jnp.asarray(labels)
      checks.check_logits_and_labels(logits, labels)
      checks.raise_if_labels_out_of_range(labels, logits.shape[-1])
      return jitted(logits, labels, **hyperparameters)
    return loss
  return wrap


def _prepare(logits, labels):
  """Returns float32-or-wider logits, one-hot labels and per-example validity."""
  num_classes = logits.shape[-1]
  if jnp.finfo(logits.dtype).bits < 32:  # low-precision logits: reduce in float32
    logits = logits.astype(jnp.float32)
  valid = checks.labels_in_range(labels, num_classes)
  onehot = checks.soft_one_hot(labels, num_classes, logits.dtype)
  return logits, onehot, valid


def _flag_invalid(loss: jax.Array, valid: jax.Array) -> jax.Array:
  """NaN for examples whose labels are out of range (only knowable at run time)."""
  return jnp.where(valid, loss, jnp.nan)


def _spatial_sum(x: jax.Array) -> jax.Array:
  """Sums `[B, *spatial, C]` over space, keeping `[B, C]`."""
  return jnp.sum(x, axis=tuple(range(1, x.ndim - 1)))


@_segmentation_loss()
def cross_entropy(logits: jax.Array, labels: jax.Array, *,
                  class_weights: jax.Array | None = None) -> jax.Array:
  r"""Per-image softmax cross-entropy, optionally class-weighted.

  $$\mathcal{L}_b = \frac{1}{N}\sum_{i} w_{y_i}\,\bigl(-\log p_{i, y_i}\bigr)$$

  over the N pixels of image b (TopoMortar's weighting: a plain mean, not
  normalised by the weights as torch's `CrossEntropyLoss(weight=...)` is).

  Args:
    logits: `[B, *spatial, C]` floating logits.
    labels: `[B, *spatial]` integer class indices in [0, C), or soft binary
      labels (floating foreground probabilities, C = 2).
    class_weights: optional `[C]` floating per-class weights w (default 1).

  Returns:
    `[B]` losses. An example with out-of-range labels gives NaN under `jit`
    (eagerly, a `ValueError`).

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import cross_entropy
    >>> logits = jnp.zeros((1, 4, 4, 2))
    >>> labels = jnp.zeros((1, 4, 4), jnp.int32)
    >>> print(f"{float(cross_entropy(logits, labels)[0]):.4f}")  # log 2
    0.6931
  """
  logits, targets, valid = _prepare(logits, labels)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  if checks.is_soft(labels):
    nll = -jnp.sum(targets * log_probs, axis=-1)
  else:  # gather: a one-hot product would give 0 * -inf
    nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  if class_weights is not None:
    class_weights = jnp.asarray(class_weights)
    checks.check_floating(class_weights, "class_weights")
    if class_weights.shape != (logits.shape[-1],):
      raise ValueError(
          f"`class_weights` must have shape (C,) = ({logits.shape[-1]},), "
          f"got {class_weights.shape}.")
    weights = class_weights.astype(logits.dtype).reshape((1,) * nll.ndim + (-1,))
    nll = nll * jnp.sum(targets * weights, axis=-1)
  return _flag_invalid(jnp.mean(nll, axis=tuple(range(1, nll.ndim))), valid)


@_segmentation_loss(static_argnames=("include_background",))
def dice(logits: jax.Array, labels: jax.Array, *, include_background: bool = True,
         smooth: float = 1.0) -> jax.Array:
  r"""Per-image soft Dice loss, averaged over classes.

  $$\mathcal{L}_b = 1 - \frac{1}{|\mathcal{C}|}\sum_{c\in\mathcal{C}}
  \frac{2\sum_i p_{ic} g_{ic} + s}{\sum_i p_{ic} + \sum_i g_{ic} + s}$$

  with p the softmax probabilities, g the one-hot labels and $\mathcal{C}$ all
  classes (`include_background=True`, TopoMortar's Dice) or classes 1..C-1
  (the clDice paper's soft Dice).

  Args:
    logits: `[B, *spatial, C]` floating logits.
    labels: `[B, *spatial]` integer class indices in [0, C), or soft binary
      labels (floating foreground probabilities, C = 2).
    include_background: whether class 0 takes part in the mean.
    smooth: s, added to numerator and denominator.

  Returns:
    `[B]` losses in [0, 1] (NaN flags out-of-range labels under `jit`).

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from topojax.losses import dice
    >>> labels = jnp.zeros((1, 8, 8), jnp.int32).at[:, 2:6, 2:6].set(1)
    >>> logits = 20.0 * jax.nn.one_hot(labels, 2)
    >>> dice(logits, labels).round(4).tolist()
    [0.0]

  References:
    Milletari et al., "V-Net", 3DV 2016.
  """
  logits, onehot, valid = _prepare(logits, labels)
  probs = jax.nn.softmax(logits, axis=-1)
  if not include_background:
    probs, onehot = probs[..., 1:], onehot[..., 1:]
  inter = _spatial_sum(probs * onehot)
  denom = _spatial_sum(probs) + _spatial_sum(onehot)
  score = (2.0 * inter + smooth) / (denom + smooth)
  return _flag_invalid(1.0 - jnp.mean(score, axis=-1), valid)


def _channels_first(x: jax.Array) -> jax.Array:
  """`[B, *spatial, C]` -> `[B, C, *spatial]` so spatial axes are last."""
  return jnp.moveaxis(x, -1, 1)


@_segmentation_loss(static_argnames=("num_iter",))
def cldice(logits: jax.Array, labels: jax.Array, *, num_iter: int = 3,
           smooth: float = 1.0) -> jax.Array:
  r"""Per-image soft clDice loss over the foreground classes.

  With S the soft skeleton (`topojax.skeleton.soft_skeleton`), P the
  probabilities and G the one-hot labels of classes 1..C-1, sums over space and
  those classes:

  $$T_{prec} = \frac{\sum S(P)\,G + s}{\sum S(P) + s},\quad
  T_{sens} = \frac{\sum S(G)\,P + s}{\sum S(G) + s},\quad
  \mathcal{L} = 1 - \frac{2\,T_{prec}\,T_{sens}}{T_{prec} + T_{sens}}.$$

  Args:
    logits: `[B, *spatial, C]` floating logits (2 or 3 spatial axes).
    labels: `[B, *spatial]` integer class indices in [0, C), or soft binary
      labels (floating foreground probabilities, C = 2).
    num_iter: soft-skeleton iterations K.
    smooth: s.

  Returns:
    `[B]` losses in [0, 1) (NaN flags out-of-range labels under `jit`). Use it
    with a region loss (`dice_cldice`): alone it can stall at 0.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from topojax.losses import cldice
    >>> labels = jnp.zeros((1, 9, 9), jnp.int32).at[:, 4, :].set(1)
    >>> logits = 20.0 * jax.nn.one_hot(labels, 2)
    >>> cldice(logits, labels).round(4).tolist()
    [0.0]

  References:
    Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular
    Structure Segmentation", CVPR 2021.
  """
  checks.check_positive_int(num_iter, "num_iter", allow_zero=True)
  logits, onehot, valid = _prepare(logits, labels)
  ndim = logits.ndim - 2
  probs = _channels_first(jax.nn.softmax(logits, axis=-1)[..., 1:])
  onehot = _channels_first(onehot[..., 1:])
  skel_pred = soft_skeleton(probs, num_iter=num_iter, ndim=ndim)
  skel_true = soft_skeleton(onehot, num_iter=num_iter, ndim=ndim)
  per_image = lambda x: jnp.sum(x, axis=tuple(range(1, x.ndim)))
  tprec = (per_image(skel_pred * onehot) + smooth) / (per_image(skel_pred) + smooth)
  tsens = (per_image(skel_true * probs) + smooth) / (per_image(skel_true) + smooth)
  return _flag_invalid(1.0 - 2.0 * tprec * tsens / (tprec + tsens), valid)


@_segmentation_loss(static_argnames=("num_iter",))
def dice_cldice(logits: jax.Array, labels: jax.Array, *, alpha: float = 0.5,
                num_iter: int = 3, smooth: float = 1.0) -> jax.Array:
  r"""The clDice paper's `soft_dice_cldice`, evaluated per image.

  $$\mathcal{L} = (1 - \alpha)\,\mathrm{dice}(\text{include\_background=False})
  + \alpha\,\mathrm{cldice}.$$

  Args:
    logits: `[B, *spatial, C]` floating logits.
    labels: `[B, *spatial]` integer class indices in [0, C), or soft binary
      labels (floating foreground probabilities, C = 2).
    alpha: weight of the clDice term, in [0, 1].
    num_iter: soft-skeleton iterations K.
    smooth: s, shared by both terms.

  Returns:
    `[B]` losses in [0, 1].

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import dice_cldice
    >>> labels = jnp.zeros((2, 16, 16), jnp.int32).at[:, 7:9, :].set(1)
    >>> dice_cldice(jnp.zeros((2, 16, 16, 2)), labels).shape
    (2,)

  References:
    Shit et al., CVPR 2021.
  """
  region = dice(logits, labels, include_background=False, smooth=smooth)
  centerline = cldice(logits, labels, num_iter=num_iter, smooth=smooth)
  return (1.0 - alpha) * region + alpha * centerline


@_segmentation_loss(static_argnames=("include_background",))
def cedice(logits: jax.Array, labels: jax.Array, *,
           class_weights: jax.Array | None = None,
           include_background: bool = True, smooth: float = 1.0) -> jax.Array:
  r"""Cross-entropy plus Dice (TopoMortar's CEDice baseline, per image).

  $$\mathcal{L} = \mathrm{cross\_entropy} + \mathrm{dice}.$$

  TopoMortar writes its Dice term as $-$score in [-1, 0]; this is the same loss
  shifted by the constant 1, so gradients are identical.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import cedice
    >>> labels = jnp.zeros((1, 8, 8), jnp.int32)
    >>> cedice(jnp.zeros((1, 8, 8, 2)), labels).shape
    (1,)
  """
  return (cross_entropy(logits, labels, class_weights=class_weights)
          + dice(logits, labels, include_background=include_background,
                 smooth=smooth))
