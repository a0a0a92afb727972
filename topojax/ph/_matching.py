r"""Induced matching of persistence barcodes (Betti matching), on the device.

Two images `pred` and `target` are compared through a comparison image `c`
(`min` of the two for the union of the sublevel sets, `max` for the
intersection). The inclusions of sublevel sets give maps of persistence
modules $H(P) \to H(C) \leftarrow H(G)$ (union; reversed for the
intersection), and a bar of P and a bar of G are **matched** when both are
matched to the same bar of C by the induced matchings of Bauer and Lesnick
(through image persistence). This is what Betti-Matching-3D computes, and the
conventions here are its conventions, so that the pairs and the matching equal
its output:

- **Dimension 0**: pixels are nodes, the V-construction edges (p, p + e_k) are
  taken in increasing (value, anchor pixel, axis) order, and of two
  components the one whose oldest pixel has the larger (value, index) dies.
- **Dimension d-1**: the top cells (and one outer node at +inf) are nodes, the
  (d-1)-cells are edges taken in decreasing (value, index) order, and of two
  components the one whose oldest top cell has the smaller (value, index) dies.
- A pair's birth and death pixels are the first pixels (C order) of its cells
  that carry the cell's value.

Every pass is the elder rule on one graph with edges in one image's order and
births from another's: in the comparison's order with the inputs' births, the
component that dies at a comparison pair names the input pair it is matched
through (dimension 0 with the union); in an input's order with the
comparison's births, an input pair names the comparison component it maps
into (dimension d-1 with the union). The intersection swaps the two. Each
pass runs `_h0`'s parallel elder rule on the whole graph.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks
from topojax.ph import _h0
from topojax.ph._cubical import _capacities, _essential_block, _finite_block
from topojax.ph._diagram import Diagram, concatenate

_FILTRATIONS = ("sublevel", "superlevel")
_COMPARISONS = ("union", "intersection")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BettiMatching:
  """The barcodes of two batches of images and the matching between them.

  Attributes:
    pred: `Diagram` of the predictions, fields `[B, P]` (dimensions in the
      order asked for; values gathered from `pred`, so differentiable).
    target: `Diagram` of the targets, fields `[B, Q]`.
    pred_match: `[B, P]` int32, the target slot each prediction pair is
      matched to, -1 if unmatched (or padding).
    target_match: `[B, Q]` int32, the inverse map.
  """

  pred: Diagram
  target: Diagram
  pred_match: jax.Array
  target_match: jax.Array

  @property
  def num_matched(self) -> jax.Array:
    """`[B]` int32 matched pairs."""
    return jnp.sum(self.pred_match >= 0, axis=-1, dtype=jnp.int32)

  @property
  def pred_unmatched(self) -> jax.Array:
    """`[B, P]` bool, prediction pairs without a partner."""
    return self.pred.valid & (self.pred_match < 0)

  @property
  def target_unmatched(self) -> jax.Array:
    """`[B, Q]` bool, target pairs without a partner."""
    return self.target.valid & (self.target_match < 0)


class _Graph(NamedTuple):
  """One image's graph in one dimension, per image of a batch.

  Edges are listed in processing order for equal values (the engine breaks
  value ties by list position); nodes are per-image local ids.
  """
  u: jax.Array  # [E] int32 local node ids (shared by the batch)
  v: jax.Array  # [E]
  value: jax.Array  # [B, E] float32 in processing order (inf: no edge)
  voxel: jax.Array  # [B, E] int32 the edge cell's parent pixel
  node_value: jax.Array  # [B, W] float32 node births in processing order
  node_tie: jax.Array  # [W] int32
  node_voxel: jax.Array  # [B, W] int32 the node cell's parent pixel (-1: outer)


def _first_max(values, ids):
  """Per cell, the max of its pixels' `values` and the first (C-order) pixel
  attaining it; `values`/`ids` list the cell's pixels in C order."""
  best = functools.reduce(jnp.maximum, values)
  voxel = ids[-1]
  for value, pixel in zip(values[::-1], ids[::-1]):
    voxel = jnp.where(value == best, pixel, voxel)
  return best, voxel


