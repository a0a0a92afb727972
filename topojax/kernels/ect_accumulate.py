"""Accumulating per-cell contributions into Euler characteristic curves.

For cells m with heights `h[m, d]` along directions d, weights `w[m]` or
`w[m, d]` (the sign (-1)^dim, times a cell weight for weighted transforms; per
direction when cells are folded onto their highest vertex) and segment ids
`seg[m]` (the complex each cell belongs to), the curves are

  out[b, d, j] = sum_{m : seg[m] = b} w[m, d] * F(t[j] - h[m, d])

with F the closed step 1[h <= t] (or the open one, 1[h < t]) for the exact
ECT and F(u) = sigmoid(s * u) for the smooth DECT of scale s.

* `accumulate_reference`: the formula evaluated densely, [M, D, T] values at
  once: the oracle, and the DECT formula as its authors compute it.
* `accumulate_banded`: the XLA path. In float32 `sigmoid(z)` is exactly 1 for
  z >= 17 and below 4e-11 for z <= -24, so each (cell, direction) needs real
  sigmoids at only `band_width` thresholds; every threshold above the band
  gets a step of +w through one histogram and a cumulative sum, as the exact
  ECT does (which is the band of width 0). A `custom_vjp` recomputes the band
  in the backward pass: memory is O(M * D + B * D * T), never O(M * D * T).
* `accumulate_pallas`: a Pallas kernel over (direction tiles, cell chunks)
  keeping the [B, D_tile, T] accumulator on chip; each chunk's values are
  formed densely in registers and reduced by a one-hot matmul over segments,
  so nothing of size M * D * T reaches memory. Its backward is a second
  kernel. Tested against the reference in interpret mode.
* `accumulate`: the differentiable entry point (custom_vjp) for all paths.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.experimental import pallas as pl

IMPLS = ("banded", "dense", "pallas", "pallas_interpret")
TIES = ("closed", "open")
# Below this z, sigmoid(z) < 4.2e-8 (under float32's resolution of 1) is
# dropped; from the upper one on jax.nn.sigmoid is exactly 1.0 in float32.
LOWER_CUTOFF = 17.0
UPPER_CUTOFF = 17.0


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Pallas tiles: cells per grid step and directions per tile."""
  cells: int = 256
  directions: int = 32


def required_band_width(thresholds, scale: float) -> int:
  """Smallest static band that holds every unsaturated threshold of any cell.

  A band starts at the first threshold above h - LOWER_CUTOFF / s and covers
  every threshold below h + UPPER_CUTOFF / s: at most the number of thresholds
  in a window of that length (a hair wider, for rounding).
  """
  t = np.asarray(thresholds, np.float64)
  window = (LOWER_CUTOFF + UPPER_CUTOFF) / float(scale) * (1 + 1e-6)
  inside = np.searchsorted(t, t + window, side="left") - np.arange(len(t))
  return int(inside.max())


def is_uniform_grid(thresholds) -> bool:
  """Whether concrete thresholds are evenly spaced (to 1e-4 of the spacing);
  then bins are computed arithmetically instead of by binary search."""
  t = np.asarray(thresholds, np.float64)
  if len(t) < 2 or not t[-1] > t[0]:
    return False
  grid = np.linspace(t[0], t[-1], len(t))
  return bool(np.abs(t - grid).max() <= 1e-4 * (t[-1] - t[0]) / (len(t) - 1))


def _segment_one_hot(segments, num_segments, dtype):
  return (segments[:, None] == jnp.arange(num_segments)[None, :]).astype(dtype)


def _per_pair(weights, shape):
  """Weights `[M]` or `[M, D]` as `[M, D]` (a broadcast, no copy under jit)."""
  return jnp.broadcast_to(weights if weights.ndim == 2 else weights[:, None], shape)


def _smooth(u, scale):
  return jax.nn.sigmoid(scale * u)


def _step(u, tie):
  return (u >= 0) if tie == "closed" else (u > 0)


