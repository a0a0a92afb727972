"""Homotopy warping loss (Hu, NeurIPS 2022), on the device, batched, 2D and 3D.

The hard prediction and the label are warped toward each other by flipping
*simple* points (flips that change no topology) inside their disagreement;
the pixels where no warp could close the disagreement are the topologically
critical ones, and the loss is the cross-entropy on them.

The original (HuXiaoling/Warping, `warping_loss.py`) flips one pixel at a time
in a Python loop, in increasing order of a Euclidean distance transform. Here
the mismatched pixels are grouped into distance levels processed in increasing
order, and inside a level they are flipped in parallel in the 4 (2D) or 8 (3D)
subfields of the stride-2 lattice: points of one subfield are never adjacent,
so whether one is simple does not depend on the others' values, and the
parallel flips are exactly a sequence of single simple flips. One `while_loop`
(bounded by the pixel count, which it provably never reaches) runs all levels
of all images of the batch.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks
from topojax._src import distance
from topojax._src import simple_points as sp
from topojax.losses._segmentation import _flag_invalid
from topojax.losses._segmentation import _prepare
from topojax.losses._segmentation import _segmentation_loss

ORDERINGS = ("edt", "exact_edt", "none")
NORMALIZATIONS = ("pixels", "critical", "hu2022")
# The original's adjacencies: foreground 4 / background 8 (2D), 6 / 26 (3D).
_DEFAULT_CONNECTIVITY = {2: 4, 3: 6}
_DONE = 3  # stages: 0 remove, 1 add, 2 clean-up, 3 finished
_NO_LEVEL = jnp.iinfo(jnp.int32).max


def _check_options(ndim: int, connectivity: int | None, ordering: str) -> int:
  """Validates the warp's options; returns the foreground adjacency."""
  if ordering not in ORDERINGS:
    raise ValueError(f"`ordering` must be one of {ORDERINGS}, got {ordering!r}.")
  if connectivity is None:
    return _DEFAULT_CONNECTIVITY[ndim]
  return sp.check_connectivity(ndim, connectivity)


# --- Distance levels -------------------------------------------------------------------------


def _levels(mask: jax.Array, ndim: int, ordering: str) -> jax.Array:
  """Non-negative int32 flip priority of `mask`'s pixels: lower flips first."""
  if ordering == "none":
    return jnp.zeros(mask.shape, jnp.int32)
  d2, _ = distance.squared_edt(mask, ndim=ndim)  # images without a zero: all far, one level
  if ordering == "exact_edt":
    return d2
  # floor(EDT), exactly: correct the float square root by one either way.
  r = jnp.floor(jnp.sqrt(d2.astype(jnp.float32))).astype(jnp.int32)
  r = r - (r * r > d2).astype(jnp.int32)
  return r + ((r + 1) * (r + 1) <= d2).astype(jnp.int32)


# --- The warp --------------------------------------------------------------------------------


# The loop keeps every mask in a "blocked" layout: each spatial axis of length
# n is padded to 2(m + 2), m = ceil(n / 2) (2 in front, >= 2 behind, all
# background), and split into (m + 2 blocks, 2 phases). Pixel j sits at block
# (j + 2) // 2, phase j % 2, so subfield p is the phase-p slice of blocks
# 1..m, and its neighbours at offset o are equal-shaped slices too: one
# `fori_loop` over the subfields, with a single copy of the simple-point test.


