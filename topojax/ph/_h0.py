"""Exact H0 persistence of a pixel graph, data-parallel but for a short tail.

Algorithm (one `jit`, no host callback, no full sort):

1. **Basins.** Every pixel is attached through the first edge Kruskal would
   give it (see `_attachment_roots`); pointer jumping gives each pixel its
   basin. Those edges never create a pair of positive persistence, so H0 of
   the image is H0 of the basin graph.
2. **Candidate edges.** Of the grid edges between two basins only the lightest
   per pair of basins can be in the minimum spanning forest; a stencil drops
   every edge that a lighter nearby edge between the same two basins rules out
   (`_candidate_edges`). What is left (≈ 4 edges per basin, 1.5-3 % of the
   edges of a smoothed map) is stream-compacted into a short per-image list
   (`_compact`), and basins get compact ids.
3. **Elder rule in parallel rounds** on that list (`_elder_rounds`): every
   basin takes its lightest edge; one whose other side already holds an older
   minimum dies there and is contracted. Each round removes about 2/3 of the
   basins, and the survivors move to ever smaller arrays; rounds stop when
   they stop paying (about 10 rounds decide every edge of a smoothed map).
4. **The tail** (`_elder_sequential`): a union-find over the edges left (none
   or a few dozen per image, unless minima are chained so that every round
   decides only one), in (value, tie slot) order, the images in lockstep.

Each merge kills the component with the younger minimum: the pair is
(that minimum, the pixel of the merging edge with the larger value — the edge's
anchor on a tie). Pairs of zero persistence are dropped, as cripser does.

Images are worked on with their axes reversed, so that C order there is the
axis-0-fastest tie order of `_grid` (cripser's): a pixel's id is its tie, an
edge's position in the candidate list is its tie slot.

The code is written for a batch: B images are one graph on B * N global pixel
ids, so every loop is shared by the batch (`_cubical` wires this to `vmap`).
Steps 3-4 work on fixed-capacity compact arrays (`lax.switch` over capacity
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

from topojax._src import numerics
from topojax._src import xla
from topojax.ph import _grid

_INT_MAX = jnp.iinfo(jnp.int32).max
# Capacities tried before the worst case, as fractions of an image's pixels:
# (basins, candidate edges). Smoothed maps fit the first, i.i.d. noise the second.
_TIERS = ((1 / 16, 1 / 8), (1 / 4, 1))
# Pairs put in death order per `top_k` call.
_CHUNK = 1024
# Edges handed to the sequential union-find per `top_k` call (few are left).
_SEQUENTIAL_CHUNK = 64
# Elder-rule rounds go on while one shortens the longest list of undecided
# edges by at least this many (a round costs about as much as that many
# sequential steps).
_MIN_ROUND_PROGRESS = 8
# Elder-rule rounds move their survivors to arrays this many times smaller
# (`grid_h0`: 4 is 5-15 % faster but compiles 40 % longer), down to this many
# nodes per image.
_NODE_SHRINK = 16
_MIN_NODE_WIDTH = 64
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
  With the axes reversed (see the module docstring) `p` is also the tie order.
  """
  batch: int
  shape: tuple[int, ...]
  offsets: tuple[tuple[int, ...], ...]

  @property
  def size(self) -> int:
    return math.prod(self.shape)

  def pixel_ids(self) -> jax.Array:
    """`[1, *shape]` each pixel's index in its image."""
    return jnp.arange(self.size, dtype=jnp.int32).reshape((1,) + self.shape)

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

  def step(self, offset) -> int:
    """The flat index difference of a spatial offset."""
    return _grid.flat_offset(offset, self.shape)

  def deltas(self) -> jax.Array:
    """`[M]` the flat index step of each forward edge type."""
    return jnp.array([self.step(o) for o in self.offsets], jnp.int32)


def _pointer_jump(pointer: jax.Array) -> jax.Array:
  """Follows `pointer` to its fixed points (a forest of trees, roots on themselves)."""
  def body(state):
    pointer, _ = state
    # Two jumps per test: the test costs as much as a jump.
    once = pointer[pointer]
    twice = once[once]
    return twice, jnp.any(twice != once)
  return lax.while_loop(lambda s: s[1], body, (pointer, jnp.array(True)))[0]


