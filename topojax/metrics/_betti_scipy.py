"""TopoMortar's Betti numbers on the CPU, by connected-component labelling (scipy).

The numpy metrics `betti_numbers` / `betti_errors` use this: on a CPU it is
5-20x faster than persistence for the Betti numbers at one level, and it is
independent of `topojax.ph`, so the tests use it as an oracle for the device
versions. TopoMortar's convention (gudhi, T-construction of `1 - mask`):

* β0: foreground components, full connectivity (8 in 2D, 26 in 3D); an empty
  mask counts as β0 = 1 (gudhi's essential class);
* β_{n-1}: face-connected background components off the image border
  (Alexander duality);
* β1 in 3D: β0 + β2 − χ, with χ the Euler characteristic of the union of closed
  foreground voxels (cell counting).

All functions take validated bool masks `[B, *spatial]` (numpy).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from topojax.metrics._masks import batched_structure


def components_per_example(x: np.ndarray, connectivity: int) -> np.ndarray:
  """`[B, *spatial]` bool -> `[B]` number of connected components of each example."""
  labels, num = ndimage.label(x, structure=batched_structure(x.ndim - 1, connectivity))
  if num == 0:
    return np.zeros(x.shape[0], np.int64)
  # Components never span two examples; each one's bounding box starts in its own.
  owner = [box[0].start for box in ndimage.find_objects(labels, max_label=num)]
  return np.bincount(np.asarray(owner, np.int64), minlength=x.shape[0])


def enclosed_background(mask: np.ndarray) -> np.ndarray:
  """`[B]` face-connected background components not touching the image border."""
  spatial_pad = [(0, 0)] + [(1, 1)] * (mask.ndim - 1)
  # A background frame merges every border-touching component into one.
  framed = np.pad(~mask, spatial_pad, constant_values=True)
  return components_per_example(framed, connectivity=1) - 1


def _along(x: np.ndarray, axis: int, index: slice) -> np.ndarray:
  """`x[..., index, ...]` with `index` applied on `axis`."""
  return x[(slice(None),) * axis + (index,)]


def euler_characteristic(mask, xp=np):
  """`[B]` Euler characteristic of the union of closed foreground cells.

  A cell of the cubical grid is open along the axes in S (one pixel long) and a
  point along the others; it belongs to the closed foreground iff one of the
  2^(n-|S|) pixels around it does. χ = Σ_S (−1)^|S| (number of such cells).
  `xp` is numpy or jax.numpy (the device metric counts the same way).
  """
  ndim = mask.ndim - 1
  padded = xp.pad(mask, [(0, 0)] + [(1, 1)] * ndim)
  spatial = tuple(range(1, ndim + 1))
  chi = xp.zeros(mask.shape[:1], xp.int32)
  for open_axes in itertools.product((False, True), repeat=ndim):
    cells = padded
    for axis, is_open in enumerate(open_axes, start=1):
      if is_open:  # the cell spans pixel i along this axis
        cells = _along(cells, axis, slice(1, -1))
      else:  # the cell sits on the grid line between pixels i - 1 and i
        cells = (_along(cells, axis, slice(None, -1))
                 | _along(cells, axis, slice(1, None)))
    chi = chi + (-1) ** sum(open_axes) * xp.sum(cells, axis=spatial, dtype=xp.int32)
  return chi


def betti_numbers(mask: np.ndarray) -> np.ndarray:
  """Bool `[B, *spatial]` -> `[B, ndim]` int64 Betti numbers, by labelling."""
  ndim = mask.ndim - 1
  b0 = components_per_example(mask, connectivity=ndim)
  top = enclosed_background(mask)
  if ndim == 2:
    betti = [b0, top]
  else:
    betti = [b0, b0 + top - euler_characteristic(mask), top]
  betti = np.stack(betti, axis=1).astype(np.int64)
  betti[b0 == 0, 0] = 1  # gudhi's convention for the empty mask
  return betti