def _to_blocks(a: jax.Array, fill=False) -> jax.Array:
  """`[B, *spatial]` -> `[B, m1 + 2, 2, m2 + 2, 2, ...]` (see above)."""
  pads = [(0, 0)] + [(2, 2 * (-(-n // 2)) + 2 - n) for n in a.shape[1:]]
  a = jnp.pad(a, pads, constant_values=fill)
  return a.reshape((a.shape[0],) + sum(((n // 2, 2) for n in a.shape[1:]), ()))


def _from_blocks(a: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  ndim = len(spatial)
  a = a.reshape((a.shape[0],) + tuple(2 * a.shape[1 + 2 * k] for k in range(ndim)))
  return a[(slice(None),) + tuple(slice(2, 2 + n) for n in spatial)]


def _subfield(blocks: jax.Array, parity, offset, sizes) -> jax.Array:
  """The pixels at `offset` from subfield `parity` (traced bits): `[B, *sizes]`."""
  starts, shape = [jnp.int32(0)], [blocks.shape[0]]
  for p, o, m in zip(parity, offset, sizes):
    q = p + (o + 2)  # padded index 2 i + q
    starts += [q // 2, q % 2]
    shape += [m, 1]
  return lax.dynamic_slice(blocks, starts, shape).reshape((blocks.shape[0],) + sizes)


def _sweep(blocks: jax.Array, active: jax.Array, ndim: int, connectivity: int,
           sizes: tuple[int, ...]) -> jax.Array:
  """Visits the subfields in turn (last axis fastest), flipping the active
  points that are simple when their subfield comes."""
  centre = (0,) * ndim

  def visit(k, blocks):
    parity = [(k >> (ndim - 1 - a)) & 1 for a in range(ndim)]
    cache = {}

    def nb(offset):
      if offset not in cache:
        cache[offset] = _subfield(blocks, parity, offset, sizes)
      return cache[offset]

    simple = sp.simple_from_neighbours(nb, ndim, connectivity)
    flipped = nb(centre) ^ (_subfield(active, parity, centre, sizes) & simple)
    starts = [jnp.int32(0)] + sum(([jnp.int32(1), p] for p in parity), [])
    shape = (blocks.shape[0],) + sum(((m, 1) for m in sizes), ())
    return lax.dynamic_update_slice(blocks, flipped.reshape(shape), starts)

  return lax.fori_loop(0, 2 ** ndim, visit, blocks)


def _warp(source: jax.Array, target: jax.Array, ndim: int, connectivity: int,
          ordering: str) -> jax.Array:
  """`[B, *spatial]` bool: `source` warped toward `target` (see `homotopy_warp`)."""
  batch, spatial = source.shape[0], source.shape[1:]
  sizes = tuple(-(-n // 2) for n in spatial)
  bshape = (batch,) + (1,) * (2 * ndim)
  axes = tuple(range(1, 1 + 2 * ndim))
  # Levels from the source: distance to its background (removals), to its
  # foreground (additions).
  levels = _to_blocks(_levels(jnp.concatenate([source, ~source]), ndim, ordering), 0)
  level_remove, level_add = levels[:batch], levels[batch:]
  source, target = _to_blocks(source), _to_blocks(target)
  remove, add = source & ~target, ~source & target

  def stage_masks(stage):
    s = stage.reshape(bshape)
    cand = jnp.where(s == 0, remove, jnp.where(s == 1, add, s == 2))
    level = jnp.where(s == 0, level_remove, jnp.where(s == 1, level_add, 0))
    return cand, level

  def first_pending(x, cand, level, above):
    """Per image, the lowest level above `above` with a candidate still mismatched."""
    pending = cand & (x != target) & (level > above.reshape(bshape))
    return jnp.min(jnp.where(pending, level, _NO_LEVEL), axis=axes)

  # Each iteration flips a point (at most N in all, a flipped point matches the
  # target for good) or moves one image to its next level (at most N + 1 in
  # all) or stage (3): 2N + 4 iterations always suffice.
  limit = 2 * math.prod(spatial) + 4

  def cond(state):
    it, _, stage, _ = state
    return (it < limit) & jnp.any(stage < _DONE)

  def body(state):
    it, x, stage, level_now = state
    cand, level = stage_masks(stage)
    active = cand & (x != target) & (level <= level_now.reshape(bshape))
    after = _sweep(x, active, ndim, connectivity, sizes)
    flipped = jnp.any(after != x, axis=axes)
    next_level = first_pending(after, cand, level, level_now)
    advance = ~flipped & (next_level == _NO_LEVEL)  # this stage is finished
    stage = jnp.minimum(stage + advance.astype(jnp.int32), _DONE)
    cand, level = stage_masks(stage)
    first = first_pending(after, cand, level, jnp.full((batch,), -1, jnp.int32))
    level_now = jnp.where(flipped, level_now, jnp.where(advance, first, next_level))
    return it + 1, after, stage, level_now

  stage = jnp.zeros((batch,), jnp.int32)
  start = first_pending(source, *stage_masks(stage), jnp.full((batch,), -1, jnp.int32))
  _, warped, _, _ = lax.while_loop(cond, body, (jnp.int32(0), source, stage, start))
  return _from_blocks(warped, spatial)


def _critical(pred: jax.Array, label: jax.Array, ndim: int, connectivity: int,
              ordering: str) -> jax.Array:
  """`[B, *spatial]` bool critical mask; both warps run as one batch."""
  batch = pred.shape[0]
  warped = _warp(jnp.concatenate([label, pred]), jnp.concatenate([pred, label]), ndim,
                 connectivity, ordering)
  warped_label, warped_pred = warped[:batch], warped[batch:]
  return (pred != warped_label) | (label != warped_pred)


def _as_batch(x: jax.Array, name: str, ndim: int) -> jax.Array:
  x = jnp.asarray(x)
  checks.check_spatial(x, name, ndim)
  if x.dtype != jnp.bool_:
    x = x != jnp.zeros((), x.dtype)
  return x.reshape((-1,) + x.shape[x.ndim - ndim:])


@functools.partial(jax.jit, static_argnames=("ndim", "connectivity", "ordering"))
def _homotopy_warp(source, target, *, ndim, connectivity, ordering):
  shape = source.shape
  source, target = _as_batch(source, "source", ndim), _as_batch(target, "target", ndim)
  return _warp(source, target, ndim, connectivity, ordering).reshape(shape)


@functools.partial(jax.jit, static_argnames=("ndim", "connectivity", "ordering"))
def _critical_pixels(pred_mask, label_mask, *, ndim, connectivity, ordering):
  shape = pred_mask.shape
  pred = _as_batch(pred_mask, "pred_mask", ndim)
  label = _as_batch(label_mask, "label_mask", ndim)
  return _critical(pred, label, ndim, connectivity, ordering).reshape(shape)


def _check_pair(a, b, names, ndim):
  checks.check_ndim(ndim)
  a, b = jnp.asarray(a), jnp.asarray(b)
  for name, x in zip(names, (a, b)):
    checks.check_spatial(x, name, ndim)
    if not (x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.integer)
            or jnp.issubdtype(x.dtype, jnp.floating)):
      raise ValueError(f"`{name}` must be bool, integer or floating (nonzero = foreground), "
                       f"got {x.dtype}.")
  if a.shape != b.shape:
    raise ValueError(f"`{names[0]}` and `{names[1]}` must have the same shape, got "
                     f"{a.shape} and {b.shape}.")
  return a, b


def homotopy_warp(source: jax.Array, target: jax.Array, *, ndim: int = 2,
                  connectivity: int | None = None, ordering: str = "edt") -> jax.Array:
  r"""Warps the binary mask `source` toward `target` by simple-point flips.

  Only pixels where the two disagree are flipped, each toward `target`, and
  only when simple (the flip changes no connected component, hole, tunnel or
  cavity), so the result has exactly the topology of `source`. In three
  stages, as Hu (2022):

  1. remove `source & ~target` pixels, by increasing distance to the
     background of `source` (EDT of `source`);
  2. add `~source & target` pixels, by increasing distance to the foreground
     of `source` (EDT of `~source`);
  3. clean-up: flip any remaining mismatched pixel that has become simple.

  Stages 1 and 2 go level by level (`ordering`); at each level the candidates
  of that level and every lower one are swept over the stride-2 subfields
  until none flips. At the end no mismatched pixel is simple: the warp cannot
  be continued (the original's single pass over each list can stop earlier).

  Args:
    source: `[..., *spatial]` bool, integer or floating (nonzero = foreground).
    target: same shape.
    ndim: 2 or 3 spatial axes (the last ones).
    connectivity: foreground adjacency: 4 (default, the original's) or 8 in
      2D, 6 (default) or 26 in 3D; the background gets the other one. Outside
      the image is background.
    ordering: "edt": levels are the integer parts of the Euclidean distances;
      "exact_edt": every distinct distance is its own level (closest to the
      original's sort, more loop iterations); "none": one level.

  Returns:
    Bool array of `source`'s shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import homotopy_warp
    >>> two = jnp.zeros((3, 7), bool).at[1, :3].set(True).at[1, 4:].set(True)
    >>> one = jnp.zeros((3, 7), bool).at[1, :].set(True)
    >>> homotopy_warp(two, one).astype(int)[1].tolist()  # the gap cannot close
    [1, 1, 1, 0, 1, 1, 1]
    >>> homotopy_warp(one, two).astype(int)[1].tolist()  # nor open
    [1, 1, 1, 1, 1, 1, 1]

  References:
    Hu, "Structure-Aware Image Segmentation with Homotopy Warping", NeurIPS 2022.
  """
  source, target = _check_pair(source, target, ("source", "target"), ndim)
  connectivity = _check_options(ndim, connectivity, ordering)
  return _homotopy_warp(source, target, ndim=ndim, connectivity=connectivity,
                        ordering=ordering)


def warping_critical_pixels(pred_mask: jax.Array, label_mask: jax.Array, *, ndim: int = 2,
                            connectivity: int | None = None,
                            ordering: str = "edt") -> jax.Array:
  r"""The homotopy warping's topologically critical pixels.

  With $W(A \to B)$ = `homotopy_warp(A, B)`, $\hat Y$ the predicted and $Y$
  the label foreground,

  $$M = \bigl(\hat Y \ne W(Y \to \hat Y)\bigr) \lor \bigl(Y \ne W(\hat Y \to Y)\bigr),$$

  a subset of the disagreement $\hat Y \ne Y$. A broken line gives its gap, a
  false bridge its pixels, a spurious or missing component or a filled or
  missing hole its whole extent (it cannot be grown from, or shrunk to,
  nothing); a thicker or thinner prediction of the same topology gives none.

  Args:
    pred_mask: `[..., *spatial]` bool, integer or floating (nonzero = foreground).
    label_mask: same shape.
    ndim, connectivity, ordering: as `homotopy_warp`.

  Returns:
    Bool array of `pred_mask`'s shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import warping_critical_pixels
    >>> label = jnp.zeros((3, 7), bool).at[1, :].set(True)
    >>> pred = label.at[1, 3].set(False)  # the line is broken
    >>> warping_critical_pixels(pred, label).astype(int)[1].tolist()
    [0, 0, 0, 1, 0, 0, 0]
  """
  pred_mask, label_mask = _check_pair(pred_mask, label_mask, ("pred_mask", "label_mask"), ndim)
  connectivity = _check_options(ndim, connectivity, ordering)
  return _critical_pixels(pred_mask, label_mask, ndim=ndim, connectivity=connectivity,
                          ordering=ordering)


@_segmentation_loss(static_argnames=("connectivity", "ordering", "normalization"))
def warping(logits: jax.Array, labels: jax.Array, *, connectivity: int | None = None,
            ordering: str = "edt", normalization: str = "pixels") -> jax.Array:
  r"""Homotopy warping loss: cross-entropy on the topologically critical pixels.

  With $\hat Y = \{i : \arg\max_c \text{logits}_{ic} > 0\}$ the hard predicted
  foreground, $Y = \{i : y_i > 0\}$ the label foreground and $M$ their
  critical pixels (`warping_critical_pixels`), per image of N pixels

  $$\mathcal{L}_b = \frac{1}{Z}\sum_{i} M_i\,\bigl(-\log p_{i, y_i}\bigr),\qquad
  Z = N \;(\text{"pixels"}),\quad \max(|M|, 1) \;(\text{"critical"}),\quad
  N / |M| \;(\text{"hu2022"}),$$

  p the softmax over all C classes. M is a constant (no gradient flows
  through the warp); the gradient reaches the logits of critical pixels only.

  Decisions, against the original code (HuXiaoling/Warping) and TopoMortar's
  port of it:

  - Foreground vs background only: classes 1..C-1 form one foreground, as in
    the original (its 0/1 arithmetic) and TopoMortar ("only for background vs.
    foreground"). The cross-entropy uses the full C-class label.
  - Normalisation: the original computes `CE(logits * M, y * M)`, a mean over
    all pixels in which each non-critical pixel adds the constant $\log C$
    (zeroed logits, target 0; no gradient), then multiplies by the batch's
    number of critical pixels. The paper's loss is the pixel-wise loss of the
    masked maps, $L_{pixel}(f \odot M, g \odot M)$; "pixels" (default) is that
    mean without the constant, also the scale of TopoMortar's term (a mean
    over pixels, weight 0.1). "hu2022" keeps the code's extra factor $|M|$,
    counted per image (0 when $M$ is empty). "critical" is the mean over the
    critical pixels.
  - TopoMortar's port is not reproduced: it warps the prediction against the
    one-hot *background* channel (so its critical maps are mostly true
    positives and negatives) and adds $-\log 10^{-15}$ on every
    non-critical pixel.
  - Simple points: the exact test (`topojax.skeleton.simple_points`), with
    the original's adjacencies by default (foreground 4 / background 8 in 2D,
    6 / 26 in 3D) and the outside as background. The original counts the
    components of the whole 3x3 patch, p included, which deletes isolated
    pixels, adds pixels touching the foreground only diagonally, and never
    flips pixels on the image border (TopoMortar) or fails there.
  - Order: the original visits each mismatched pixel once, by increasing EDT
    (removals first, then additions; see `homotopy_warp`). Here the
    levels are the EDT's integer parts (`ordering`), within a level the
    subfields flip in parallel, lower levels stay eligible, and a clean-up
    pass continues until no mismatched pixel is simple. The critical set can
    differ where the order matters (e.g. where across a thick false bridge
    the separating cut falls), and none is left critical merely for having
    become simple after its one visit.

  Cost: two exact EDTs of 2B images, then one loop iteration per distance
  level and per round of flips, each $2^d$ simple-point tests on a quarter
  (eighth) of the pixels of 2B images;
  TopoMortar switches the term on for the last 30 % of the iterations only
  (`weight_schedule("step", start_fraction=0.7)`, weight 0.1 next to Dice).

  Args:
    logits: `[B, *spatial, C]` floating logits (2 or 3 spatial axes).
    labels: `[B, *spatial]` integer class indices in [0, C), or soft binary
      labels (thresholded at 0.5).
    connectivity: foreground adjacency of the warp: 4 (default) or 8 in 2D,
      6 (default) or 26 in 3D.
    ordering: "edt", "exact_edt" or "none" (see `homotopy_warp`).
    normalization: "pixels", "critical" or "hu2022" (Z above).

  Returns:
    `[B]` losses, 0 where the warps close the whole disagreement (e.g. a
    thicker or thinner prediction of the same shape); NaN flags out-of-range
    labels under `jit`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from topojax.losses import warping
    >>> labels = jnp.zeros((1, 5, 7), jnp.int32).at[:, 2, :].set(1)
    >>> broken = labels.at[:, 2, 3].set(0)  # one critical pixel, CE log(1 + e^4)
    >>> logits = 4.0 * jax.nn.one_hot(broken, 2)
    >>> print(f"{float(warping(logits, labels)[0]):.4f}")  # 4.0181 / 35
    0.1148
    >>> thick = labels.at[:, 1:4, :].set(1)  # same topology: nothing critical
    >>> warping(4.0 * jax.nn.one_hot(thick, 2), labels).tolist()
    [0.0]

  References:
    Hu, "Structure-Aware Image Segmentation with Homotopy Warping", NeurIPS 2022.
  """
  ndim = logits.ndim - 2
  connectivity = _check_options(ndim, connectivity, ordering)
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {normalization!r}.")
  labels = checks.hard_labels(labels)  # critical pixels are defined on masks
  logits, _, valid = _prepare(logits, labels)
  pred = jnp.argmax(lax.stop_gradient(logits), axis=-1) > 0
  critical = _critical(pred, labels > 0, ndim, connectivity, ordering)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  axes = tuple(range(1, nll.ndim))
  total = jnp.sum(jnp.where(critical, nll, jnp.zeros((), nll.dtype)), axis=axes)
  count = jnp.sum(critical, axis=axes).astype(nll.dtype)
  pixels = math.prod(labels.shape[1:])
  if normalization == "pixels":
    loss = total / pixels
  elif normalization == "critical":
    loss = total / jnp.maximum(count, 1)
  else:
    loss = total * count / pixels
  return _flag_invalid(loss, valid)