def _shifted(x, offset, fill):
  """`x[..., p + offset]` over the spatial axes of `[B, *shape]`, `fill` outside."""
  shape = x.shape[1:]
  padded = jnp.pad(x, [(0, 0)] + [(0, 1)] * len(shape), constant_values=fill)
  return padded[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, shape))]


def _primal_graph(f: jax.Array) -> _Graph:
  """Pixels and the V-construction edges, in (value, anchor, axis) order."""
  batch, shape = f.shape[0], f.shape[1:]
  ndim, n = len(shape), math.prod(shape)
  ids = jnp.arange(n, dtype=jnp.int32).reshape((1,) + shape)
  coords = jnp.indices(shape)
  values, fars, valid = [], [], []
  for k in range(ndim):
    step = tuple(int(a == k) for a in range(ndim))
    far = _shifted(ids, step, 0)
    inside = coords[k] < shape[k] - 1
    best, _ = _first_max([f, _shifted(f, step, -jnp.inf)], [ids, far])
    values.append(jnp.where(inside, best, jnp.inf))
    fars.append(jnp.where(inside, far, ids)[0])
    valid.append(inside)
  value = jnp.stack(values, axis=-1).reshape(batch, n * ndim)
  u = jnp.repeat(jnp.arange(n, dtype=jnp.int32), ndim)
  v = jnp.stack(fars, axis=-1).reshape(-1)
  flat = f.reshape(batch, n)
  voxel = jnp.where(flat[:, u] == value, u, v)  # the anchor on a tie
  return _Graph(u, v, value, voxel, flat, jnp.arange(n, dtype=jnp.int32),
                jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (batch, n)))


def _dual_graph(f: jax.Array) -> _Graph:
  """Top cells (+ the outer node) and the (d-1)-cells, in decreasing order.

  Processing order is decreasing (value, index), so values are negated and the
  list is reversed; of equal births the larger index is older, so ties are
  reversed indices.
  """
  batch, shape = f.shape[0], f.shape[1:]
  ndim, n = len(shape), math.prod(shape)
  top_shape = tuple(s - 1 for s in shape)
  num_top = math.prod(top_shape)
  ids = jnp.arange(n, dtype=jnp.int32).reshape((1,) + shape)
  coords = jnp.indices(shape)

  def cell(spans):
    offsets = [tuple(o[spans.index(a)] if a in spans else 0 for a in range(ndim))
               for o in itertools.product((0, 1), repeat=len(spans))]
    return _first_max([_shifted(f, o, -jnp.inf) for o in offsets],
                      [_shifted(ids, o, 0) for o in offsets])

  top_value, top_voxel = cell(tuple(range(ndim)))
  crop = (slice(None),) + tuple(slice(0, t) for t in top_shape)
  node_value = jnp.concatenate([-top_value[crop].reshape(batch, num_top),
                                jnp.full((batch, 1), -jnp.inf, f.dtype)], axis=1)
  node_voxel = jnp.concatenate([top_voxel[crop].reshape(batch, num_top),
                                jnp.full((batch, 1), -1, jnp.int32)], axis=1)

  def top_index(cell_coords):
    return sum(c * math.prod(top_shape[a + 1:]) for a, c in enumerate(cell_coords))

  values, voxels, sides = [], [], []
  for k in range(ndim):
    missing = 1 - k if ndim == 2 else k  # Betti-Matching-3D's cell types
    spans = tuple(a for a in range(ndim) if a != missing)
    inside = functools.reduce(jnp.logical_and, [coords[a] < shape[a] - 1 for a in spans])
    best, voxel = cell(spans)
    values.append(jnp.where(inside, -best, jnp.inf))
    voxels.append(voxel)
    pair = []
    for step in (-1, 0):
      at = [coords[a] + (step if a == missing else 0) for a in range(ndim)]
      ok = inside & (at[missing] >= 0) & (at[missing] < top_shape[missing])
      pair.append(jnp.where(ok, top_index(at), num_top).astype(jnp.int32))
    sides.append(pair)
  flip = lambda x: jnp.flip(jnp.stack(x, axis=-1).reshape(x[0].shape[0], n * ndim), axis=1)
  u = flip([s[0][None] for s in sides])[0]
  v = flip([s[1][None] for s in sides])[0]
  tie = jnp.arange(num_top, -1, -1, dtype=jnp.int32)
  return _Graph(u, v, flip(values), flip(voxels), node_value, tie, node_voxel)


