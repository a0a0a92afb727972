"""Exact H0 persistence of a pixel graph, data-parallel except one short loop.

Algorithm (one `jit`, no host callback):

1. **Basins.** Every pixel is attached through the first edge Kruskal would
   give it (see `_attachment_roots`); pointer jumping gives each pixel its
   basin. Those edges never create a pair of positive persistence, so H0 of
   the image is H0 of the basin graph.
2. **Candidate edges.** Of the grid edges between two basins only the lightest
   per pair of basins can be in the minimum spanning forest; a stencil drops
   every edge that a lighter nearby edge between the same two basins rules out
   (`_candidate_edges`). What is left (≈ 4 edges per basin, 1.5-3 % of the
   edges of a smoothed map) is stream-compacted into a short per-image list
   (`_compact`, no sort), and basins get compact ids.
3. **Minimum spanning forest** of the basin graph by Borůvka on that list: per
   round every component takes its lightest edge (two scatter-mins), hooks onto
   the other side, mutual hooks are broken, pointer jumping relabels.
4. **Elder rule** on each image's forest edges in (value, tie slot) order (a
   sort by slot, then `lax.top_k` by value in chunks): a sequential union-find
   over #basins - 1 edges, the images in lockstep. This
   is the one sequential step; it is short because basins are few (≈ 1.5 % of
   the pixels of a smoothed image, 20 % of i.i.d. noise).

Each merge kills the component with the younger minimum: the pair is
(that minimum, the pixel of the merging edge with the larger value — the edge's
anchor on a tie). Pairs of zero persistence are dropped, as cripser does.

The code is written for a batch: B images are one graph on B * N global pixel
ids, so every loop is shared by the batch (`_cubical` wires this to `vmap`).
Steps 2-4 work on fixed-capacity compact arrays (`lax.switch` over capacity
tiers, `_TIERS`): smoothed maps fit the smallest, i.i.d. noise the next, the
worst case (every pixel a basin, every edge a candidate) the last.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from topojax.ph import _grid

_INT_MAX = jnp.iinfo(jnp.int32).max
# Capacities tried before the worst case, as fractions of an image's pixels:
# (basins, candidate edges). Smoothed maps fit the first, i.i.d. noise the second.
_TIERS = ((1 / 16, 1 / 8), (1 / 4, 1))
# Forest edges handed to the sequential union-find per `top_k` call.
_CHUNK = 1024
# Below this many pixels per batch one (worst-case) capacity is cheap enough.
_MIN_PIXELS_FOR_TIERS = 1 << 14


class H0Pairs(NamedTuple):
  """Finite H0 pairs as flat pixel indices, in increasing order of death."""
  birth: jax.Array  # [B, capacity] int32, -1 past `count`
  death: jax.Array  # [B, capacity] int32, -1 past `count`
  count: jax.Array  # [B] int32 pairs found; more than capacity means overflow
  essential: jax.Array  # [B] int32 the global minimum (birth of the essential class)


class _Grid(NamedTuple):
  """A batch of B images of one shape, seen as one graph on B * N global pixel ids.

  Global id `b * N + p` is pixel `p` (C-order flat) of image `b`; components
  never span images, so union-find and pointer jumping need no batch axis.
  """
  batch: int
  shape: tuple[int, ...]
  offsets: tuple[tuple[int, ...], ...]

  @property
  def size(self) -> int:
    return math.prod(self.shape)

  def global_ids(self) -> jax.Array:
    return jnp.arange(self.batch * self.size, dtype=jnp.int32).reshape(
        (self.batch,) + self.shape)

  def pad(self, x: jax.Array, value) -> jax.Array:
    """Pads the spatial axes by one."""
    return jnp.pad(x, [(0, 0)] + [(1, 1)] * len(self.shape), constant_values=value)

  def shifted(self, padded: jax.Array, offset) -> jax.Array:
    """`x[:, p + offset]` for every pixel p, from `x` padded by `pad`."""
    return padded[(slice(None),) + tuple(
        slice(1 + o, 1 + o + n) for o, n in zip(offset, self.shape))]

  def deltas(self) -> jax.Array:
    """`[M]` the flat index step of each forward edge type."""
    return jnp.array([_grid.flat_offset(o, self.shape) for o in self.offsets], jnp.int32)


def _pointer_jump(pointer: jax.Array) -> jax.Array:
  """Follows `pointer` to its fixed points (a forest of trees, roots on themselves)."""
  def body(state):
    pointer, _ = state
    jumped = pointer[pointer]
    return jumped, jnp.any(jumped != pointer)
  return lax.while_loop(lambda s: s[1], body, (pointer, jnp.array(True)))[0]


def _materialised(live, fn, fallback, *args):
  """`fn(*args)` behind a conditional that is always taken (`live` is true).

  XLA:CPU fuses a stencil into whatever reads it, and a gather or a shifted
  read then recomputes the whole stencil per element read (10x slower here). A
  conditional's outputs are buffers, so `fn` runs once per pixel. `live` must
  be a run-time value so the conditional is not folded away; `fallback` gives
  the (never used) outputs of the other branch.
  """
  return lax.cond(live, fn, fallback, *args)


def _attachment_roots(values, tie, grid: _Grid) -> jax.Array:
  """`[B * N]` each pixel's basin, named by the root of its attachment tree.

  A pixel is attached through the first edge Kruskal would give it: its
  incident edge of value `values[p]` (neighbour not higher) with the smallest
  tie slot. That edge joins a singleton to a component no younger, so it never
  creates a pair of positive persistence and can be contracted up front. The
  attachment forest has only 2-cycles (two equal pixels choosing their common
  edge); the lower of the two becomes the root, which has the basin's lowest
  value (not always its lowest tie).
  """
  n = grid.size
  ids = grid.global_ids()

  def attach(values, tie):
    padded_values = grid.pad(values, jnp.array(jnp.inf, values.dtype))
    padded_tie = grid.pad(tie, 0)
    first_slot = jnp.full(values.shape, _INT_MAX, jnp.int32)
    for rank, sign, offset in _grid.all_offsets(grid.offsets):
      not_higher = grid.shifted(padded_values, offset) <= values
      anchor_tie = tie if sign > 0 else grid.shifted(padded_tie, offset)
      first_slot = jnp.minimum(first_slot, jnp.where(not_higher, rank * n + anchor_tie, _INT_MAX))
    # The slot names the edge: its type, and (anchor here or not) its direction.
    delta = grid.deltas()[jnp.minimum(first_slot // n, len(grid.offsets) - 1)]
    step = jnp.where(first_slot % n == tie, delta, -delta)
    return jnp.where(first_slot < _INT_MAX, ids + step, ids).reshape(-1)

  # NaN compares false everywhere: then every pixel is its own root.
  live = values.reshape(-1)[0] == values.reshape(-1)[0]
  attach = _materialised(live, attach, lambda *_: ids.reshape(-1), values, tie)
  ids, flat_tie = ids.reshape(-1), tie.reshape(-1)
  mutual = (attach[attach] == ids) & (flat_tie < flat_tie[attach])
  return _pointer_jump(jnp.where(mutual, ids, attach))


def _adjacent(a: tuple[int, ...], b: tuple[int, ...], num_types: int) -> bool:
  """Whether two distinct neighbour offsets point at pixels that touch.

  With 26-connectivity (13 edge types) only face-touching ones count: all
  touching ones would make the stencil ~300 comparisons per voxel.
  """
  distance = sum if num_types > 4 else max
  return a != b and distance(abs(x - y) for x, y in zip(a, b)) == 1


def _candidate_edges(values, tie, root, grid: _Grid) -> jax.Array:
  """`[B, M, *shape]` the grid edges that may be in the basin graph's spanning forest.

  Edge `(b, r, p)` joins pixel p and `p + offsets[r]`. Of several edges
  joining the same two basins only the lightest can be in the forest, so an
  edge is dropped when a lighter one (in the (value, tie slot) order) joins
  the same two basins and either starts at one of its pixels and ends next to
  its other pixel (`_adjacent`), or, with face connectivity, runs parallel to
  it one pixel over (which catches straight basin boundaries). About 4 edges
  per basin are left on smoothed maps.
  """
  n = grid.size
  inf = jnp.array(jnp.inf, values.dtype)
  directions = [offset for _, _, offset in _grid.all_offsets(grid.offsets)]

  def unbeaten_ends(values, tie, basin):
    """Per direction, whether the incident edge there survives at this end."""
    padded_values = grid.pad(values, inf)
    padded_basin = grid.pad(basin, -1)
    padded_tie = grid.pad(tie, 0)
    # Per pixel p and direction i: the incident edge's far basin and key.
    incident = []
    for rank, sign, offset in _grid.all_offsets(grid.offsets):
      far = grid.shifted(padded_basin, offset)
      crosses = (far != basin) & (far >= 0)  # -1: outside the image
      value = jnp.where(crosses, jnp.maximum(values, grid.shifted(padded_values, offset)), inf)
      anchor_tie = tie if sign > 0 else grid.shifted(padded_tie, offset)
      incident.append((jnp.where(crosses, far, -1), value, rank * n + anchor_tie))
    # An edge is beaten at p when another edge at p reaches the same basin
    # lighter. Only neighbours of p adjacent to the far pixel are checked: the
    # same basin sits there most often, and checking all would cost (2M)^2.
    unbeaten = []
    for i, (far, value, slot) in enumerate(incident):
      beaten = far < 0
      for j, (other_far, other_value, other_slot) in enumerate(incident):
        if _adjacent(directions[i], directions[j], len(grid.offsets)):
          beaten |= (other_far == far) & _grid.lex_less(other_value, other_slot, value, slot)
      offset = directions[i]
      if i % 2 == 0 and sum(map(abs, offset)) == 1:  # face connectivity: parallel neighbours
        padded = [grid.pad(a, fill) for a, fill in ((basin, -2), (far, -2), (value, inf), (slot, 0))]
        for axis in range(len(offset)):
          for sign in ((1, -1) if offset[axis] == 0 else ()):
            shift = tuple(sign * (k == axis) for k in range(len(offset)))
            near, near_far, near_value, near_slot = (grid.shifted(a, shift) for a in padded)
            beaten |= ((near == basin) & (near_far == far)
                       & _grid.lex_less(near_value, near_slot, value, slot))
      unbeaten.append(~beaten)
    return tuple(unbeaten)

  basin = root.reshape(values.shape)
  live = root[0] == root[root[0]]  # always: roots are fixed points
  unbeaten = _materialised(
      live, unbeaten_ends, lambda *_: (jnp.zeros(values.shape, bool),) * len(directions),
      values, tie, basin)
  keep = []
  for rank, offset in enumerate(grid.offsets):
    at_far = grid.shifted(grid.pad(unbeaten[2 * rank + 1], False), offset)
    keep.append(unbeaten[2 * rank] & at_far)
  return jnp.stack(keep, axis=1)


class _Packed(NamedTuple):
  """A `[B, L]` mask packed 32 entries to a word, with per-row running counts."""
  words: jax.Array  # [B, W] uint32, entry i of a row is bit i % 32 of word i // 32
  before: jax.Array  # [B, W] int32, set entries of the row in earlier words


def _pack(mask: jax.Array) -> _Packed:
  """Packs a `[B, L]` bool mask (`_Packed`)."""
  num_words = -(-mask.shape[1] // 32)
  bits = jnp.pad(mask, ((0, 0), (0, num_words * 32 - mask.shape[1])))
  bits = bits.reshape(mask.shape[0], num_words, 32).astype(jnp.uint32)
  shifts = jnp.arange(32, dtype=jnp.uint32)[None, None, :]
  words = jnp.sum(bits << shifts, axis=2, dtype=jnp.uint32)
  counts = lax.population_count(words).astype(jnp.int32)
  return _Packed(words, jnp.cumsum(counts, axis=1) - counts)


def _rank_in_row(packed: _Packed, index: jax.Array) -> jax.Array:
  """`[B, K]` per row, how many set entries come before entry `index` `[B, K]`."""
  word = jnp.take_along_axis(packed.words, index // 32, axis=1)
  below = (jnp.uint32(1) << (index % 32).astype(jnp.uint32)) - jnp.uint32(1)
  return (jnp.take_along_axis(packed.before, index // 32, axis=1)
          + lax.population_count(word & below).astype(jnp.int32))


def _compact(packed: _Packed, capacity: int) -> jax.Array:
  """`[B, capacity]` per row the indices of its set entries, in order; -1 past them.

  Sort-free stream compaction: a binary search over the per-word running
  counts finds the word of the k-th set entry, a popcount bisection its bit.
  """
  k = jnp.arange(capacity, dtype=jnp.int32)
  word_index = jax.vmap(lambda before: jnp.searchsorted(before, k, side="right"))(
      packed.before) - 1
  k = k[None, :]
  word = jnp.take_along_axis(packed.words, word_index, axis=1)
  rank = k - jnp.take_along_axis(packed.before, word_index, axis=1)
  bit = jnp.zeros_like(rank)
  for width in (16, 8, 4, 2, 1):
    low = lax.population_count(
        (word >> bit.astype(jnp.uint32)) & jnp.uint32((1 << width) - 1)).astype(jnp.int32)
    higher = rank >= low
    rank = jnp.where(higher, rank - low, rank)
    bit = jnp.where(higher, bit + width, bit)
  total = packed.before[:, -1:] + lax.population_count(packed.words[:, -1:]).astype(jnp.int32)
  return jnp.where(k < total, word_index * 32 + bit, -1)


def _find(parent: jax.Array, x: jax.Array) -> jax.Array:
  """Union-find roots of the ids `x` (no writes: the carried state stays small)."""
  return lax.while_loop(lambda x: jnp.any(parent[x] != x), lambda x: parent[x], x)


def _boruvka(u, v, value, slot, num_nodes: int) -> jax.Array:
  """Minimum spanning forest of the multigraph with edges `(u[e], v[e])`.

  Edges are ordered by (value, slot), distinct within a component; `value` is
  `inf` for padding. Returns `[num_nodes]` per node the index of the edge with
  which its component hooked onto another (-1 for the final roots): those are
  the forest's edges, each once.
  """
  ids = jnp.arange(num_nodes, dtype=jnp.int32)
  edge_ids = jnp.arange(u.shape[0], dtype=jnp.int32)
  inf = jnp.array(jnp.inf, value.dtype)

  def round_(state):
    component, forest_edge, _ = state
    cu, cv = component[u], component[v]
    active = (cu != cv) & (value < inf)
    candidate = jnp.where(active, value, inf)
    best_value = jnp.full((num_nodes,), inf).at[cu].min(candidate).at[cv].min(candidate)
    on_u = active & (value == best_value[cu])
    on_v = active & (value == best_value[cv])
    best_slot = (jnp.full((num_nodes,), _INT_MAX, jnp.int32)
                 .at[cu].min(jnp.where(on_u, slot, _INT_MAX))
                 .at[cv].min(jnp.where(on_v, slot, _INT_MAX)))
    # Keys are distinct, so each component's lightest edge is one list entry.
    wins_u = on_u & (slot == best_slot[cu])
    wins_v = on_v & (slot == best_slot[cv])
    at_u = jnp.where(wins_u, cu, num_nodes)
    at_v = jnp.where(wins_v, cv, num_nodes)
    hook = ids.at[at_u].set(cv, mode="drop").at[at_v].set(cu, mode="drop")
    chosen = (jnp.full((num_nodes,), -1, jnp.int32)
              .at[at_u].set(edge_ids, mode="drop").at[at_v].set(edge_ids, mode="drop"))
    # Two components that chose each other chose the same edge: the smaller id stays root.
    mutual = (hook[hook] == ids) & (ids < hook)
    hook = jnp.where(mutual, ids, hook)
    child = hook != ids
    # A component hooks once and is then absorbed, so its id can hold its edge.
    forest_edge = jnp.where(child, chosen, forest_edge)
    return _pointer_jump(hook)[component], forest_edge, jnp.any(child)

  state = (ids, jnp.full((num_nodes,), -1, jnp.int32), jnp.array(True))
  return lax.while_loop(lambda s: s[2], round_, state)[1]


def _reduced_h0(values, tie, root, keep, *, grid: _Grid, basin_cap: int, edge_cap: int,
                capacity: int):
  """Steps 2-4 on compact arrays: per image `basin_cap` basins, `edge_cap` candidate edges.

  The caller guarantees both capacities hold every image's basins and candidates.
  Global basin id `b * basin_cap + i` is basin i of image b (in pixel order).
  Returns `[B, capacity]` births, deaths (flat pixel indices) and `[B]` counts.
  """
  batch, n = grid.batch, grid.size
  flat_values, flat_tie = values.reshape(-1), tie.reshape(-1)
  lanes = jnp.arange(batch, dtype=jnp.int32)

  # Compact basin ids, in image order, and each basin's lowest pixel. The root
  # has the basin's minimum value, so only pixels on that floor can be lowest.
  pixel_ids = grid.global_ids().reshape(batch, n)
  roots = _pack(root.reshape(batch, n) == pixel_ids)
  root_image = root.reshape(batch, n) // n
  basin_of = (root_image * basin_cap
              + _rank_in_row(roots, root.reshape(batch, n) % n)).reshape(-1)
  on_floor = flat_values == flat_values[root]
  lowest_tie = jnp.full((batch * basin_cap,), _INT_MAX, jnp.int32).at[
      jnp.where(on_floor, basin_of, batch * basin_cap)].min(flat_tie, mode="drop")
  lowest = (lanes[:, None] * n + _grid.fortran_to_flat(
      lowest_tie.reshape(batch, basin_cap), grid.shape)).reshape(-1)

  def edge_ends(rank, pixel):
    """Global ids of the anchor and far pixel of the edges of type `rank` at `pixel`."""
    anchor = lanes[:, None] * n + pixel
    return anchor, anchor + grid.deltas()[rank]

  # Candidate edges, entry (r, p) of row b being the edge of type r at pixel p.
  entry = _compact(_pack(keep.reshape(batch, -1)), edge_cap)
  is_edge = entry >= 0
  entry = jnp.maximum(entry, 0)
  anchor, far = edge_ends(entry // n, entry % n)
  far = jnp.where(is_edge, far, anchor)
  value = jnp.where(is_edge, jnp.maximum(flat_values[anchor], flat_values[far]), jnp.inf)
  slot = entry // n * n + flat_tie[anchor]
  forest_edge = _boruvka(basin_of[anchor].reshape(-1), basin_of[far].reshape(-1),
                         value.reshape(-1), slot.reshape(-1), batch * basin_cap)

  # Each image's forest edges (they hang off its basins) by tie slot, then
  # `top_k` of -value hands them out in increasing (value, slot) order: ties go
  # to the lower index, which is the lower slot.
  in_forest = forest_edge >= 0
  forest_slot = jnp.sort(jnp.where(in_forest, slot.reshape(-1)[jnp.maximum(forest_edge, 0)],
                                   _INT_MAX).reshape(batch, basin_cap), axis=1)
  in_forest = forest_slot < _INT_MAX
  forest_slot = jnp.where(in_forest, forest_slot, 0)
  anchor, far = edge_ends(forest_slot // n,
                          _grid.fortran_to_flat(forest_slot % n, grid.shape))
  anchor_value, far_value = flat_values[anchor], flat_values[far]
  value = jnp.maximum(anchor_value, far_value)
  keys = jnp.where(in_forest, -value, -jnp.inf)
  value, u, v = value.reshape(-1), basin_of[anchor].reshape(-1), basin_of[far].reshape(-1)
  death_pixel = jnp.where(far_value > anchor_value, far, anchor).reshape(-1)
  chunk = min(_CHUNK, basin_cap)
  edge_base = lanes * basin_cap
  value_lowest, tie_lowest = flat_values[lowest], flat_tie[lowest]

  def merge(j, state):
    chunk_keys, chunk_edges, parent, rank_, oldest, births, deaths, count = state
    live = chunk_keys[:, j] > -jnp.inf
    edge = edge_base + chunk_edges[:, j]
    root_u, root_v = _find(parent, u[edge]), _find(parent, v[edge])
    old_u, old_v = oldest[root_u], oldest[root_v]
    u_older = _grid.lex_less(value_lowest[old_u], tie_lowest[old_u],
                             value_lowest[old_v], tie_lowest[old_v])
    young = jnp.where(u_older, old_v, old_u)
    survivor = jnp.where(u_older, old_u, old_v)
    # Union by rank; the new root remembers the older minimum.
    u_on_top = rank_[root_u] >= rank_[root_v]
    top = jnp.where(u_on_top, root_u, root_v)
    below = jnp.where(u_on_top, root_v, root_u)
    drop = jnp.where(live, 0, batch * basin_cap)
    parent = parent.at[below + drop].set(top, mode="drop")
    rank_ = rank_.at[top + drop].add((rank_[root_u] == rank_[root_v]).astype(jnp.int32),
                                     mode="drop")
    oldest = oldest.at[top + drop].set(survivor, mode="drop")
    positive = live & (value_lowest[young] < value[edge])
    out = jnp.where(positive & (count < capacity), lanes * capacity + count, batch * capacity)
    births = births.at[out].set(lowest[young] - lanes * n, mode="drop")
    deaths = deaths.at[out].set(death_pixel[edge] - lanes * n, mode="drop")
    return (chunk_keys, chunk_edges, parent, rank_, oldest, births, deaths,
            count + positive.astype(jnp.int32))

  def next_chunk(state):
    keys, parent, rank_, oldest, births, deaths, count = state
    chunk_keys, chunk_edges = lax.top_k(keys, chunk)
    steps = jnp.max(jnp.sum(chunk_keys > -jnp.inf, axis=1))
    state = (chunk_keys, chunk_edges, parent, rank_, oldest, births, deaths, count)
    _, _, parent, rank_, oldest, births, deaths, count = lax.fori_loop(0, steps, merge, state)
    keys = jnp.put_along_axis(keys, chunk_edges, -jnp.inf, axis=1, inplace=False)
    return keys, parent, rank_, oldest, births, deaths, count

  basins = jnp.arange(batch * basin_cap, dtype=jnp.int32)
  empty = jnp.full((batch * capacity,), -1, jnp.int32)
  state = (keys, basins, jnp.zeros_like(basins), basins, empty, empty,
           jnp.zeros((batch,), jnp.int32))
  *_, births, deaths, count = lax.while_loop(
      lambda s: jnp.any(s[0] > -jnp.inf), next_chunk, state)
  return births.reshape(batch, capacity), deaths.reshape(batch, capacity), count


def _capacity_tiers(grid: _Grid) -> list[tuple[int, int]]:
  """Per-image (basin, edge) capacities to try in turn; the last holds any input."""
  n = grid.size
  worst = [(n, n * len(grid.offsets))]
  if grid.batch * n < _MIN_PIXELS_FOR_TIERS:
    return worst
  return [(math.ceil(n * b), math.ceil(n * e)) for b, e in _TIERS] + worst


def _global_minimum(values, tie, grid: _Grid) -> jax.Array:
  """`[B]` flat index of each image's lowest pixel in the (value, tie) order."""
  axes = tuple(range(1, values.ndim))
  lowest = jnp.min(values, axis=axes, keepdims=True)
  fortran = jnp.min(jnp.where(values == lowest, tie, _INT_MAX), axis=axes)
  return _grid.fortran_to_flat(fortran, grid.shape)