def accumulate_reference(heights, weights, segments, thresholds, scale, *,
                         num_segments: int, tie: str = "closed") -> jax.Array:
  """The dense formula: `[num_segments, D, T]`, O(M * D * T) memory."""
  u = thresholds[None, None, :] - heights[:, :, None]
  values = _step(u, tie).astype(heights.dtype) if scale is None else _smooth(u, scale)
  member = _segment_one_hot(segments, num_segments, heights.dtype)
  values = _per_pair(weights, heights.shape)[:, :, None] * values
  return jnp.einsum("mb,mdt->bdt", member, values, precision=lax.Precision.HIGHEST)


# ------------------------------------------------------------------ banded


def _first_at_or_above(thresholds, values, strict, uniform):
  """Index of the first threshold >= value (> value if `strict`), in [0, T].

  On a uniform grid an arithmetic estimate is off by at most one step and one
  comparison each way with the stored thresholds makes it exact: 10-50x
  faster than a binary search on XLA:CPU.
  """
  num = thresholds.shape[0]
  if not uniform:
    return jnp.searchsorted(thresholds, values, side="right" if strict else "left",
                            method="scan_unrolled").astype(jnp.int32)
  below = (lambda t, v: t <= v) if strict else (lambda t, v: t < v)
  step = (thresholds[-1] - thresholds[0]) / (num - 1)
  estimate = jnp.ceil((values - thresholds[0]) / step)
  index = jnp.clip(jnp.nan_to_num(estimate, nan=num), 0, num).astype(jnp.int32)
  previous = jnp.take(thresholds, jnp.maximum(index - 1, 0), axis=0)
  current = jnp.take(thresholds, jnp.minimum(index, num - 1), axis=0)
  return jnp.where((index > 0) & ~below(previous, values), index - 1,
                   jnp.where((index < num) & below(current, values), index + 1, index))


def _band_start(heights, thresholds, scale, tie, uniform):
  """First threshold index whose value is not (numerically) zero."""
  if scale is None:
    return _first_at_or_above(thresholds, heights, tie == "open", uniform)
  return _first_at_or_above(thresholds, heights - LOWER_CUTOFF / scale, True, uniform)


def _band(heights, thresholds, scale, start, k):
  """Threshold index, validity, threshold, and sigmoid(s * (t - h)) at band
  slot k (0 past the last threshold). The stored thresholds, not an
  arithmetic grid, keep the values those of the dense formula: at s = 1e4 one
  ulp of t moves the gradient by 3e-4 of its size."""
  index = start + k
  valid = index < thresholds.shape[0]
  t = jnp.take(thresholds, jnp.minimum(index, thresholds.shape[0] - 1), axis=0)
  z = scale * (t - heights)
  return index, valid, t, z, jnp.where(valid, jax.nn.sigmoid(z), 0.0)


def _overflowed(heights, thresholds, scale, start, band_width):
  """True where the first threshold after the band is not saturated."""
  _, valid, _, z, _ = _band(heights, thresholds, scale, start, band_width)
  return valid & ~(z >= UPPER_CUTOFF)


class _FlatBins:
  """Row-major bins `[num_segments, D, T + 1]` of one flat array plus a trash
  bin at the end: 1-D scatters and gathers run 2x faster on XLA:CPU than
  3-index ones, and dropped cells need no bounds mode."""

  def __init__(self, segments, num_segments, num_dirs, num_thresholds):
    self.row = num_thresholds + 1
    self.size = num_segments * num_dirs * self.row
    in_range = (segments >= 0) & (segments < num_segments)
    base = (segments[:, None] * num_dirs + jnp.arange(num_dirs)[None, :]) * self.row
    self.base = jnp.where(in_range[:, None], base, self.size)  # [M, D]
    self.in_range = in_range
    self.shape = (num_segments, num_dirs, self.row)

  def index(self, threshold_index):
    """Flat index of `[M, D]` threshold indices (T means "past the end")."""
    return jnp.where(self.base < self.size, self.base + threshold_index, self.size)

  def scatter(self, flat, index, values):
    return flat.at[index.reshape(-1)].add(values.reshape(-1), mode="promise_in_bounds")

  def zeros(self, dtype):
    return jnp.zeros((self.size + 1,), dtype)

  def unflatten(self, flat):
    return flat[:self.size].reshape(self.shape)

  def flatten(self, curves):
    """`[num_segments, D, T + 1]` -> flat with a zero trash bin."""
    return jnp.concatenate([curves.reshape(-1), jnp.zeros((1,), curves.dtype)])