def _elder(order: _Graph, node_value: jax.Array, node_tie: jax.Array) -> jax.Array:
  """`[B, E]` per edge of `order` the local node that dies there (-1: none),
  with births `(node_value, node_tie)`."""
  batch, num_edges = order.value.shape
  width = node_value.shape[1]
  base = jnp.arange(batch, dtype=jnp.int32)[:, None] * width
  u = (base + order.u[None]).reshape(-1)
  v = (base + order.v[None]).reshape(-1)
  value = order.value.reshape(-1)
  birth = (node_value.reshape(-1), jnp.tile(node_tie, batch))
  young, u, v = _h0._elder_rounds(u, v, value, birth, batch=batch)
  young = _h0._elder_sequential(u, v, value, young, birth, batch=batch)
  young = young.reshape(batch, num_edges)
  return jnp.where(young >= 0, young - base, -1)


class _Pairs(NamedTuple):
  genuine: jax.Array  # [B, E] bool edges that close a pair of positive persistence
  young: jax.Array  # [B, E] the node dying at each edge (-1: none)
  slot: jax.Array  # [B, E] the pair's slot at genuine edges
  birth: jax.Array  # [B, capacity] pixels, -1 past count
  death: jax.Array
  count: jax.Array  # [B]


def _own_pairs(graph: _Graph, young: jax.Array, dual: bool, capacity: int) -> _Pairs:
  """The pairs of `graph`'s own filtration, from its elder rule `young`."""
  dying_value = jnp.take_along_axis(graph.node_value, jnp.maximum(young, 0), axis=1)
  genuine = (young >= 0) & (dying_value != graph.value)
  packed = _h0._pack(genuine)
  edge = _h0._compact(packed, capacity)
  lanes = jnp.arange(genuine.shape[0], dtype=jnp.int32)[:, None]
  slot = _h0._rank_in_row(packed, jnp.broadcast_to(
      jnp.arange(genuine.shape[1], dtype=jnp.int32), genuine.shape))
  at = jnp.maximum(edge, 0)
  edge_voxel = jnp.take_along_axis(graph.voxel, at, axis=1)
  node_voxel = graph.node_voxel[lanes, jnp.take_along_axis(young, at, axis=1)]
  birth, death = (edge_voxel, node_voxel) if dual else (node_voxel, edge_voxel)
  kept = edge >= 0
  return _Pairs(genuine, young, slot, jnp.where(kept, birth, -1), jnp.where(kept, death, -1),
                packed.total)


def _keyed(keys, slots, mask, width):
  """`[B, width]` int32: at each key the slot given (where `mask`), else -1."""
  batch = keys.shape[0]
  lanes = jnp.arange(batch, dtype=jnp.int32)[:, None]
  target = jnp.where(mask, lanes * width + jnp.maximum(keys, 0), batch * width)
  return jnp.full((batch * width,), -1, jnp.int32).at[target.reshape(-1)].set(
      slots.reshape(-1), mode="drop").reshape(batch, width)


def _lookup(table, keys):
  return jnp.take_along_axis(table, jnp.maximum(keys, 0), axis=1)


