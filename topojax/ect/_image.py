"""ECT and weighted ECT of cubical complexes built from 2D and 3D images.

Cells of the grid are indexed by their *type*, the set of axes they extend
along (vertices: none; in 2D edges {0} or {1}, squares {0, 1}). Every image of
a batch shares the grid, so the heights of all cells are computed once and
only the cells' weights differ between images.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from topojax._src import checks
from topojax.ect import _ect
from topojax.kernels import ect_accumulate as acc

CONSTRUCTIONS = ("T", "V")


def _cell_types(ndim):
  return [e for r in range(ndim + 1) for e in itertools.combinations(range(ndim), r)]


def _pool(x, ndim, window, op, init):
  """`op` over windows (1 or 2 per spatial axis), VALID: one output per cell."""
  dims = (1,) * (x.ndim - ndim) + tuple(window)
  return lax.reduce_window(x, init, op, dims, (1,) * x.ndim, "VALID")


def _cell_values(image, ndim, construction, cell_type, reducer):
  """Per-cell reduction of the pixels a cell touches (T) or spans (V)."""
  op, fill = {"max": (lax.max, -jnp.inf), "min": (lax.min, jnp.inf)}[reducer]
  if construction == "T":
    # A T-cell of type e touches the pixels around it along the other axes:
    # pad by one there and take windows of 2 (1 along e).
    pad = [(0, 0)] * (image.ndim - ndim) + [
        (0, 0) if a in cell_type else (1, 1) for a in range(ndim)]
    padded = jnp.pad(image, pad, constant_values=fill)
    window = [1 if a in cell_type else 2 for a in range(ndim)]
    return _pool(padded, ndim, window, op, fill)
  window = [2 if a in cell_type else 1 for a in range(ndim)]  # V: its vertex pixels
  return _pool(image, ndim, window, op, fill)


def _cell_heights(spatial, construction, cell_type, directions):
  """Heights `[cells, D]` of one cell type: max over its corners of <c, v>.

  Coordinates: pixel i of an axis spans [i, i + 1]; T-cells have their corners
  on the integer lattice, V-cells on pixel centres. The grid is centred and
  divided by its half-diagonal, so every corner lies in the unit ball.
  """
  ndim = len(spatial)
  offset = 0.0 if construction == "T" else 0.5
  counts = [s + 1 - (a in cell_type) if construction == "T" else s - (a in cell_type)
            for a, s in enumerate(spatial)]
  radius = 0.5 * math.sqrt(sum(s * s for s in spatial))
  axes = [(np.arange(c) + offset - spatial[a] / 2) / radius for a, c in enumerate(counts)]
  corners = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, ndim)
  lower = jnp.matmul(jnp.asarray(corners, directions.dtype), directions.T,
                     precision=lax.Precision.HIGHEST)
  # The highest corner moves one unit along each axis of the cell where v > 0.
  extent = np.zeros((ndim,))
  extent[list(cell_type)] = 1.0 / radius
  extent = jnp.asarray(extent, directions.dtype)[None, :]
  return lower + jnp.maximum(directions * extent, 0.0).sum(axis=1)[None, :]


def image_ect(images: jax.Array, *, ndim: int = 2, directions: jax.Array, thresholds: jax.Array,
              scale: float | jax.Array | None = None, weighted: bool = False,
              construction: str = "T", tie: str = "closed", band_width: int | None = None,
              impl: str = "auto") -> jax.Array:
  r"""ECT of the cubical complex of binary masks, or weighted ECT of grayscale images.

  Binary (`weighted=False`): the complex is the foreground (nonzero pixels).
  With `construction="T"` every foreground pixel is a closed square (cube) and
  the complex is their union, foreground 8-connected (26 in 3D), so
  $\mathrm{ECT}(v, t)$ for $t$ above every height is the Euler characteristic
  of `topojax.metrics.euler_characteristic`. With `"V"` pixels are vertices
  and a cell is present when all of its pixels are (4-/6-connected).

  Weighted (`weighted=True`): every cell of the grid is present with weight
  $w(\sigma)$, the maximum of the pixel values it touches (T) or spans (V),
  and $\mathrm{WECT}(v, t) = \sum_\sigma (-1)^{\dim\sigma} w(\sigma)\,
  F(t - h_v(\sigma))$, differentiable in the pixel values.

  Heights are those of `ect` on the grid's corners, in coordinates where
  pixel $i$ spans $[i, i + 1]$, centred and divided by the half-diagonal
  (every cell lies in the unit ball: `linear_thresholds(1.0, T)` covers it).
  Direction components follow the array axes.

  Args:
    images: `[..., *spatial]`; the last `ndim` axes spatial.
    ndim: 2 or 3.
    directions: `[D, ndim]`.
    thresholds: `[T]` increasing.
    scale: None (exact) or the sigmoid scale.
    weighted: weight cells by the image values instead of 0/1 presence.
    construction: "T" (pixels are squares/cubes) or "V" (pixels are vertices).
    tie, band_width, impl: as in `ect`.

  Returns:
    `[..., D, T]` in float32 (or the images' floating dtype).

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.ect import image_ect, circle_directions, linear_thresholds
    >>> ring = jnp.ones((5, 5)).at[2, 2].set(0.0)
    >>> curves = image_ect(ring, directions=circle_directions(4), thresholds=linear_thresholds(1.0, 9))
    >>> curves[:, -1].tolist()  # every cell counted: chi of an annulus
    [0.0, 0.0, 0.0, 0.0]
  """
  checks.check_ndim(ndim)
  images = jnp.asarray(images)
  checks.check_spatial(images, "images", ndim)
  if construction not in CONSTRUCTIONS:
    raise ValueError(f"`construction` must be one of {CONSTRUCTIONS}, got {construction!r}.")
  dtype = images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32
  if weighted:
    checks.check_floating(images, "images")
  directions, thresholds = _ect._check_common(directions, thresholds, scale, tie, impl, ndim)
  width = _ect._resolve_band_width(thresholds, scale, band_width)
  impl = "banded" if impl == "auto" else impl
  directions = directions.astype(dtype)
  scale = None if scale is None else jnp.asarray(scale, dtype)

  spatial = images.shape[images.ndim - ndim:]
  lead = images.shape[:images.ndim - ndim]
  flat = images.reshape((math.prod(lead),) + spatial)
  values = flat.astype(dtype) if weighted else (flat != jnp.zeros((), flat.dtype)).astype(dtype)
  heights, weights = [], []
  for cell_type in _cell_types(ndim):
    reducer = "max" if (weighted or construction == "T") else "min"
    cell_values = _cell_values(values, ndim, construction, cell_type, reducer)
    if not cell_values.size:
      continue
    heights.append(_cell_heights(spatial, construction, cell_type, directions))
    weights.append((-1.0) ** len(cell_type) * cell_values.reshape(cell_values.shape[0], -1))
  heights, weights = jnp.concatenate(heights), jnp.concatenate(weights, axis=1)
  segments = jnp.zeros((heights.shape[0],), jnp.int32)
  uniform = _ect.uniform_grid(thresholds)

  def one_image(w):
    curves, overflow = acc.accumulate(heights, w, segments, thresholds.astype(dtype), scale, 1,
                                      tie, width, impl, acc.BlockSizes(), uniform)
    return jnp.where(overflow[:, None, None] | ~jnp.isfinite(w).all(), jnp.nan, curves)[0]

  curves = jax.vmap(one_image)(weights)
  return curves.reshape(lead + curves.shape[1:])
