"""Overlap metrics on binary masks: Dice and the skeleton-based clDice score."""

from __future__ import annotations

import numpy as np

from topojax.metrics._masks import as_binary_pair, count

def _ratio(num: np.ndarray, den: np.ndarray, where_zero: float) -> np.ndarray:
  """`num / den` in float64, `where_zero` where `den == 0` (no warnings)."""
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  out = np.full(np.broadcast(num, den).shape, where_zero, np.float64)
  np.divide(num, den, out=out, where=den != 0)
  return out


def dice(pred, gt, *, ndim: int = 2, empty_value: float = 1.0) -> np.ndarray:
  r"""Per-example Dice coefficient of binary masks.

  $$\mathrm{DC}_b = \frac{2\,|P_b \cap G_b|}{|P_b| + |G_b|}$$

  Equal to `medpy.metric.binary.dc` (TopoMortar's Dice metric) wherever
  $|P_b| + |G_b| > 0$. When both masks are empty the ratio is 0/0: medpy's code
  means to return 1 there (a `ZeroDivisionError` branch, which recent numpy no
  longer triggers, so recent medpy returns NaN with a warning); here it is
  `empty_value`, by default 1 (both masks agree perfectly).

  Args:
    pred: `[B, H, W]` (or `[B, D, H, W]` with `ndim=3`) binary predictions:
      bool, or integer/floating with values exactly 0 or 1.
    gt: binary ground truth, same shape as `pred`.
    ndim: number of spatial axes, 2 or 3.
    empty_value: the score of an example where both masks are empty.

  Returns:
    `[B]` float64 scores in [0, 1].

  Examples:
    >>> import numpy as np
    >>> from topojax.metrics import dice
    >>> gt = np.zeros((2, 4, 4), bool); gt[:, :2] = True
    >>> pred = np.zeros((2, 4, 4), bool); pred[0, :2] = True; pred[1, :1] = True
    >>> dice(pred, gt).round(4).tolist()
    [1.0, 0.6667]

  References:
    Valverde et al., "TopoMortar: A dataset to evaluate topology accuracy in
    image segmentation", BMVC 2025 (`lib/metrics.py`, `DiceMetric`).
  """
  pred, gt = as_binary_pair(pred, gt, ndim)
  return _ratio(2 * count(pred & gt), count(pred) + count(gt), empty_value)


def _skeletonize(masks: np.ndarray) -> np.ndarray:
  """`[B, *spatial]` bool -> per-example `skimage.morphology.skeletonize`."""
  try:
    from skimage.morphology import skeletonize  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "`topojax.metrics.cldice` needs scikit-image (`pip install "
        "scikit-image`).") from e
  out = np.zeros_like(masks)
  for b, mask in enumerate(masks):
    if mask.any():
      out[b] = skeletonize(mask)
  return out


def cldice(pred, gt, *, ndim: int = 2) -> np.ndarray:
  r"""Per-example clDice score with exact (skimage) skeletons, as TopoMortar.

  With $S(\cdot)$ the `skimage.morphology.skeletonize` skeleton and sums over
  the pixels of example b:

  $$T_{prec} = \frac{\sum P\,S(G)}{\sum S(G)},\quad
  T_{sens} = \frac{\sum G\,S(P)}{\sum S(P)},\quad
  \mathrm{clDice} = \frac{2\,T_{prec}\,T_{sens}}{T_{prec} + T_{sens}}.$$

  (TopoMortar names the ratios this way round, the clDice paper the other;
  the harmonic mean is symmetric.)

  Conventions for the 0/0 cases:

  * **NaN where a skeleton is empty**, i.e. where `pred` or `gt` is empty
    (skimage keeps at least one pixel of every non-empty component), exactly
    as TopoMortar. Aggregate with `np.nanmean` or count these separately.
  * **0.0 where both skeletons are non-empty but** $T_{prec} = T_{sens} = 0$
    (no skeleton pixel of either mask lies inside the other mask): the limit
    of the harmonic mean and the worst score. TopoMortar computes 0/0 = NaN
    here.

  Args:
    pred: `[B, H, W]` (or `[B, D, H, W]` with `ndim=3`, Lee's 3D skeleton)
      binary predictions: bool, or integer/floating with values exactly 0 or 1.
    gt: binary ground truth, same shape as `pred`.
    ndim: number of spatial axes, 2 or 3.

  Returns:
    `[B]` float64 scores in [0, 1], NaN where `pred` or `gt` has an empty
    skeleton.

  Examples:
    >>> import numpy as np
    >>> from topojax.metrics import cldice
    >>> gt = np.zeros((3, 9, 9), bool); gt[:, 3:6, :] = True  # a thick bar
    >>> pred = gt.copy(); pred[1, :, 4] = False                # bar cut in two
    >>> pred[2] = False                                       # empty prediction
    >>> cldice(pred, gt).round(4).tolist()
    [1.0, 0.9333, nan]

  References:
    Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular
    Structure Segmentation", CVPR 2021. Valverde et al., "TopoMortar: A dataset
    to evaluate topology accuracy in image segmentation", BMVC 2025
    (`lib/metrics.py`, `clDiceMetric`).
  """
  pred, gt = as_binary_pair(pred, gt, ndim)
  skel_pred, skel_gt = _skeletonize(pred), _skeletonize(gt)
  tprec = _ratio(count(pred & skel_gt), count(skel_gt), np.nan)
  tsens = _ratio(count(gt & skel_pred), count(skel_pred), np.nan)
  # NaN propagates through both products, so empty skeletons stay NaN.
  return _ratio(2.0 * tprec * tsens, tprec + tsens, 0.0)