def _match_dimension(x, y, c, dual: bool, in_comparison_order: bool, capacity: int):
  """Pairs of `x` and `y` in one dimension and their matching (slots).

  The five elder-rule passes share the graph's shape, so they run as one batch:
  each image's own filtration, then either the comparison's order with the
  inputs' births or the inputs' orders with the comparison's births.
  """
  build = _dual_graph if dual else _primal_graph
  batch = x.shape[0]
  if in_comparison_order:
    orders, births = (x, y, c, c, c), (x, y, c, x, y)
  else:
    orders, births = (x, y, c, x, y), (x, y, c, c, c)
  graph = build(jnp.concatenate(orders))
  birth_value = build(jnp.concatenate(births)).node_value
  # One compiled engine, run pass after pass: in one batch the passes would
  # wait for each other's slowest rounds.
  stacked = lambda a: a.reshape((len(orders), batch) + a.shape[1:])
  young = lax.map(
      lambda run: _elder(graph._replace(value=run[0]), run[1], graph.node_tie),
      (stacked(graph.value), stacked(birth_value)))
  part = lambda i: jax.tree.map(
      lambda a: a[i * batch:(i + 1) * batch] if a.ndim == 2 else a, graph)
  px, py, pc = (_own_pairs(part(i), young[i], dual, capacity) for i in range(3))
  width = graph.node_value.shape[1]
  if in_comparison_order:
    # In the comparison's order, the components dying at its pairs by the
    # inputs' births are the births of the matched input pairs.
    x_slot = _lookup(_keyed(px.young, px.slot, px.genuine, width), young[3])
    y_slot = _lookup(_keyed(py.young, py.slot, py.genuine, width), young[4])
  else:
    # In each input's order, its pairs name the comparison component (by the
    # comparison's births) that dies with them; comparison pairs look them up.
    x_slot = _lookup(_keyed(young[3], px.slot, px.genuine, width), pc.young)
    y_slot = _lookup(_keyed(young[4], py.slot, py.genuine, width), pc.young)
  matched = pc.genuine & (x_slot >= 0) & (y_slot >= 0)
  x_match = _keyed(x_slot, y_slot, matched, capacity)
  y_match = _keyed(y_slot, x_slot, matched, capacity)
  return px, py, x_match, y_match


def _block(f, pairs: _Pairs, capacity: int, dim: int, nonfinite) -> Diagram:
  """`cubical_persistence`'s finite block, per image of the batch."""
  block = jax.vmap(lambda image, birth, death, count: _finite_block(
      image, birth, death, count, capacity, dim))(f.reshape(f.shape[0], -1), pairs.birth,
                                                  pairs.death, pairs.count)
  return dataclasses.replace(block, nonfinite=nonfinite)


def _essential(f, order_values, sign, nonfinite) -> Diagram:
  """The essential H0 class: born at the first global minimum of `order_values`."""
  index = jnp.argmin(order_values.reshape(f.shape[0], -1), axis=1)  # first on ties
  block = jax.vmap(lambda image, i: _essential_block(image, i, sign))(
      f.reshape(f.shape[0], -1), index)
  return dataclasses.replace(block, nonfinite=nonfinite)


@functools.partial(jax.jit, static_argnames=("filtration", "comparison", "dims",
                                             "include_essential"))
def _betti_matching(pred, target, *, filtration, comparison, dims, include_essential):
  sign = 1 if filtration == "sublevel" else -1
  finite = jnp.isfinite(pred) & jnp.isfinite(target)
  nonfinite = ~jnp.all(finite.reshape(finite.shape[0], -1), axis=1)

  def order_values(f):  # sublevel values for the pairing; -0.0 == 0.0
    return lax.stop_gradient(jnp.where(finite & (f != 0), sign * f, 0).astype(jnp.float32))

  x, y = order_values(pred), order_values(target)
  c = jnp.minimum(x, y) if comparison == "union" else jnp.maximum(x, y)
  ndim = pred.ndim - 1
  pred_blocks, target_blocks, pred_matches, target_matches = [], [], [], []
  offset = 0
  if include_essential and 0 in dims:
    pred_blocks.append(_essential(pred, x, sign, nonfinite))
    target_blocks.append(_essential(target, y, sign, nonfinite))
    pred_matches.append(jnp.zeros((pred.shape[0], 1), jnp.int32))
    target_matches.append(jnp.zeros((pred.shape[0], 1), jnp.int32))
    offset = 1
  for dim in dims:
    capacity = _capacities(pred.shape[1:], "V", (dim,), None)[dim]
    dual = dim > 0
    px, py, x_match, y_match = _match_dimension(
        x, y, c, dual, in_comparison_order=(dim == 0) == (comparison == "union"),
        capacity=capacity)
    pred_blocks.append(_block(pred, px, capacity, dim, nonfinite))
    target_blocks.append(_block(target, py, capacity, dim, nonfinite))
    pred_matches.append(jnp.where(x_match >= 0, x_match + offset, -1))
    target_matches.append(jnp.where(y_match >= 0, y_match + offset, -1))
    offset += capacity
  return BettiMatching(
      pred=concatenate(pred_blocks), target=concatenate(target_blocks),
      pred_match=jnp.concatenate(pred_matches, axis=1),
      target_match=jnp.concatenate(target_matches, axis=1))