def accumulate_banded(heights, weights, segments, thresholds, scale, *, num_segments: int,
                      tie: str = "closed", band_width: int = 0,
                      uniform: bool = False) -> tuple[jax.Array, jax.Array]:
  """Histogram + cumulative sum, with sigmoids only inside each band.

  Returns:
    `(curves [num_segments, D, T], overflow [num_segments])`: overflow marks
    segments with a cell whose band was wider than `band_width` (smooth only).
  """
  num_dirs, num_thresholds = heights.shape[1], thresholds.shape[0]
  bins = _FlatBins(segments, num_segments, num_dirs, num_thresholds)
  start = _band_start(heights, thresholds, scale, tie, uniform)
  w = _per_pair(weights, heights.shape)
  steps = bins.scatter(bins.zeros(heights.dtype),
                       bins.index(jnp.minimum(start + band_width, num_thresholds)), w)
  curves = jnp.cumsum(bins.unflatten(steps), axis=-1)
  if scale is None:
    return curves[..., :num_thresholds], jnp.zeros((num_segments,), bool)

  def add_slot(k, flat):
    index, valid, _, _, sig = _band(heights, thresholds, scale, start, k)
    return bins.scatter(flat, bins.index(jnp.where(valid, index, num_thresholds)), w * sig)

  # The band's fractions go to their own buffer: added onto the cumulated
  # counts (thousands) they would lose their low bits.
  band = lax.fori_loop(0, band_width, add_slot, bins.zeros(heights.dtype))
  curves = curves + bins.unflatten(band)
  overflow = _overflowed(heights, thresholds, scale, start, band_width).any(axis=1)
  overflow = jnp.zeros((num_segments + 1,), bool).at[
      jnp.where(bins.in_range, segments, num_segments)].max(overflow)
  return curves[..., :num_thresholds], overflow[:num_segments]


def _suffix_sums(g):
  """S[..., j] = sum_{j' >= j} g[..., j'], with S[..., T] = 0."""
  s = jnp.cumsum(g[..., ::-1], axis=-1)[..., ::-1]
  return jnp.concatenate([s, jnp.zeros_like(s[..., :1])], axis=-1)


class Needs(NamedTuple):
  """Which cotangents the caller differentiates (from symbolic zeros); the
  others are returned as zeros without being computed: each costs an [M, D]
  loop carry (or, for thresholds, a scatter) per band slot."""
  heights: bool = True
  weights: bool = True
  thresholds: bool = True
  scale: bool = True


