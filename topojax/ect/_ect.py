"""The Euler characteristic transform of simplicial complexes, exact and smooth."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from topojax._src import checks
from topojax.kernels import ect_accumulate as acc

IMPLS = ("auto",) + acc.IMPLS


def band_width(thresholds, scale: float) -> int:
  """Static band width that the smooth ECT needs for `thresholds` and `scale`.

  Pass it as `band_width=` when `thresholds` or `scale` are traced (under
  `jit` as arguments, or learnable); compute it with the smallest scale that
  will be used: smaller scales need wider bands.
  """
  if not float(scale) > 0:
    raise ValueError(f"`scale` must be > 0, got {scale}.")
  return acc.required_band_width(thresholds, float(scale))


def _concrete(*values) -> bool:
  return not any(isinstance(v, jax.core.Tracer) for v in values)


def _resolve_band_width(thresholds, scale, band_width_arg):
  if scale is None:
    return 0
  if band_width_arg is not None:
    return checks.check_positive_int(band_width_arg, "band_width")
  if not _concrete(thresholds, scale):
    raise ValueError(
        "`band_width` is required when `thresholds` or `scale` are traced (inside jit or "
        "learnable): pass band_width=topojax.ect.band_width(thresholds, smallest_scale).")
  return acc.required_band_width(np.asarray(thresholds), float(scale))


def uniform_grid(thresholds) -> bool:
  """Static: concrete, evenly spaced thresholds (fast arithmetic bins)."""
  return _concrete(thresholds) and acc.is_uniform_grid(np.asarray(thresholds))


def _check_common(directions, thresholds, scale, tie, impl, dim):
  directions = jnp.asarray(directions)
  thresholds = jnp.asarray(thresholds)
  checks.check_floating(directions, "directions")
  checks.check_floating(thresholds, "thresholds")
  if directions.ndim != 2 or directions.shape[0] == 0 or directions.shape[1] != dim:
    raise ValueError(f"`directions` must be [num_directions >= 1, {dim}] (the ambient "
                     f"dimension of the points), got shape {directions.shape}.")
  if thresholds.ndim != 1 or thresholds.shape[0] == 0:
    raise ValueError(f"`thresholds` must be a non-empty 1-D array, got shape "
                     f"{thresholds.shape}.")
  if _concrete(thresholds) and np.any(np.diff(np.asarray(thresholds)) < 0):
    raise ValueError("`thresholds` must be sorted in increasing order.")
  if scale is not None and _concrete(scale) and not float(scale) > 0:
    raise ValueError(f"`scale` must be None (exact ECT) or > 0, got {scale}.")
  if tie not in acc.TIES:
    raise ValueError(f"`tie` must be one of {acc.TIES}, got {tie!r}.")
  if impl not in IMPLS:
    raise ValueError(f"`impl` must be one of {IMPLS}, got {impl!r}.")
  return directions, thresholds


def _check_simplices(simplices, batch_shape, num_points):
  out = []
  for i, s in enumerate(simplices):
    s = jnp.asarray(s)
    name = f"simplices[{i}]"
    if not jnp.issubdtype(s.dtype, jnp.integer):
      raise ValueError(f"`{name}` must hold integer vertex indices, got dtype {s.dtype}.")
    if s.ndim != len(batch_shape) + 2 or s.shape[:len(batch_shape)] != batch_shape:
      raise ValueError(f"`{name}` must be [{', '.join(map(str, batch_shape + ('num_cells',)))}, "
                       f"k + 1] like the points' leading axes, got shape {s.shape}.")
    if s.shape[-1] < 2:
      raise ValueError(f"`{name}` must list k + 1 >= 2 vertices per cell (points are "
                       f"the rows of `x`), got shape {s.shape}.")
    # NumPy: a concrete array captured by a jitted function is still checked
    # eagerly, without staging a reduction into the trace.
    largest = int(np.max(np.asarray(s))) if _concrete(s) and s.size else -1
    if largest >= num_points:
      raise ValueError(f"`{name}` has vertex index {largest}, out of range for "
                       f"{num_points} points (negative indices mark padding rows).")
    out.append(s.astype(jnp.int32))
  return out


def _flatten(x, simplices, point_mask, segment_ids, num_segments):
  """Points `[P, d]`, their segment (num_segments = dropped) and cell lists."""
  if x.ndim == 3:  # padded batch
    batch, num_points = x.shape[:2]
    offsets = (jnp.arange(batch, dtype=jnp.int32) * num_points)[:, None, None]
    # The batch row, not a vertex, says whose cell it is: an out-of-range index
    # plus the row's offset would name a vertex of the next complex.
    cells = [(jnp.where(s < 0, -1, s + offsets).reshape(-1, s.shape[-1]),
              (s < num_points).all(-1).reshape(-1),
              jnp.repeat(jnp.arange(batch, dtype=jnp.int32), s.shape[1])) for s in simplices]
    seg = jnp.repeat(jnp.arange(batch, dtype=jnp.int32), num_points)
    x = x.reshape(batch * num_points, x.shape[-1])
    num_segments = batch
  else:
    num_points = x.shape[0]
    cells = [(s, (s < num_points).all(-1), None) for s in simplices]
    if segment_ids is None:
      seg, num_segments = jnp.zeros((num_points,), jnp.int32), 1
    else:
      seg = segment_ids.astype(jnp.int32)
  seg = jnp.where((seg >= 0) & (seg < num_segments), seg, num_segments)
  if point_mask is not None:
    seg = jnp.where(point_mask.reshape(-1), seg, num_segments)
  return x, seg, cells, num_segments


# Cells folded per loop step: the fold's temporaries stay a few MiB whatever
# the number of cells. XLA:CPU allocates its scratch on every call, and glibc
# maps an allocation above its mmap threshold (at most 32 MiB) afresh each
# time: in the DECT benchmark those page faults were half the time.
_FOLD_CHUNK = 4096


def _fold_onto_highest(weights, heights, targets, sign, smooth):
  """Add `sign` per cell to `weights` `[P + 1, D]` at its highest vertex per
  direction. `targets` `[M, k + 1]`: vertex rows, `P` (the trash row) for
  cells that do not count."""
  num_points = heights.shape[0]
  if not targets.shape[0]:
    return weights
  chunk = min(_FOLD_CHUNK, targets.shape[0])
  targets = jnp.pad(targets, [(0, -targets.shape[0] % chunk), (0, 0)],
                    constant_values=num_points)
  padded = jnp.concatenate([heights, jnp.zeros_like(heights[:1])])

  def fold(i, weights):
    rows = lax.dynamic_slice_in_dim(targets, i * chunk, chunk)
    vertex_h = [jnp.take(padded, rows[:, j], axis=0) for j in range(rows.shape[1])]
    cell_h = functools.reduce(jnp.maximum, vertex_h)
    at_max = [h == cell_h for h in vertex_h]
    if not smooth:  # the first highest vertex takes the whole cell
      at_max = [m & ~functools.reduce(jnp.logical_or, at_max[:j], jnp.zeros_like(m))
                for j, m in enumerate(at_max)]
    # One share per highest vertex (exact: one). The division also keeps
    # XLA from fusing the gathers into every column's shares (10x slower).
    share = sign / sum(m.astype(heights.dtype) for m in at_max)
    shares = [jnp.where(m, share, 0.0) for m in at_max]
    # One scatter of the stacked rows: 2-3x faster on XLA:CPU than one per
    # vertex column.
    return weights.at[rows.T.reshape(-1)].add(
        jnp.concatenate(shares).astype(weights.dtype), mode="promise_in_bounds")

  return lax.fori_loop(0, targets.shape[0] // chunk, fold, weights)


def _vertex_weights(heights, seg, cells, num_segments, smooth):
  """Fold every cell onto its highest vertex: per-direction vertex weights
  `[P, D]` and the segments holding a cell with an out-of-range vertex.

  A cell's height along d is that of its highest vertex, so the transform is
  a sum over vertices only, each weighted by 1 plus the signs (-1)^k of the
  k-cells whose maximum along d it attains: 4x fewer (cell, direction) pairs
  to accumulate for a graph with 3 edges per vertex. Tied maxima share a cell
  equally in the smooth transform (the gradient of `jnp.max`); the exact one
  gives it to the first, so that its counts stay integers.

  Vertex columns are gathered and scattered as whole rows (along axis 0):
  15x faster on XLA:CPU than fancy indexing with an index matrix.
  """
  num_points = heights.shape[0]
  # Row `num_points` is a trash row for cells that do not count: masking the
  # index vector, not the [cells, D] shares, keeps the mask out of their fusion
  # (where XLA would recompute it per direction: 5x slower).
  weights = jnp.ones((num_points + 1, heights.shape[1]), heights.dtype)
  bad = jnp.zeros((num_segments + 1,), bool)
  for idx, in_range, row in cells:
    k = idx.shape[1] - 1
    padding = (idx < 0).any(axis=1)
    columns = [jnp.clip(idx[:, i], 0, num_points - 1) for i in range(k + 1)]
    owner = jnp.take(seg, columns[0], axis=0)
    # A cell counts if all its vertices are present points of one complex.
    ok = ~padding & in_range & (owner < num_segments)
    for column in columns[1:]:
      ok = ok & (jnp.take(seg, column, axis=0) == owner)
    culprit = owner if row is None else row
    bad = bad.at[jnp.where(padding | in_range, num_segments, culprit)].set(True)
    targets = jnp.stack([jnp.where(ok, column, num_points) for column in columns], axis=1)
    weights = _fold_onto_highest(weights, heights, targets, (-1.0) ** k, smooth)
  return weights[:num_points], bad[:num_segments]


def ect(x: jax.Array, *simplices: jax.Array, directions: jax.Array, thresholds: jax.Array,
        scale: float | jax.Array | None = None, point_mask: jax.Array | None = None,
        segment_ids: jax.Array | None = None, num_segments: int | None = None,
        tie: str = "closed", band_width: int | None = None, impl: str = "auto",
        block_sizes: acc.BlockSizes = acc.BlockSizes()) -> jax.Array:
  r"""Euler characteristic transform of point clouds, graphs, meshes and complexes.

  With heights $h_v(\sigma) = \max_{i \in \sigma} \langle x_i, v\rangle$ (the
  lower-star filtration along direction $v$),

  $$\mathrm{ECT}(v, t) = \sum_\sigma (-1)^{\dim\sigma}\, \mathbb 1[h_v(\sigma) \le t]
  = \chi(K_{v,t}) \quad (\texttt{scale=None}),$$

  $$\mathrm{DECT}_s(v, t) = \sum_\sigma (-1)^{\dim\sigma}\, \mathrm{sigmoid}(s\,(t - h_v(\sigma)))
  \quad (\texttt{scale}=s, \text{Röell and Rieck}).$$

  The smooth transform is banded: in float32 the sigmoid is exactly 1 for
  $s(t - h) \ge 17$ and below 4e-11 for $s(t - h) \le -24$, so each (cell,
  direction) pair evaluates it at `band_width` thresholds only and the
  saturated rest is a histogram and a cumulative sum, as in the exact
  transform. A cell's height is that of its highest vertex, so each cell is
  first folded onto it (per direction; tied highest vertices share it, as
  the gradient of `jnp.max` does) and only vertices are accumulated. Values
  equal the dense formula up to float32 summation order;
  memory is O(cells x directions + batch x directions x thresholds) forward
  and backward. The exact transform has zero gradient in the points; both
  are differentiable in `directions` and `x` (smooth) and in `scale` and
  `thresholds` (smooth).

  Batching, one convention for all inputs:

  * one complex: `x` `[N, d]`, simplices `[E, k + 1]` -> `[D, T]`;
  * padded batch: `x` `[B, N, d]`, simplices `[B, E, k + 1]`, optional
    `point_mask` `[B, N]` -> `[B, D, T]`;
  * ragged batch: `x` `[N, d]` with `segment_ids` `[N]` in `[0, num_segments)`
    -> `[num_segments, D, T]` (a cell belongs to its vertices' segment).

  Rows of a simplex array with a negative index are padding and ignored; so
  are masked points and the cells that use them.

  Args:
    x: floating `[N, d]` or `[B, N, d]` vertex coordinates; every row is a
      0-cell.
    *simplices: integer `[..., num_cells, k + 1]` vertex indices of k-cells,
      k >= 1: edges `[E, 2]`, triangles `[F, 3]`, ...; their sign is (-1)^k.
    directions: `[D, d]` unit vectors (see `uniform_directions`).
    thresholds: `[T]` increasing (see `linear_thresholds`).
    scale: None for the exact step function, or the sigmoid scale s > 0.
    point_mask: bool `[N]` / `[B, N]`, False for padding points.
    segment_ids: int `[N]`, the complex of each point (ragged batches).
    num_segments: number of complexes with `segment_ids` (static).
    tie: "closed" counts $h \le t$ (MunchLab `ect`, pyECT), "open" counts
      $h < t$ (dect's indicator); exact transform only.
    band_width: thresholds per band; computed from concrete `thresholds` and
      `scale`, required when they are traced (`topojax.ect.band_width`).
    impl: "banded" (XLA), "dense" (the formula, O(M D T) memory),
      "pallas" / "pallas_interpret" (the accumulation kernel); "auto" is
      "banded" (the kernel is validated in interpret mode only).
    block_sizes: Pallas tiles.

  Returns:
    `[D, T]`, `[B, D, T]` or `[num_segments, D, T]` in the dtype of `x`
    (integers, exactly, when `scale=None`). A complex is NaN throughout when
    one of its points is NaN, a cell names a vertex out of range (under
    `jit`; eager calls raise) or a band was too narrow.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.ect import ect, linear_thresholds
    >>> triangle = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> edges = jnp.array([[0, 1], [1, 2], [2, 0]])
    >>> faces = jnp.array([[0, 1, 2]])
    >>> up = jnp.array([[0.0, 1.0]])
    >>> ect(triangle, edges, directions=up, thresholds=jnp.array([-0.5, 0.0, 1.0])).tolist()
    [[0.0, 1.0, 0.0]]
    >>> ect(triangle, edges, faces, directions=up, thresholds=jnp.array([0.0, 1.0])).tolist()
    [[1.0, 1.0]]

  References:
    Turner, Mukherjee, Boyer, "Persistent homology transform for modeling shapes
    and surfaces", Information and Inference 2014; Röell and Rieck,
    "Differentiable Euler Characteristic Transforms for Shape Classification",
    ICLR 2024.
  """
  x = jnp.asarray(x)
  checks.check_floating(x, "x")
  if x.ndim not in (2, 3):
    raise ValueError(f"`x` must be [num_points, dim] or [batch, num_points, dim], got shape "
                     f"{x.shape}.")
  if x.shape[-2] == 0 or x.shape[-1] == 0:
    raise ValueError(f"`x` has no points or no coordinates: shape {x.shape}.")
  if x.ndim == 3 and x.shape[0] == 0:
    raise ValueError(f"`x` is an empty batch: shape {x.shape}.")
  directions, thresholds = _check_common(directions, thresholds, scale, tie, impl, x.shape[-1])
  batch_shape = x.shape[:1] if x.ndim == 3 else ()
  simplices = _check_simplices(simplices, batch_shape, x.shape[-2])
  if point_mask is not None:
    point_mask = jnp.asarray(point_mask)
    if point_mask.shape != x.shape[:-1]:
      raise ValueError(f"`point_mask` must have shape {x.shape[:-1]}, got {point_mask.shape}.")
    point_mask = point_mask.astype(bool)
  if segment_ids is not None:
    if x.ndim != 2:
      raise ValueError("`segment_ids` is for ragged batches with `x` [N, d]; a padded batch "
                       "`x` [B, N, d] has its segments already.")
    segment_ids = jnp.asarray(segment_ids)
    if not jnp.issubdtype(segment_ids.dtype, jnp.integer) or segment_ids.shape != x.shape[:1]:
      raise ValueError(f"`segment_ids` must be integer [{x.shape[0]}], got "
                       f"{segment_ids.dtype} {segment_ids.shape}.")
    if num_segments is None:
      raise ValueError("`num_segments` (static) is required with `segment_ids`.")
    checks.check_positive_int(num_segments, "num_segments")
  elif num_segments is not None:
    raise ValueError("`num_segments` is only used with `segment_ids`.")
  width = _resolve_band_width(thresholds, scale, band_width)
  impl = "banded" if impl == "auto" else impl
  if scale is not None:
    scale = jnp.asarray(scale, x.dtype)

  points, seg, cells, count = _flatten(x, simplices, point_mask, segment_ids, num_segments)
  # Padding points may hold anything (NaN included): zero them so that no NaN
  # reaches the gradient of `directions` through the height matmul.
  points = jnp.where((seg < count)[:, None], points, jnp.zeros_like(points))
  heights = jnp.matmul(points, directions.astype(x.dtype).T, precision=jax.lax.Precision.HIGHEST)
  weights, flagged = _vertex_weights(heights, seg, cells, count, scale is not None)
  nonfinite = jnp.zeros((count + 1,), bool).at[seg].max(~jnp.isfinite(heights).all(axis=1))
  flagged = flagged | nonfinite[:count]
  curves, overflow = acc.accumulate(
      heights, weights, seg, thresholds.astype(x.dtype), scale, count, tie, width, impl,
      block_sizes, uniform_grid(thresholds))
  curves = jnp.where((flagged | overflow)[:, None, None], jnp.nan, curves)
  return curves[0] if x.ndim == 2 and segment_ids is None else curves