def betti_matching(pred: jax.typing.ArrayLike, target: jax.typing.ArrayLike, *,
                   filtration: str = "superlevel", comparison: str = "union",
                   dims=None, include_essential: bool = False) -> BettiMatching:
  r"""Barcodes of `pred` and `target` and their induced (Betti) matching.

  For each image pair, the persistence pairs of both cubical filtrations
  (V construction) and the matching of Stucki et al.: a pair of `pred` and a
  pair of `target` are matched when the induced matchings of the inclusions
  into the comparison image's filtration send both to the same comparison
  pair. The comparison image is the **union** of the two filtrations' sets
  ($\min$ of the values for sublevel, $\max$ for superlevel) or their
  **intersection**. Pairs, pixels and matching equal Betti-Matching-3D's (run
  on `pred` and `target`, negated for superlevel) — see the module docstring
  for the tie conventions, which are that code's.

  Dimension 0 and dimension d-1 are computed on the device, batched, inside
  `jit`; 3D dimension 1 (which needs a matrix reduction) is not available.

  Args:
    pred: `[B, H, W]` or `[B, D, H, W]` real-valued maps (e.g. foreground
      probabilities); floating.
    target: same shape (e.g. binary labels as floats).
    filtration: "superlevel" (high values first: foreground probabilities)
      or "sublevel".
    comparison: "union" or "intersection".
    dims: homology dimensions, a subset of `(0, d-1)`; default both.
    include_essential: add the essential H0 class of each image (born at the
      global extremum, `death = ±inf`), always matched to the other's.

  Returns:
    A `BettiMatching` (diagrams with capacity per dimension a bound that no
    input of this shape exceeds; values gathered from `pred` and `target`, so
    `jax.grad` flows to the critical pixels).

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.ph import betti_matching
    >>> target = jnp.zeros((1, 5, 7)).at[0, 1:4, 1:3].set(1.).at[0, 1:4, 4:6].set(1.)
    >>> pred = 0.8 * target.at[0, 1:4, 4:6].set(0.)  # misses the second blob
    >>> m = betti_matching(pred, target, dims=(0,))
    >>> int(m.num_matched[0]), int(m.pred_unmatched.sum()), int(m.target_unmatched.sum())
    (0, 0, 1)

  References:
    Stucki, Paetzold, Shit, Menze, Bauer, "Topologically faithful image
    segmentation via induced matching of persistence barcodes", ICML 2023;
    Stucki et al., "Efficient Betti matching enables topology-aware 3D
    segmentation via persistent homology", arXiv:2407.04683.
  """
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  checks.check_map_pair(pred, target)
  if filtration not in _FILTRATIONS:
    raise ValueError(f"`filtration` must be one of {_FILTRATIONS}, got {filtration!r}.")
  if comparison not in _COMPARISONS:
    raise ValueError(f"`comparison` must be one of {_COMPARISONS}, got {comparison!r}.")
  ndim = pred.ndim - 1
  available = (0, ndim - 1)
  dims = available if dims is None else tuple(sorted(set(int(d) for d in dims)))
  if not dims or any(d not in available for d in dims):
    raise ValueError(f"`dims` must be a non-empty subset of {available} (3D dimension 1 "
                     f"is not available), got {dims}.")
  checks.raise_if_nonfinite(pred, "pred")
  checks.raise_if_nonfinite(target, "target")
  return _betti_matching(pred, target, filtration=filtration, comparison=comparison,
                         dims=dims, include_essential=bool(include_essential))