def _banded_cotangents(heights, weights, segments, thresholds, scale, g, tie, band_width,
                       uniform, needs: Needs = Needs()):
  """(dh, dw, dt, ds) of `accumulate_banded`, recomputing the band."""
  num_segments, num_dirs, num_thresholds = g.shape
  bins = _FlatBins(segments, num_segments, num_dirs, num_thresholds)
  start = _band_start(heights, thresholds, scale, tie, uniform)
  zeros = jnp.zeros_like(heights)
  dt, ds = jnp.zeros_like(thresholds), (None if scale is None else jnp.zeros_like(scale))
  # The step part: each cell reads the suffix sum of g after its band.
  tail = zeros
  if needs.weights:
    tail = jnp.take(bins.flatten(_suffix_sums(g)),
                    bins.index(jnp.minimum(start + band_width, num_thresholds)), axis=0)
  keep = bins.in_range[:, None]
  w = _per_pair(weights, heights.shape)
  per_cell = (lambda dw: dw) if weights.ndim == 2 else (lambda dw: dw.sum(axis=1))
  if scale is None or not (needs.heights or needs.weights or needs.thresholds or needs.scale):
    return zeros, per_cell(tail), dt, ds
  flat_g = bins.flatten(jnp.pad(g, [(0, 0), (0, 0), (0, 1)]))

  def slot(k, acc):
    dw, dz, dzt, dt = acc
    index, valid, t, _, sig = _band(heights, thresholds, scale, start, k)
    gk = jnp.take(flat_g, bins.index(jnp.where(valid, index, num_thresholds)), axis=0)
    slope = gk * sig * (1.0 - sig)
    if needs.thresholds:
      dt = dt.at[jnp.where(valid & keep, index, num_thresholds).reshape(-1)].add(
          (w * slope).reshape(-1), mode="drop")
    return (dw + gk * sig if needs.weights else dw,
            dz + slope if needs.heights else dz,
            dzt + slope * (t - heights) if needs.scale else dzt, dt)

  dw, dz, dzt, dt = lax.fori_loop(0, band_width, slot, (tail, zeros, zeros, dt))
  dh = jnp.where(keep, -scale * w * dz, 0.0)
  ds = jnp.sum(jnp.where(keep, w * dzt, 0.0))
  return dh, per_cell(dw), scale * dt, ds


# ------------------------------------------------------------------ pallas


def _pad_rows(a, multiple, value):
  pad = -a.shape[0] % multiple
  return jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), constant_values=value)