def grid_h0(values: jax.Array, construction: str, capacity: int) -> H0Pairs:
  """Finite H0 pairs of the sublevel filtrations of a batch of images.

  Args:
    values: `[B, *shape]` floating, no NaN; `-inf` allowed (the dual's ring).
    construction: "V" (face connectivity) or "T" (corner connectivity).
    capacity: pair slots per image.

  Returns:
    `H0Pairs` with leading axis B; pairs past `capacity` are counted, not stored.
  """
  shape = values.shape[1:]
  grid = _Grid(values.shape[0], shape, _grid.edge_offsets(len(shape), construction))
  tie = jnp.broadcast_to(_grid.fortran_index(shape), values.shape)
  root = _attachment_roots(values, tie, grid)
  keep = _candidate_edges(values, tie, root, grid)
  tiers = _capacity_tiers(grid)
  branches = [functools.partial(_reduced_h0, grid=grid, basin_cap=basin_cap,
                                edge_cap=edge_cap, capacity=capacity)
              for basin_cap, edge_cap in tiers]
  if len(branches) == 1:
    births, deaths, count = branches[0](values, tie, root, keep)
  else:
    ids = grid.global_ids().reshape(grid.batch, -1)
    num_basins = jnp.max(jnp.sum(root.reshape(grid.batch, -1) == ids, axis=1))
    num_edges = jnp.max(jnp.sum(keep.reshape(grid.batch, -1), axis=1))
    too_small = [(num_basins > b) | (num_edges > e) for b, e in tiers[:-1]]
    # Tiers grow, so the first that fits is the number of those too small.
    tier = sum(t.astype(jnp.int32) for t in too_small)
    births, deaths, count = lax.switch(tier, branches, values, tie, root, keep)
  return H0Pairs(births, deaths, count, _global_minimum(values, tie, grid))
