"""Surface-distance metrics on binary masks: the 95th-percentile Hausdorff distance."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from topojax.metrics._masks import as_binary_pair, batched_structure, count


def _surface(masks: np.ndarray) -> np.ndarray:
  """`[B, *spatial]` -> one-pixel inner boundaries: mask XOR erosion(mask).

  medpy's surface: erosion with the face-connected (cross) element, pixels
  outside the image counting as background.
  """
  structure = batched_structure(masks.ndim - 1, connectivity=1)
  return masks ^ ndimage.binary_erosion(masks, structure=structure, border_value=0)


def hd95(pred, gt, *, ndim: int = 2, empty_value: float | None = None) -> np.ndarray:
  r"""Per-example 95th-percentile symmetric Hausdorff distance, as medpy.

  With $\partial X$ the surface of mask X (X minus its erosion by the cross /
  6-neighbourhood element) and $d(x, Y) = \min_{y \in Y}\lVert x - y\rVert_2$
  in pixel units:

  $$\mathrm{HD95} = \mathrm{percentile}_{95}\bigl(
  \{d(p, \partial G)\}_{p \in \partial P} \cup
  \{d(g, \partial P)\}_{g \in \partial G}\bigr),$$

  one percentile (numpy's linear interpolation) of the concatenated distances
  of both directions. Equal to `medpy.metric.binary.hd95(pred, gt)` (spacing 1,
  connectivity 1), TopoMortar's HD95 metric.

  medpy raises when a mask is empty; TopoMortar records 9999999 for an empty
  prediction and reports it as the image diagonal (722.663 for 512 × 512).
  Here any example where `pred` or `gt` (or both) is empty gets `empty_value`.

  Args:
    pred: `[B, H, W]` (or `[B, D, H, W]` with `ndim=3`) binary predictions:
      bool, or integer/floating with values exactly 0 or 1.
    gt: binary ground truth, same shape as `pred`.
    ndim: number of spatial axes, 2 or 3.
    empty_value: the value where `pred` or `gt` is empty; `None` (default)
      means the image diagonal $\sqrt{\sum_i (s_i - 1)^2}$ over the spatial
      sizes $s_i$.

  Returns:
    `[B]` float64 distances in pixels.

  Examples:
    >>> import numpy as np
    >>> from topojax.metrics import hd95
    >>> gt = np.zeros((2, 512, 512), bool); gt[:, 100:200, 100:200] = True
    >>> pred = np.roll(gt, 3, axis=2); pred[1] = False
    >>> hd95(pred, gt).round(3).tolist()
    [3.0, 722.663]

  References:
    Valverde et al., "TopoMortar: A dataset to evaluate topology accuracy in
    image segmentation", BMVC 2025 (`lib/metrics.py`, `HD95Metric`).
  """
  pred, gt = as_binary_pair(pred, gt, ndim)
  if empty_value is None:
    empty_value = float(np.sqrt(sum((s - 1) ** 2 for s in pred.shape[1:])))
  out = np.full(pred.shape[0], empty_value, np.float64)
  surf_pred, surf_gt = _surface(pred), _surface(gt)
  for b in np.flatnonzero((count(pred) > 0) & (count(gt) > 0)):
    to_gt = ndimage.distance_transform_edt(~surf_gt[b])[surf_pred[b]]
    to_pred = ndimage.distance_transform_edt(~surf_pred[b])[surf_gt[b]]
    out[b] = np.percentile(np.concatenate([to_gt, to_pred]), 95)
  return out
