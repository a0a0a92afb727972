"""Losses on hard, topology-preserving skeletons: Skeleton Recall and cbDice.

Both take logits `[B, *spatial, C]` and integer labels `[B, *spatial]` like the
other segmentation losses, return `[B]`, and compute every skeleton and
distance map on device (`topojax.skeleton.skeletonize`, exact simple points;
`topojax._src.distance.edt`, exact). Skeletons and distance maps are targets
or weights, built under `stop_gradient`: the gradient reaches the logits only
through the softmax probabilities.

Each loss runs in two jitted stages: the non-differentiable targets (the
skeleton loop, the EDT) and the differentiable core. Under an outer `jit` both
inline into one program; called eagerly (and under an eager `grad`) the
compiled targets stage is shared between the value and the gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks
from topojax._src import distance
from topojax._src import morphology
from topojax.losses._segmentation import _flag_invalid
from topojax.losses._segmentation import _spatial_sum
from topojax.losses._segmentation import cross_entropy
from topojax.losses._segmentation import dice
from topojax.skeleton import skeletonize

I_NORMS = ("old", "current")
COMPATS = (None, "menten")


# --- shared pieces ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _skeleton_of(mask: jax.Array, ndim: int, num_iter: int | None,
                 compat: str | None) -> jax.Array:
  """Bool curve skeleton of the bool `mask` (no gradient)."""
  skel = skeletonize(mask.astype(jnp.float32), ndim=ndim, num_iter=num_iter, compat=compat)
  return lax.stop_gradient(skel) > 0.5


def _check_inputs(logits, labels) -> tuple[jax.Array, jax.Array, int]:
  """The segmentation checks (eagerly also the label values); soft labels
  become their mask q > 0.5 (these losses are built on the truth's mask)."""
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  ndim = checks.check_logits_and_labels(logits, labels)
  checks.raise_if_labels_out_of_range(labels, logits.shape[-1])
  labels = checks.hard_labels(labels)
  if jnp.finfo(logits.dtype).bits < 32:  # low-precision logits: compute in float32
    logits = logits.astype(jnp.float32)
  return logits, labels, ndim


def _check_skeleton_args(num_iter: int | None, compat: str | None) -> None:
  if num_iter is not None:
    checks.check_positive_int(num_iter, "num_iter", allow_zero=True)
  if compat not in COMPATS:
    raise ValueError(f"`compat` must be one of {COMPATS}, got {compat!r}.")


# --- Skeleton Recall -------------------------------------------------------------------------


def tubed_skeleton(mask: jax.Array, *, ndim: int, tube_radius: int = 2,
                   num_iter: int | None = None, compat: str | None = "menten") -> jax.Array:
  r"""Skeleton Recall's target: the skeleton, dilated, inside the mask.

  $$T = \delta_+^{\,r}\bigl(\mathrm{skel}(M)\bigr) \cap M,$$

  with skel the curve skeleton of `topojax.skeleton.skeletonize` (exact,
  topology-preserving, to convergence by default) and $\delta_+$ one binary
  dilation by the radius-1 cross (4-neighbours in 2D, 6 in 3D): skimage's
  default footprint, which the reference applies twice (`dilation(dilation(
  skel))`). The tube is an $\ell_1$ ball of radius r around the skeleton.

  The skeleton runs Menten et al.'s schedule by default (`compat="menten"`:
  end points fixed once per iteration), which is close to the reference's
  skimage skeleton (on smooth random masks: 0.9x its pixels in 2D, 1.1x in
  3D); `compat=None` (end points re-checked before every subfield) keeps many
  short spurs (2x in 2D, 3.5x in 3D) and so gives a much fatter tube.

  Args:
    mask: `[..., *spatial]` bool or numeric (nonzero = inside).
    ndim: 2 or 3 spatial axes.
    tube_radius: r, the number of cross dilations (2 in the paper).
    num_iter: skeleton iterations; `None` runs to convergence.
    compat: the `skeletonize` schedule, "menten" or None.

  Returns:
    Bool array of `mask`'s shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import tubed_skeleton
    >>> bar = jnp.zeros((9, 15), bool).at[1:8, 1:14].set(True)  # 7 rows high
    >>> tubed_skeleton(bar, ndim=2)[:, 7].astype(int).tolist()  # centre row +- 2
    [0, 0, 1, 1, 1, 1, 1, 0, 0]
  """
  checks.check_ndim(ndim)
  checks.check_positive_int(tube_radius, "tube_radius", allow_zero=True)
  _check_skeleton_args(num_iter, compat)
  mask = jnp.asarray(mask)
  checks.check_spatial(mask, "mask", ndim)
  inside = mask if mask.dtype == jnp.bool_ else mask != jnp.zeros((), mask.dtype)
  return _dilate_inside(_skeleton_of(inside, ndim, num_iter, compat), inside, ndim, tube_radius)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _dilate_inside(skel: jax.Array, inside: jax.Array, ndim: int, tube_radius: int) -> jax.Array:
  for _ in range(tube_radius):
    skel = morphology.dilate_cross(skel, ndim)
  return skel & inside


def _recall_target(labels: jax.Array, num_classes: int, ndim: int, tube_radius: int,
                   num_iter: int | None, per_class: bool, compat: str | None) -> jax.Array:
  """`[B, *spatial, C-1]` bool: the tube of each foreground class."""
  tube = lambda m: tubed_skeleton(m, ndim=ndim, tube_radius=tube_radius, num_iter=num_iter,
                                  compat=compat)
  classes = jnp.arange(1, num_classes, dtype=labels.dtype).reshape((1,) * labels.ndim + (-1,))
  of_class = labels[..., None] == classes
  if per_class:
    return jnp.moveaxis(tube(jnp.moveaxis(of_class, -1, 1)), 1, -1)
  return of_class & tube(labels > 0)[..., None]


@jax.jit
def _recall_core(logits: jax.Array, labels: jax.Array, target: jax.Array,
                 smooth: float) -> jax.Array:
  valid = checks.labels_in_range(labels, logits.shape[-1])
  probs = jax.nn.softmax(logits, axis=-1)[..., 1:]
  target = target.astype(probs.dtype)
  inter = _spatial_sum(probs * target)
  rec = (inter + smooth) / jnp.maximum(_spatial_sum(target) + smooth, 1e-8)
  return _flag_invalid(-jnp.mean(rec, axis=-1), valid)


def skeleton_recall(logits: jax.Array, labels: jax.Array, *, smooth: float = 1e-5,
                    tube_radius: int = 2, num_iter: int | None = None,
                    per_class: bool = False, compat: str | None = "menten") -> jax.Array:
  r"""Skeleton Recall loss (Kirchhoff et al., ECCV 2024), per image.

  With p the softmax probabilities and $Y_c$ the tubed skeleton of the label
  restricted to class c (`tubed_skeleton`: skeleton, two cross dilations,
  $\cap$ foreground), for the foreground classes $c = 1..C-1$:

  $$\mathrm{rec}_c = \frac{\sum_i p_{ic} Y_{ic} + s}{\max\bigl(\sum_i Y_{ic} + s,
  10^{-8}\bigr)},\qquad \mathcal{L}_b = -\frac{1}{C-1}\sum_{c=1}^{C-1}\mathrm{rec}_c .$$

  The sign and normalisation are the reference's (`SoftSkeletonRecallLoss`:
  `-rec.mean()` over (batch, class), background excluded), so the loss lies in
  [-1, 0] and a perfect recall of the tube gives -1; the mean of this `[B]`
  output is the reference's batch value. A class absent from the tube gives
  $\mathrm{rec}_c = 1$ (constant). By default (`per_class=False`, as the
  reference's `SkeletonTransform` and TopoMortar) one skeleton is taken of the
  union of the foreground classes, `labels > 0`, and its tube is split by
  class; `per_class=True` skeletonises each class mask on its own.

  The tube is built on device and per call from *this* library's exact curve
  skeleton (Menten et al.'s schedule, to convergence), not from skimage's
  (Zhang-Suen in 2D, Lee in 3D, computed on the CPU in the dataloader by the
  reference): the tubes, hence values, differ slightly. It is a target: no
  gradient flows through it.

  TopoMortar trains with `cross_entropy + 1 * skeleton_recall` and no Dice
  (`ce_skeleton_recall`); the paper's nnU-Net adds a Dice term.

  Args:
    logits: `[B, *spatial, C]` floating logits (2 or 3 spatial axes).
    labels: `[B, *spatial]` integer class indices in [0, C), or soft binary
      labels (thresholded at 0.5).
    smooth: s (1e-5 in the reference).
    tube_radius: number of cross dilations of the skeleton (2 in the paper).
    num_iter: skeleton iterations; `None` runs to convergence.
    per_class: skeletonise each foreground class separately.
    compat: the skeleton schedule (see `tubed_skeleton`).

  Returns:
    `[B]` losses in [-1, 0]. An example with out-of-range labels gives NaN
    under `jit` (eagerly, a `ValueError`).

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from topojax.losses import skeleton_recall
    >>> labels = jnp.zeros((2, 12, 12), jnp.int32).at[0, 4:8, 1:11].set(1)
    >>> logits = 20.0 * jax.nn.one_hot(labels, 2)
    >>> skeleton_recall(logits, labels).round(4).tolist()  # perfect; empty label
    [-1.0, -1.0]
    >>> skeleton_recall(jnp.zeros((2, 12, 12, 2)), labels).round(4).tolist()
    [-0.5, -1.0]

  References:
    Kirchhoff et al., "Skeleton Recall Loss for Connectivity Conserving and
    Resource Efficient Segmentation of Thin Tubular Structures", ECCV 2024.
  """
  logits, labels, ndim = _check_inputs(logits, labels)
  checks.check_positive_int(tube_radius, "tube_radius", allow_zero=True)
  _check_skeleton_args(num_iter, compat)
  target = _recall_target(labels, logits.shape[-1], ndim, tube_radius, num_iter,
                          bool(per_class), compat)
  return _recall_core(logits, labels, lax.stop_gradient(target), smooth)


def ce_skeleton_recall(logits: jax.Array, labels: jax.Array, *, weight: float = 1.0,
                       smooth: float = 1e-5, tube_radius: int = 2,
                       num_iter: int | None = None, per_class: bool = False,
                       compat: str | None = "menten",
                       class_weights: jax.Array | None = None) -> jax.Array:
  r"""TopoMortar's `CESkeletonRecallLoss`, per image.

  $$\mathcal{L} = \mathrm{cross\_entropy} + \lambda\,\mathrm{skeleton\_recall}$$

  with $\lambda$ = `weight` (1 in TopoMortar; no Dice term). Other arguments
  as in `cross_entropy` and `skeleton_recall`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import ce_skeleton_recall
    >>> labels = jnp.zeros((1, 8, 8), jnp.int32).at[:, 3:5, :].set(1)
    >>> print(f"{float(ce_skeleton_recall(jnp.zeros((1, 8, 8, 2)), labels)[0]):.4f}")
    0.1931
  """
  return (cross_entropy(logits, labels, class_weights=class_weights)
          + weight * skeleton_recall(logits, labels, smooth=smooth, tube_radius=tube_radius,
                                     num_iter=num_iter, per_class=per_class, compat=compat))


# --- cbDice ----------------------------------------------------------------------------------


def _foreground_prob(logits: jax.Array) -> jax.Array:
  """softmax([l_0, max_{c>=1} l_c])[1], the reference's binary collapse."""
  return jax.nn.sigmoid(jnp.max(logits[..., 1:], axis=-1) - logits[..., 0])


@jax.jit
def _cb_masks(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """`[2B, *spatial]` bool: the truth `labels > 0`, then the hard prediction p > 0.5."""
  return jnp.concatenate([labels > 0, _foreground_prob(logits) > 0.5], axis=0)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _cb_maps(mask: jax.Array, skel: jax.Array, ndim: int,
             i_norm: str) -> tuple[jax.Array, jax.Array, jax.Array]:
  """cbDice's `get_weights` before the soft factors, per image, float32:
  (min(D, R_max)/R_max, R/R_max, I on the skeleton)."""
  space = tuple(range(1, mask.ndim))
  dist = distance.edt(mask, ndim=ndim)  # 0 outside the mask
  zero, one = jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32)
  radius = jnp.where(skel, dist, zero)
  r_max = jnp.maximum(jnp.max(radius, axis=space, keepdims=True), one)
  dist_norm = jnp.minimum(dist, r_max) / r_max
  radius_norm = radius / r_max
  power = 1 if ndim == 2 else 2
  if i_norm == "old":  # division-based inverse (TopoMortar's copy)
    importance = (1 + 1e-7) / (radius_norm ** power + 1e-7)
  else:  # subtraction-based inverse (the cbDice repository's current code)
    r_min = jnp.maximum(jnp.min(radius, axis=space, keepdims=True), one)
    importance = ((r_max - radius + r_min) / r_max) ** power
  return dist_norm, radius_norm, jnp.where(skel, importance, zero)


def _combine(a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
  """cbDice's `combine_tensors`: `b * c`, except `a * c` where a != 0 and b == 0."""
  zero = jnp.zeros((), a.dtype)
  return jnp.where((a != zero) & (b == zero), a, b) * c


@jax.jit
def _cb_core(logits: jax.Array, labels: jax.Array, dist_norm: jax.Array,
             radius_norm: jax.Array, importance: jax.Array, smooth: float) -> jax.Array:
  valid = checks.labels_in_range(labels, logits.shape[-1])
  prob = _foreground_prob(logits)
  dtype, batch = prob.dtype, prob.shape[0]
  truth = (labels > 0).astype(dtype)
  dist_norm, radius_norm, importance = (
      m.astype(dtype) for m in (dist_norm, radius_norm, importance))
  # The truth's weights times its mask; the prediction's times p (skel_pred_prob = S_P p).
  q_vl, q_slvl, q_sl = (dist_norm[:batch] * truth, radius_norm[:batch] * truth,
                        importance[:batch])
  q_vp, q_spvp, q_sp = (dist_norm[batch:] * prob, radius_norm[batch:] * prob,
                        importance[batch:] * prob)
  total = lambda x: jnp.sum(x, axis=tuple(range(1, x.ndim)))
  w_prec = (total(q_sp * q_vl) + smooth) / (total(_combine(q_spvp, q_slvl, q_sp)) + smooth)
  w_sens = (total(q_sl * q_vp) + smooth) / (total(_combine(q_slvl, q_spvp, q_sl)) + smooth)
  return _flag_invalid(-2.0 * w_prec * w_sens / (w_prec + w_sens), valid)


def cbdice(logits: jax.Array, labels: jax.Array, *, smooth: float = 1.0,
           skeleton_iter: int = 5, i_norm: str = "old") -> jax.Array:
  r"""Centerline-boundary Dice loss (Shi et al., MICCAI 2024), per image.

  Binary, on "any foreground": with $\ell_0$ the background logit and
  $\ell_f = \max_{c \ge 1}\ell_c$ (the reference's collapse of the foreground
  channels), $p = \mathrm{softmax}(\ell_0, \ell_f)_1 = \sigma(\ell_f - \ell_0)$
  and the truth $L = [\text{labels} > 0]$. Hard masks $P = [p > 0.5]$ and L are
  skeletonised under `stop_gradient`, $S_P$ and $S_L$, with Menten et al.'s
  schedule (`skeletonize(compat="menten", num_iter=skeleton_iter)`). For each
  mask M with skeleton S, D = EDT(M) (`topojax._src.distance.edt`), R = D on
  S (0 elsewhere), $R_{max} = \max(\max R, 1)$, and

  $$\hat D = \min(D, R_{max})/R_{max},\quad \hat R = R/R_{max},\quad
  I = \begin{cases}(1 + 10^{-7})/(\hat R^{k} + 10^{-7}) & \text{old}\\
  \bigl((R_{max} - R + R_{min})/R_{max}\bigr)^{k} & \text{current}\end{cases}
  \ \text{on } S,\ 0 \text{ elsewhere},$$

  k = 1 in 2D and 2 in 3D, $R_{min} = \max(\min R, 1)$ (the minimum over the
  whole image, 0 off the skeleton, so in practice 1). The weighted maps are
  $q_{vl} = \hat D_L L$, $q_{sl,vl} = \hat R_L L$, $q_{sl} = I_L S_L$ for the
  truth and $q_{vp} = \hat D_P\, p$, $q_{sp,vp} = \hat R_P\, p$,
  $q_{sp} = I_P S_P\, p$ for the prediction (skel_pred_prob = $S_P\,p$), and
  with $\mathrm{comb}(a, b, c) = (b \text{ where } b \ne 0 \text{ else } a)\,c$:

  $$w_{prec} = \frac{\sum q_{sp} q_{vl} + s}{\sum \mathrm{comb}(q_{sp,vp}, q_{sl,vl},
  q_{sp}) + s},\quad w_{sens} = \frac{\sum q_{sl} q_{vp} + s}{\sum
  \mathrm{comb}(q_{sl,vl}, q_{sp,vp}, q_{sl}) + s},\quad
  \mathcal{L} = -\frac{2\,w_{prec}\,w_{sens}}{w_{prec} + w_{sens}}.$$

  This is TopoMortar's `cbDiceLoss` term (`lib/losses.py`, `lib/losses_cbdice.py`:
  `get_weights`, `combine_tensors`), whose `I_norm` is the division-based
  "old" one; `i_norm="current"` is the cbDice repository's subtraction-based
  update. Differences: sums run per image (the references sum over the batch
  too; $R_{max}$ is per image in both); the skeleton is this library's exact
  one (Boolean simple-point test), whereas TopoMortar's runs Menten's
  Euler-characteristic test, which is not a complete simple-point test in 3D,
  so skeletons can differ (certainly in 3D; the two were not compared in 2D);
  gradients flow through p only, as in the reference. Use it with cross-entropy and Dice (`cedice_cbdice`).

  Args:
    logits: `[B, *spatial, C]` floating logits (2 or 3 spatial axes).
    labels: `[B, *spatial]` integer class indices in [0, C) (soft binary labels
      are thresholded at 0.5); all classes >= 1
      count as foreground.
    smooth: s (> 0 keeps empty masks finite; 1 in TopoMortar).
    skeleton_iter: Menten skeleton iterations (5 in TopoMortar).
    i_norm: "old" (TopoMortar) or "current" (cbDice repository).

  Returns:
    `[B]` losses <= 0; -1 for a perfect (or an empty and correctly empty)
    prediction. Not bounded below by -1: the weighted ratios can exceed 1
    where the two masks' normalisations differ (the reference's too). NaN
    flags out-of-range labels under `jit`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from topojax.losses import cbdice
    >>> labels = jnp.zeros((2, 12, 12), jnp.int32).at[0, 4:8, 1:11].set(1)
    >>> logits = 20.0 * jax.nn.one_hot(labels, 2)
    >>> cbdice(logits, labels).round(4).tolist()
    [-1.0, -1.0]
    >>> print(f"{float(cbdice(-logits, labels)[0]):.4f}")  # everything wrong
    -0.0488

  References:
    Shi et al., "Centerline Boundary Dice Loss for Vascular Segmentation",
    MICCAI 2024. Valverde et al., "TopoMortar", arXiv 2503.03365.
  """
  logits, labels, ndim = _check_inputs(logits, labels)
  checks.check_positive_int(skeleton_iter, "skeleton_iter", allow_zero=True)
  if i_norm not in I_NORMS:
    raise ValueError(f"`i_norm` must be one of {I_NORMS}, got {i_norm!r}.")
  masks = _cb_masks(lax.stop_gradient(logits), labels)  # truth, then prediction
  skels = _skeleton_of(masks, ndim, skeleton_iter, "menten")
  maps = lax.stop_gradient(_cb_maps(masks, skels, ndim, i_norm))
  return _cb_core(logits, labels, *maps, smooth)


def cedice_cbdice(logits: jax.Array, labels: jax.Array, *, alpha: float = 1.0,
                  beta: float = 1.0, smooth: float = 1.0, dice_smooth: float = 1e-5,
                  skeleton_iter: int = 5, i_norm: str = "old",
                  class_weights: jax.Array | None = None) -> jax.Array:
  r"""TopoMortar's cbDice configuration (cbDice paper, Sec. 3.2), per image.

  $$\mathcal{L} = \tfrac12\,\mathrm{cross\_entropy}
  + \frac{\alpha}{2(\alpha+\beta)}\,\mathrm{dice}
  + \frac{\beta}{2(\alpha+\beta)}\,\mathrm{cbdice}$$

  with Dice over all classes, background included (`dice_smooth`, 1e-5 in
  TopoMortar); other arguments as in `cross_entropy` and `cbdice`. TopoMortar
  writes its Dice as $-$score; `dice` is 1 $-$ score, so this loss is
  TopoMortar's plus the constant $\alpha/(2(\alpha+\beta))$.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import cedice_cbdice
    >>> labels = jnp.zeros((1, 8, 8), jnp.int32).at[:, 3:5, :].set(1)
    >>> cedice_cbdice(jnp.zeros((1, 8, 8, 2)), labels).shape
    (1,)
  """
  w_dice = alpha / (2.0 * (alpha + beta))
  w_cb = beta / (2.0 * (alpha + beta))
  return (0.5 * cross_entropy(logits, labels, class_weights=class_weights)
          + w_dice * dice(logits, labels, include_background=True, smooth=dice_smooth)
          + w_cb * cbdice(logits, labels, smooth=smooth, skeleton_iter=skeleton_iter,
                          i_norm=i_norm))