def _pallas_layout(heights, weights, segments, block_sizes, num_segments):
  num_cells, num_dirs = heights.shape
  cells = min(block_sizes.cells, max(num_cells, 1))
  dirs = min(block_sizes.directions, num_dirs)
  pad_dirs = lambda a: jnp.pad(_pad_rows(a, cells, 0.0), [(0, 0), (0, -num_dirs % dirs)])
  h = pad_dirs(heights)
  w = pad_dirs(_per_pair(weights, heights.shape))
  s = _pad_rows(segments[:, None].astype(jnp.int32), cells, num_segments)
  grid = (h.shape[1] // dirs, h.shape[0] // cells)
  return h, w, s, cells, dirs, grid


def _chunk_values(h, t, scale, tie):
  u = t[None, None, :] - h[:, :, None]
  return _step(u, tie).astype(h.dtype) if scale is None else _smooth(u, scale)


def accumulate_pallas(heights, weights, segments, thresholds, scale, *, num_segments: int,
                      tie: str = "closed", block_sizes: BlockSizes = BlockSizes(),
                      interpret: bool = False) -> jax.Array:
  """`accumulate_reference` as a kernel with an on-chip accumulator."""
  num_cells, num_dirs = heights.shape
  num_thresholds = thresholds.shape[0]
  h, w, s, cells, dirs, grid = _pallas_layout(heights, weights, segments, block_sizes,
                                              num_segments)
  smooth = scale is not None
  scale_arr = jnp.reshape(jnp.asarray(scale if smooth else 0.0, heights.dtype), (1,))

  def kernel(h_ref, w_ref, s_ref, t_ref, scale_ref, out_ref):
    @pl.when(pl.program_id(1) == 0)
    def _():
      out_ref[...] = jnp.zeros_like(out_ref)
    values = _chunk_values(h_ref[...], t_ref[...], scale_ref[0] if smooth else None, tie)
    member = _segment_one_hot(s_ref[:, 0], num_segments, values.dtype)
    out_ref[...] += jnp.einsum("cb,cdt->bdt", member, w_ref[...][:, :, None] * values,
                               precision=lax.Precision.HIGHEST)

  out = pl.pallas_call(
      kernel, grid=grid,
      in_specs=[pl.BlockSpec((cells, dirs), lambda i, c: (c, i)),
                pl.BlockSpec((cells, dirs), lambda i, c: (c, i)),
                pl.BlockSpec((cells, 1), lambda i, c: (c, 0)),
                pl.BlockSpec((num_thresholds,), lambda i, c: (0,)),
                pl.BlockSpec((1,), lambda i, c: (0,))],
      out_specs=pl.BlockSpec((num_segments, dirs, num_thresholds), lambda i, c: (0, i, 0)),
      out_shape=jax.ShapeDtypeStruct((num_segments, h.shape[1], num_thresholds), heights.dtype),
      interpret=interpret)(h, w, s, thresholds, scale_arr)
  return out[:, :num_dirs]


def _pallas_cotangents(heights, weights, segments, thresholds, scale, g, tie, block_sizes,
                       interpret):
  """(dh, dw, dt, ds) by a kernel forming each chunk's values again."""
  num_segments, num_dirs, num_thresholds = g.shape
  num_cells = heights.shape[0]
  h, w, s, cells, dirs, grid = _pallas_layout(heights, weights, segments, block_sizes,
                                              num_segments)
  g = jnp.pad(g, [(0, 0), (0, h.shape[1] - num_dirs), (0, 0)])
  smooth = scale is not None
  scale_arr = jnp.reshape(jnp.asarray(scale if smooth else 0.0, heights.dtype), (1,))

  def kernel(h_ref, w_ref, s_ref, t_ref, scale_ref, g_ref, dw_ref, dz_ref, dzt_ref, dt_ref):
    hh, t = h_ref[...], t_ref[...]
    member = _segment_one_hot(s_ref[:, 0], num_segments, hh.dtype)
    # Each cell's row of g: a one-hot matmul instead of a gather.
    gc = jnp.einsum("cb,bdt->cdt", member, g_ref[...], precision=lax.Precision.HIGHEST)
    values = _chunk_values(hh, t, scale_ref[0] if smooth else None, tie)
    dw_ref[...] = jnp.sum(gc * values, axis=2)
    slope = gc * values * (1.0 - values) if smooth else jnp.zeros_like(gc)
    dz_ref[...] = jnp.sum(slope, axis=2)
    dzt_ref[...] = jnp.sum(slope * (t[None, None, :] - hh[:, :, None]), axis=2)

    @pl.when(pl.program_id(1) == 0)
    def _():
      dt_ref[...] = jnp.zeros_like(dt_ref)
    dt_ref[...] += jnp.sum(slope * w_ref[...][:, :, None], axis=(0, 1))[None, :]

  cell_block = pl.BlockSpec((cells, dirs), lambda i, c: (c, i))
  per_cell = jax.ShapeDtypeStruct(h.shape, heights.dtype)
  dw, dz, dzt, dt = pl.pallas_call(
      kernel, grid=grid,
      in_specs=[cell_block, cell_block,
                pl.BlockSpec((cells, 1), lambda i, c: (c, 0)),
                pl.BlockSpec((num_thresholds,), lambda i, c: (0,)),
                pl.BlockSpec((1,), lambda i, c: (0,)),
                pl.BlockSpec((num_segments, dirs, num_thresholds), lambda i, c: (0, i, 0))],
      out_specs=[cell_block, cell_block, cell_block,
                 pl.BlockSpec((1, num_thresholds), lambda i, c: (i, 0))],
      out_shape=[per_cell, per_cell, per_cell,
                 jax.ShapeDtypeStruct((grid[0], num_thresholds), heights.dtype)],
      interpret=interpret)(h, w, s, thresholds, scale_arr, g)
  crop = lambda a: a[:num_cells, :num_dirs]
  keep = ((segments >= 0) & (segments < num_segments))[:, None]
  dw = jnp.where(keep, crop(dw), 0.0)
  dw = dw if weights.ndim == 2 else dw.sum(axis=1)
  if not smooth:
    return jnp.zeros_like(heights), dw, jnp.zeros_like(thresholds), None
  w = _per_pair(weights, heights.shape)
  dh = jnp.where(keep, -scale * w * crop(dz), 0.0)
  ds = jnp.sum(jnp.where(keep, w * crop(dzt), 0.0))
  return dh, dw, scale * dt.sum(axis=0), ds


# ------------------------------------------------------------------ entry point


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8, 9, 10))
def accumulate(heights, weights, segments, thresholds, scale, num_segments: int,
               tie: str = "closed", band_width: int = 0, impl: str = "banded",
               block_sizes: BlockSizes = BlockSizes(),
               uniform: bool = False) -> tuple[jax.Array, jax.Array]:
  """Differentiable curves `[num_segments, D, T]` and the overflow flags `[num_segments]`.

  `heights` `[M, D]`, `weights` `[M]` or `[M, D]`, `segments` `[M]`.

  Differentiable in `heights`, `weights`, `thresholds` and `scale` (the exact
  step has zero derivative in heights and thresholds; it is linear in the
  weights). `scale=None` selects the exact step. Segments outside
  [0, num_segments) are dropped. `uniform` (static) promises evenly spaced
  thresholds (`is_uniform_grid`) for the fast bin search.
  """
  return _forward(heights, weights, segments, thresholds, scale, num_segments, tie,
                  band_width, impl, block_sizes, uniform)