def _true_at_run_time(values: jax.Array) -> jax.Array:
  """A predicate for `xla.materialised` that XLA cannot fold: the central pixel of
  image 0 equals itself (a padded ring's constant could be folded; NaN, which
  no caller passes, would take the branch of zeros)."""
  center = values[(0,) + tuple(n // 2 for n in values.shape[1:])]
  return center == center


def _attachment_roots(values, grid: _Grid) -> jax.Array:
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
  pixel = grid.pixel_ids()

  def attach(values):
    ids = grid.global_ids()  # here, not captured: XLA would write it out
    padded_values = grid.pad(values, jnp.array(jnp.inf, values.dtype))
    first_slot = jnp.full(values.shape, _INT_MAX, jnp.int32)
    for rank, sign, offset in _grid.all_offsets(grid.offsets):
      not_higher = grid.shifted(padded_values, offset) <= values
      anchor = pixel if sign > 0 else pixel + grid.step(offset)
      first_slot = jnp.minimum(first_slot, jnp.where(not_higher, rank * n + anchor, _INT_MAX))
    # The slot names the edge: its type and anchor. The far end is the anchor,
    # or p + the type's step when p is the anchor.
    rank, anchor = first_slot // n, first_slot % n
    forward = sum(jnp.where(rank == r, grid.step(o), 0) for r, o in enumerate(grid.offsets))
    far = jnp.where(anchor == pixel, pixel + forward, anchor)
    return jnp.where(first_slot < _INT_MAX, ids - pixel + far, ids).reshape(-1)

  live = _true_at_run_time(values)
  ids = jnp.arange(grid.batch * n, dtype=jnp.int32)
  attach = xla.materialised(live, attach, values)
  mutual = (attach[attach] == ids) & (ids < attach)
  return _pointer_jump(jnp.where(mutual, ids, attach))


def _adjacent(a: tuple[int, ...], b: tuple[int, ...], num_types: int) -> bool:
  """Whether two distinct neighbour offsets point at pixels that touch.

  With 26-connectivity (13 edge types) only face-touching ones count: all
  touching ones would make the stencil ~300 comparisons per voxel.
  """
  distance = sum if num_types > 4 else max
  return a != b and distance(abs(x - y) for x, y in zip(a, b)) == 1


def _candidate_edges(values, root, grid: _Grid) -> jax.Array:
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
  pixel = grid.pixel_ids()

  def unbeaten_ends(values, basin):
    """Per direction, whether the incident edge there survives at this end."""
    padded_values = grid.pad(values, inf)
    padded_basin = grid.pad(basin, -1)  # -1: outside the image

    def edge(rank, sign, offset, shift):
      """Far basin and key of the edge at `p + shift` in direction `offset`.

      Reads only the two padded inputs, so XLA fuses all of this into one
      pass over the pixels.
      """
      near = basin if not any(shift) else grid.shifted(padded_basin, shift)
      far = grid.shifted(padded_basin, tuple(s + o for s, o in zip(shift, offset)))
      crosses = (far != near) & (far >= 0)
      value = jnp.maximum(grid.shifted(padded_values, shift),
                          grid.shifted(padded_values, tuple(s + o for s, o in zip(shift, offset))))
      anchor = shift if sign > 0 else tuple(s + o for s, o in zip(shift, offset))
      slot = rank * n + pixel + grid.step(anchor)
      return near, jnp.where(crosses, far, -1), jnp.where(crosses, value, inf), slot

    # Per pixel p and direction i: the incident edge's far basin and key.
    zero = (0,) * len(grid.shape)
    incident = [edge(rank, sign, offset, zero)[1:]
                for rank, sign, offset in _grid.all_offsets(grid.offsets)]
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
        for axis in range(len(offset)):
          for sign in ((1, -1) if offset[axis] == 0 else ()):
            shift = tuple(sign * (k == axis) for k in range(len(offset)))
            near, near_far, near_value, near_slot = edge(i // 2, 1, offset, shift)
            beaten |= ((near == basin) & (near_far == far)
                       & _grid.lex_less(near_value, near_slot, value, slot))
      unbeaten.append(~beaten)
    return tuple(unbeaten)

  def both_ends(unbeaten):
    """An edge is kept when it survives at both of its ends."""
    return jnp.stack([
        unbeaten[2 * rank] & grid.shifted(grid.pad(unbeaten[2 * rank + 1], False), offset)
        for rank, offset in enumerate(grid.offsets)], axis=1)

  basin = root.reshape(values.shape)
  live = _true_at_run_time(values)
  unbeaten = xla.materialised(live, unbeaten_ends, values, basin)
  # Written out too: fused into the packing that follows it is 3x slower.
  return xla.materialised(live, both_ends, unbeaten)


class _Packed(NamedTuple):
  """A `[B, L]` mask packed 32 entries to a word, with per-row running counts."""
  words: jax.Array  # [B, W] uint32, entry i of a row is bit i % 32 of word i // 32
  before: jax.Array  # [B, W] int32, set entries of the row in earlier words

  @property
  def total(self) -> jax.Array:
    """`[B]` set entries per row."""
    return self.before[:, -1] + lax.population_count(self.words[:, -1]).astype(jnp.int32)


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
  return jnp.where(k < packed.total[:, None], word_index * 32 + bit, -1)


def _find(parent: jax.Array, x: jax.Array) -> jax.Array:
  """Union-find roots of the ids `x` (no writes: the carried state stays small)."""
  return lax.while_loop(lambda x: jnp.any(parent[x] != x), lambda x: parent[x], x)


def _undecided(u, v, young, value):
  """Edges no rule has decided yet: real, unpaired, between two distinct nodes."""
  return (young < 0) & (value < jnp.inf) & (u != v)


def _next_chunk(keys: jax.Array, k: int):
  """The `k` largest keys per row (ties: lower index first), their indices, and
  `keys` with them taken out."""
  chunk_keys, chunk_index = lax.top_k(keys, k)
  return chunk_keys, chunk_index, jnp.put_along_axis(keys, chunk_index, -jnp.inf, axis=1,
                                                     inplace=False)


def _older(birth, a, b):
  """Whether node `a`'s minimum is born before node `b`'s (`birth`: (value, tie))."""
  value, tie = birth
  return _grid.lex_less(value[a], tie[a], value[b], tie[b])


def _in_death_order(value, positive, birth_pixel, death_pixel, capacity: int):
  """Per row of `[B, W]`, the pixels of the `positive` entries in (value, index) order.

  Returns `[B, capacity]` births and deaths (-1 past them) and `[B]` counts
  (the positive entries; those past `capacity` are not stored).
  """
  batch, width = value.shape
  chunk = min(_CHUNK, width)
  count = jnp.sum(positive, axis=1, dtype=jnp.int32)
  stored = jnp.minimum(count, capacity)
  lanes = jnp.arange(batch, dtype=jnp.int32)[:, None]

  def next_chunk(state):
    keys, births, deaths, written = state
    chunk_keys, chunk_index, keys = _next_chunk(keys, chunk)
    position = written[:, None] + jnp.arange(chunk, dtype=jnp.int32)[None, :]
    out = jnp.where((chunk_keys > -jnp.inf) & (position < capacity),
                    lanes * capacity + position, batch * capacity)
    births = births.at[out].set(jnp.take_along_axis(birth_pixel, chunk_index, axis=1),
                                mode="drop")
    deaths = deaths.at[out].set(jnp.take_along_axis(death_pixel, chunk_index, axis=1),
                                mode="drop")
    return keys, births, deaths, jnp.minimum(written + chunk, stored)

  empty = jnp.full((batch * capacity,), -1, jnp.int32)
  keys = jnp.where(positive, -value, -jnp.inf)
  state = (keys, empty, empty, jnp.zeros((batch,), jnp.int32))
  _, births, deaths, _ = lax.while_loop(lambda s: jnp.any(s[3] < stored), next_chunk, state)
  return births.reshape(batch, capacity), deaths.reshape(batch, capacity), count


def _elder_rounds(u, v, value, birth, *, batch: int, shrink: int = _NODE_SHRINK):
  """The elder rule in parallel rounds, for most edges of a graph.

  Edges `(u[e], v[e])` are keyed by (value, index) (index order is the tie
  order within an image); padding has value `inf`. Nodes are named by their
  oldest basin, whose minimum `birth` gives. In a round every node takes its
  lightest edge, its hook (a spanning-forest edge); hooks form trees whose
  edges get lighter towards a pair of nodes that chose each other. A node is
  alone until its hook, so it dies there if the other side then holds an
  older minimum, which it does when a node on the other end's hook path (all
  lighter hooks), or the pair at its end, is older. Dead nodes are contracted
  into their hook's other end, which changes no other pair. Each round
  removes about 2/3 of the nodes of smoothed maps and noise; rounds stop when
  one shortens the longest list of undecided edges by less than
  `_MIN_ROUND_PROGRESS` (a chain of ever older minima behind ever heavier
  edges takes a round per node), and `_elder_sequential` finishes.

  Returns `young` (per edge the node that dies there, -1 if none yet) and the
  edges' endpoints as contracted nodes.
  """
  key = numerics.sortable_int32(value)  # XLA:CPU's float scatter-min is 4x slower than int
  origin = jnp.arange(birth[0].shape[0], dtype=jnp.int32)
  return _rounds_from(u, v, value, key, birth, origin, batch=batch, shrink=shrink)


def _rounds_from(u, v, value, key, birth, origin, *, batch: int, shrink: int):
  """`_elder_rounds` on `[batch * width]` nodes and `[batch * edge_width]` edges,
  moving both to arrays `shrink` times smaller when they fit.

  Most nodes die in the first rounds, and with them most edges are decided, so
  the survivors and the undecided edges are renumbered into ever smaller
  arrays. `origin` maps nodes to the caller's ids, in which `young` and the
  returned endpoints are given; both are indexed by this call's edges.
  """
  num_nodes, num_edges = origin.shape[0], u.shape[0]
  width, edge_width = num_nodes // batch, num_edges // batch
  smaller, smaller_edges = width // shrink, edge_width // shrink
  last = smaller < _MIN_NODE_WIDTH  # the last size: rounds go on until they stall
  nodes = jnp.arange(num_nodes, dtype=jnp.int32)
  edges = jnp.arange(num_edges, dtype=jnp.int32)

  def undecided(u, v, young):
    live = _undecided(u, v, young, value)
    return live, jnp.max(jnp.sum(live.reshape(batch, -1), axis=1))

  def fits(most_alive, remaining):
    return (most_alive <= smaller) & (remaining <= smaller_edges)

  def round_(state):
    u, v, young, live, _, before, _ = state
    # Per node its lightest live edge, if any.
    candidate = jnp.where(live, key, _INT_MAX)
    best = jnp.full((num_nodes,), _INT_MAX).at[u].min(candidate).at[v].min(candidate)
    hook_edge = (jnp.full((num_nodes,), _INT_MAX, jnp.int32)
                 .at[u].min(jnp.where(live & (key == best[u]), edges, _INT_MAX))
                 .at[v].min(jnp.where(live & (key == best[v]), edges, _INT_MAX)))
    hooked = hook_edge < _INT_MAX
    edge = jnp.where(hooked, hook_edge, 0)
    hook = jnp.where(hooked, u[edge] + v[edge] - nodes, nodes)
    end = hooked & (hook[hook] == nodes) & (nodes < hook)
    pointer = jnp.where(end, nodes, hook)
    oldest = jnp.where(end & _older(birth, hook, nodes), hook, nodes)

    def jump(state):
      pointer, oldest = state
      oldest = jnp.where(_older(birth, oldest[pointer], oldest), oldest[pointer], oldest)
      return pointer[pointer], oldest

    # Pointer jumping for the oldest node on each hook path (the last jump
    # leaves the path's end itself to fold in).
    pointer, oldest = lax.while_loop(lambda s: jnp.any(s[0][s[0]] != s[0]), jump,
                                     (pointer, oldest))
    oldest = jump((pointer, oldest))[1]
    dies = hooked & _older(birth, oldest[hook], nodes)
    young = young.at[jnp.where(dies, edge, num_edges)].set(origin, mode="drop")
    into = _pointer_jump(jnp.where(dies, hook, nodes))
    u, v = into[u], into[v]
    live, after = undecided(u, v, young)
    # Survivors that had an edge (a superset of those that still have one).
    alive = hooked & ~dies
    most_alive = jnp.max(jnp.sum(alive.reshape(batch, -1), axis=1))
    return u, v, young, live, (alive, most_alive), after, before - after >= _MIN_ROUND_PROGRESS

  young = jnp.full((num_edges,), -1, jnp.int32)
  live, remaining = undecided(u, v, young)
  everyone = (jnp.ones((num_nodes,), bool), jnp.array(width, jnp.int32))
  state = (u, v, young, live, everyone, remaining, jnp.array(True))
  goes_on = lambda s: (s[5] > 0) & s[6] & (last | ~fits(s[4][1], s[5]))
  u, v, young, live, (alive, most_alive), remaining, _ = lax.while_loop(goes_on, round_, state)
  if last:
    return young, origin[u], origin[v]

  def move_to_smaller(u, v, young, live, alive):
    lanes = jnp.arange(batch, dtype=jnp.int32)[:, None]
    packed = _pack(alive.reshape(batch, width))
    old = _compact(packed, smaller)
    old_ids = (lanes * width + jnp.maximum(old, 0)).reshape(-1)
    birth_ = (jnp.where(old.reshape(-1) >= 0, birth[0][old_ids], jnp.inf), birth[1][old_ids])
    edge = _compact(_pack(live.reshape(batch, edge_width)), smaller_edges)
    is_edge = (edge >= 0).reshape(-1)
    edge = (lanes * edge_width + jnp.maximum(edge, 0)).reshape(-1)

    def renumber(x):  # padding edges become loops at each image's first node
      x = x[edge].reshape(batch, -1)
      return jnp.where(is_edge.reshape(batch, -1),
                       lanes * smaller + _rank_in_row(packed, x - lanes * width),
                       lanes * smaller).reshape(-1)

    inner_young, inner_u, inner_v = _rounds_from(
        renumber(u), renumber(v), jnp.where(is_edge, value[edge], jnp.inf),
        key[edge], birth_, origin[old_ids], batch=batch, shrink=shrink)
    at = jnp.where(is_edge, edge, num_edges)
    young = young.at[jnp.where(inner_young >= 0, at, num_edges)].set(inner_young, mode="drop")
    # Edges left behind are decided or loops.
    return (young, origin[u].at[at].set(inner_u, mode="drop"),
            origin[v].at[at].set(inner_v, mode="drop"))

  def stay(u, v, young, live, alive):
    return young, origin[u], origin[v]

  return lax.cond(fits(most_alive, remaining) & (remaining > 0), move_to_smaller, stay,
                  u, v, young, live, alive)


def _elder_sequential(u, v, value, young, birth, *, batch: int):
  """The elder rule for the edges `_elder_rounds` left undecided, one at a time.

  A union-find over the images in lockstep, the edges in (value, index) order
  (`lax.top_k` of -value in chunks; ties go to the lower index). Returns
  `young` completed.
  """
  num_nodes, num_edges = birth[0].shape[0], u.shape[0]
  nodes = jnp.arange(num_nodes, dtype=jnp.int32)
  width = num_edges // batch
  edge_base = jnp.arange(batch, dtype=jnp.int32) * width

  def merge(j, state):
    chunk_keys, chunk_edges, parent, rank_, oldest, young = state
    edge = edge_base + chunk_edges[:, j]
    root_u, root_v = _find(parent, u[edge]), _find(parent, v[edge])
    old_u, old_v = oldest[root_u], oldest[root_v]
    u_older = _older(birth, old_u, old_v)
    # Union by rank; the new root remembers the older minimum.
    u_on_top = rank_[root_u] >= rank_[root_v]
    top = jnp.where(u_on_top, root_u, root_v)
    below = jnp.where(u_on_top, root_v, root_u)
    joins = (chunk_keys[:, j] > -jnp.inf) & (root_u != root_v)
    node_drop = jnp.where(joins, 0, num_nodes)
    parent = parent.at[below + node_drop].set(top, mode="drop")
    rank_ = rank_.at[top + node_drop].add((rank_[root_u] == rank_[root_v]).astype(jnp.int32),
                                          mode="drop")
    oldest = oldest.at[top + node_drop].set(jnp.where(u_older, old_u, old_v), mode="drop")
    young = young.at[jnp.where(joins, edge, num_edges)].set(
        jnp.where(u_older, old_v, old_u), mode="drop")
    return chunk_keys, chunk_edges, parent, rank_, oldest, young

  def next_chunk(state):
    keys, parent, rank_, oldest, young = state
    chunk_keys, chunk_edges, keys = _next_chunk(keys, min(_SEQUENTIAL_CHUNK, width))
    steps = jnp.max(jnp.sum(chunk_keys > -jnp.inf, axis=1))
    state = (chunk_keys, chunk_edges, parent, rank_, oldest, young)
    _, _, parent, rank_, oldest, young = lax.fori_loop(0, steps, merge, state)
    return keys, parent, rank_, oldest, young

  keys = jnp.where(_undecided(u, v, young, value), -value, -jnp.inf).reshape(batch, width)
  state = (keys, nodes, jnp.zeros_like(nodes), nodes, young)
  return lax.while_loop(lambda s: jnp.any(s[0] > -jnp.inf), next_chunk, state)[-1]


def _reduced_h0(values, root, lowest_at, roots: _Packed, candidates: _Packed, *, grid: _Grid,
                basin_cap: int, edge_cap: int, capacity: int):
  """Steps 2-4 on compact arrays: per image `basin_cap` basins, `edge_cap` candidate edges.

  `roots` and `candidates` mark the basins' roots and the candidate edges;
  `lowest_at` holds at each root its basin's lowest pixel. The caller
  guarantees both capacities hold every image's basins and candidates. Global
  basin id `b * basin_cap + i` is basin i of image b (in the order of roots).
  Returns `[B, capacity]` births, deaths (pixel indices), `[B]` counts and
  `[B]` the pixel of each image's essential class.
  """
  batch, n = grid.batch, grid.size
  flat_values = values.reshape(-1)
  lanes = jnp.arange(batch, dtype=jnp.int32)[:, None]

  # Candidate edges: entry r * N + p of row b is the edge of type r at pixel p,
  # so entries come in tie-slot order. Padding entries are loops at pixel 0.
  entry = _compact(candidates, edge_cap)
  is_edge = entry >= 0
  entry = jnp.maximum(entry, 0)
  anchor = lanes * n + entry % n
  far = jnp.where(is_edge, anchor + grid.deltas()[entry // n], anchor)
  anchor_value, far_value = flat_values[anchor], flat_values[far]
  value = jnp.where(is_edge, jnp.maximum(anchor_value, far_value), jnp.inf).reshape(-1)
  death_pixel = jnp.where(far_value > anchor_value, far, anchor) - lanes * n

  # The edges' ends as compact basin ids, and those basins' births (every
  # basin has a candidate edge, or is alone in its image with pixel 0).
  end_roots = jnp.concatenate([root[anchor], root[far]], axis=1)
  ends = (lanes * basin_cap + _rank_in_row(roots, end_roots - lanes * n)).reshape(-1)
  end_roots = end_roots.reshape(-1)
  num_nodes = batch * basin_cap
  lowest = jnp.zeros((num_nodes,), jnp.int32).at[ends].set(lowest_at[end_roots])
  birth = (jnp.full((num_nodes,), jnp.inf, values.dtype).at[ends].set(flat_values[end_roots]),
           lowest)
  u, v = jnp.split(ends.reshape(batch, 2 * edge_cap), 2, axis=1)

  young, u, v = _elder_rounds(u.reshape(-1), v.reshape(-1), value, birth, batch=batch)
  young = _elder_sequential(u, v, value, young, birth, batch=batch)
  # Pairs of zero persistence are dropped.
  positive = (young >= 0) & (birth[0][jnp.maximum(young, 0)] < value)
  birth_pixel = lowest[jnp.maximum(young, 0)].reshape(batch, edge_cap) - lanes * n
  births, deaths, count = _in_death_order(
      value.reshape(batch, edge_cap), positive.reshape(batch, edge_cap), birth_pixel,
      death_pixel, capacity)
  # The essential class is born at the lowest pixel of the oldest basin.
  birth_value = birth[0].reshape(batch, basin_cap)
  oldest = jnp.min(birth_value, axis=1, keepdims=True)
  essential = jnp.min(jnp.where(birth_value == oldest, lowest.reshape(batch, basin_cap),
                                _INT_MAX), axis=1) - lanes[:, 0] * n
  return births, deaths, count, essential


def _capacity_tiers(grid: _Grid) -> list[tuple[int, int]]:
  """Per-image (basin, edge) capacities to try in turn; the last holds any input."""
  n = grid.size
  worst = [(n, n * len(grid.offsets))]
  if grid.batch * n < _MIN_PIXELS_FOR_TIERS:
    return worst
  return [(math.ceil(n * b), math.ceil(n * e)) for b, e in _TIERS] + worst


def reverse_axes(values: jax.Array) -> jax.Array:
  """`[B, *shape]` -> `[B, *reversed(shape)]`, written out once, for `grid_h0`.

  Written out: XLA would otherwise fuse the transposition (and the caller's
  preprocessing) into every gather from it; flat, so that XLA cannot turn the
  transposition into a mere change of layout.
  """
  ndim = values.ndim - 1
  reversed_shape = values.shape[:1] + values.shape[1:][::-1]
  return xla.materialised(
      _true_at_run_time(values),
      lambda v: jnp.transpose(v, (0,) + tuple(range(ndim, 0, -1))).reshape(-1),
      values).reshape(reversed_shape)


def grid_h0(values: jax.Array, construction: str, capacity: int, *,
            axes_reversed: bool = False) -> H0Pairs:
  """Finite H0 pairs of the sublevel filtrations of a batch of images.

  Args:
    values: `[B, *shape]` floating, no NaN; `-inf` allowed (the dual's ring).
    construction: "V" (face connectivity) or "T" (corner connectivity).
    capacity: pair slots per image.
    axes_reversed: `values` are `reverse_axes` of the images (callers that
      run several filtrations of one image transpose it once).

  Returns:
    `H0Pairs` with leading axis B, pixels as C-order indices into the images;
    pairs past `capacity` are counted, not stored.
  """
  # Reversed axes: C order is then the tie order (see the module docstring).
  if not axes_reversed:
    values = reverse_axes(values)
  shape = values.shape[1:][::-1]  # the images' own
  offsets = tuple(offset[::-1] for offset in _grid.edge_offsets(len(shape), construction))
  grid = _Grid(values.shape[0], values.shape[1:], offsets)
  root = _attachment_roots(values, grid)
  keep = _candidate_edges(values, root, grid)
  # Each basin's lowest pixel, at its root. The root has the basin's minimum
  # value, so only pixels on that floor can be lowest.
  ids = jnp.arange(grid.batch * grid.size, dtype=jnp.int32)
  flat_values = values.reshape(-1)
  on_floor = flat_values == flat_values[root]
  lowest_at = jnp.full(ids.shape, _INT_MAX, jnp.int32).at[
      jnp.where(on_floor, root, ids.size)].min(ids, mode="drop")
  packed = (_pack((root == ids).reshape(grid.batch, -1)), _pack(keep.reshape(grid.batch, -1)))
  tiers = _capacity_tiers(grid)
  branches = [functools.partial(_reduced_h0, grid=grid, basin_cap=basin_cap,
                                edge_cap=edge_cap, capacity=capacity)
              for basin_cap, edge_cap in tiers]
  if len(branches) == 1:
    births, deaths, count, essential = branches[0](values, root, lowest_at, *packed)
  else:
    num_basins, num_edges = (jnp.max(p.total) for p in packed)
    too_small = [(num_basins > b) | (num_edges > e) for b, e in tiers[:-1]]
    # Tiers grow, so the first that fits is the number of those too small.
    tier = sum(t.astype(jnp.int32) for t in too_small)
    births, deaths, count, essential = lax.switch(tier, branches, values, root, lowest_at,
                                                  *packed)

  def original(pixel):  # reversed-axes C order is the original's axis-0-fastest order
    return jnp.where(pixel >= 0, _grid.fortran_to_flat(pixel, shape), -1)

  return H0Pairs(original(births), original(deaths), count, original(essential))