def _forward(heights, weights, segments, thresholds, scale, num_segments, tie, band_width, impl,
             block_sizes, uniform):
  if impl == "banded":
    return accumulate_banded(heights, weights, segments, thresholds, scale,
                             num_segments=num_segments, tie=tie, band_width=band_width,
                             uniform=uniform)
  if impl == "dense":
    curves = accumulate_reference(heights, weights, segments, thresholds, scale,
                                  num_segments=num_segments, tie=tie)
  else:
    curves = accumulate_pallas(heights, weights, segments, thresholds, scale,
                               num_segments=num_segments, tie=tie, block_sizes=block_sizes,
                               interpret=impl == "pallas_interpret")
  return curves, jnp.zeros((num_segments,), bool)


def _accumulate_fwd(heights, weights, segments, thresholds, scale, num_segments, tie, band_width,
                    impl, block_sizes, uniform):
  # symbolic_zeros: primals arrive wrapped, with whether each is differentiated.
  values = [p.value if p is not None else None for p in
            (heights, weights, segments, thresholds, scale)]
  out = _forward(*values, num_segments, tie, band_width, impl, block_sizes, uniform)
  needs = Needs(heights.perturbed, weights.perturbed, thresholds.perturbed,
                scale is not None and scale.perturbed)
  return out, (values, needs)


def _accumulate_bwd(num_segments, tie, band_width, impl, block_sizes, uniform, residuals,
                    cotangents):
  (heights, weights, segments, thresholds, scale), needs = residuals
  g = cotangents[0]
  if isinstance(g, SymbolicZero):
    g = jnp.zeros(g.shape, g.dtype)
  if impl in ("banded", "dense"):
    # The dense path's backward is banded too (a band of all thresholds): it
    # equals autodiff of the formula up to the dropped tail below sigmoid(-20).
    width = band_width if impl == "banded" else (0 if scale is None else thresholds.shape[0])
    dh, dw, dt, ds = _banded_cotangents(heights, weights, segments, thresholds, scale, g, tie,
                                        width, uniform and impl == "banded", needs)
  else:
    dh, dw, dt, ds = _pallas_cotangents(heights, weights, segments, thresholds, scale, g, tie,
                                        block_sizes, impl == "pallas_interpret")
  dseg = np.zeros(segments.shape, jax.dtypes.float0)
  return dh, dw, dseg, dt, ds


accumulate.defvjp(_accumulate_fwd, _accumulate_bwd, symbolic_zeros=True)
