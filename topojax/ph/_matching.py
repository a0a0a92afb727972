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
into (dimension d-1 with the union). The intersection swaps the two.

Two engines run the passes, with equal results. On GPUs and TPUs ("device"),
each pass first decides what its order and births decide without rounds
(`_Forest`, `_elder`) and runs `_h0`'s parallel elder rule on what is left.
On the CPU, where those scatter-heavy rounds cost several times a sequential
union-find, `_matching_host` runs compiled union-finds (numba, through
`jax.pure_callback`) over the same graphs (`_host_graph`). 3D dimension 1
comes from a matrix reduction on the host (`_matching_dim1`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from topojax._src import checks
from topojax._src import numerics
from topojax.ph import _grid
from topojax.ph import _h0
from topojax.ph import _matching_dim1
from topojax.ph._cubical import _capacities, _essential_block, _finite_block
from topojax.ph._diagram import Diagram, concatenate

_FILTRATIONS = ("sublevel", "superlevel")
_INT_MAX = jnp.iinfo(jnp.int32).max
_COMPARISONS = ("union", "intersection")
_ENGINES = ("auto", "device", "cpu")
# Capacities of the reduced graph tried before the worst case, as fractions of
# an image's (nodes, edges): in every pass a smoothed map against a label keeps
# under a fifth of its nodes and a tenth of its edges, its own passes far fewer.
_REDUCED_TIERS = ((1 / 16, 1 / 16), (1 / 4, 1 / 8))
# Cross-image births decide fewer nodes per round than an image's own (a fifth
# against two thirds), so the rounds move to smaller arrays more often.
_SHRINK = 4


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


@functools.lru_cache(maxsize=None)
def _primal_ends(shape: tuple[int, ...]):
  """`(u, v, edge_at, shape)` of the pixel graph: edge `p * d + k` joins p and
  `p + e_k` (a loop at p past the border); `edge_at[p, k]` that edge, -1 if none."""
  ndim, n = len(shape), math.prod(shape)
  coords = np.indices(shape).reshape(ndim, n)
  strides = [math.prod(shape[a + 1:]) for a in range(ndim)]
  pixel = np.arange(n)
  inside = np.stack([coords[k] < shape[k] - 1 for k in range(ndim)], axis=1)
  far = np.where(inside, pixel[:, None] + np.array(strides)[None, :], pixel[:, None])
  edge_at = np.where(inside, pixel[:, None] * ndim + np.arange(ndim)[None, :], -1)
  return (np.repeat(pixel, ndim).astype(np.int32), far.reshape(-1).astype(np.int32),
          edge_at, shape)


def _dual_cell_axes(ndim: int, k: int) -> tuple[int, tuple[int, ...]]:
  """The k-th (d-1)-cell type at a pixel, as Betti-Matching-3D numbers them:
  `(missing, spans)`, the axis it is thin along and the axes it spans."""
  missing = 1 - k if ndim == 2 else k
  return missing, tuple(a for a in range(ndim) if a != missing)


@functools.lru_cache(maxsize=None)
def _dual_ends(shape: tuple[int, ...]):
  """`(u, v, edge_at, top_shape)` of the top-cell graph (`_dual_graph`'s order):
  node `num_top` is the outer one; `edge_at[t, m]` joins top cells t and
  `t + e_m`, -1 if none."""
  ndim, n = len(shape), math.prod(shape)
  top_shape = tuple(s - 1 for s in shape)
  num_top = math.prod(top_shape)
  coords = np.indices(shape).reshape(ndim, n)
  top_strides = [math.prod(top_shape[a + 1:]) for a in range(ndim)]
  sides = np.full((2, n, ndim), num_top, np.int64)
  edge_at = np.full((num_top, ndim), -1, np.int64)
  for k in range(ndim):
    missing, spans = _dual_cell_axes(ndim, k)
    inside = np.logical_and.reduce([coords[a] < shape[a] - 1 for a in spans])
    index = n * ndim - 1 - (np.arange(n) * ndim + k)  # the list is reversed
    for side, step in enumerate((-1, 0)):
      at = coords.copy()
      at[missing] += step
      ok = inside & (at[missing] >= 0) & (at[missing] < top_shape[missing])
      top = sum(at[a] * top_strides[a] for a in range(ndim))
      sides[side, :, k] = np.where(ok, top, num_top)
    both = sides[0, :, k] < num_top
    both &= sides[1, :, k] < num_top
    edge_at[sides[0, both, k], missing] = index[both]
  u, v = (sides[i].reshape(-1)[::-1].astype(np.int32) for i in range(2))
  return u, v, edge_at, top_shape


@functools.lru_cache(maxsize=None)
def _unit_squares(dual: bool, shape: tuple[int, ...]) -> np.ndarray:
  """`[Q, 4]` the edges of every unit square (4-cycle) of the node grid."""
  _, _, edge_at, grid_shape = (_dual_ends if dual else _primal_ends)(shape)
  ndim = len(grid_shape)
  coords = np.indices(grid_shape).reshape(ndim, -1)
  strides = [math.prod(grid_shape[a + 1:]) for a in range(ndim)]
  squares = []
  for a, b in itertools.combinations(range(ndim), 2):
    node = np.nonzero((coords[a] < grid_shape[a] - 1) & (coords[b] < grid_shape[b] - 1))[0]
    squares.append(np.stack([edge_at[node, a], edge_at[node, b],
                             edge_at[node + strides[a], b], edge_at[node + strides[b], a]],
                            axis=1))
  squares = np.concatenate(squares) if squares else np.zeros((0, 4), np.int64)
  return squares[np.all(squares >= 0, axis=1)].astype(np.int32)


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
  coords = jnp.indices(shape)
  values = []
  for k in range(ndim):
    step = tuple(int(a == k) for a in range(ndim))
    best = jnp.maximum(f, _shifted(f, step, -jnp.inf))
    values.append(jnp.where(coords[k] < shape[k] - 1, best, jnp.inf))
  value = jnp.stack(values, axis=-1).reshape(batch, n * ndim)
  u, v, _, _ = _primal_ends(shape)
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

  values, voxels = [], []
  for k in range(ndim):
    _, spans = _dual_cell_axes(ndim, k)
    inside = functools.reduce(jnp.logical_and, [coords[a] < shape[a] - 1 for a in spans])
    best, voxel = cell(spans)
    values.append(jnp.where(inside, -best, jnp.inf))
    voxels.append(voxel)
  flip = lambda x: jnp.flip(jnp.stack(x, axis=-1).reshape(x[0].shape[0], n * ndim), axis=1)
  u, v, _, _ = _dual_ends(shape)
  tie = jnp.arange(num_top, -1, -1, dtype=jnp.int32)
  return _Graph(u, v, flip(values), flip(voxels), node_value, tie, node_voxel)


class _Forest(NamedTuple):
  """What one edge order decides before any births are known, per image.

  A node's **first edge** (its lightest, as `_h0`'s attachment) joins it, a
  singleton, to the component of the other end, which already holds that
  end's whole chain of first edges (each is lighter than the last). The chains
  form a forest whose roots are the nodes that two first edges share (the lower
  id) or that have none. Edges that close a unit square of the grid last
  (by (value, index)) are in no minimum spanning forest and decide nothing.
  """
  first: jax.Array  # [B * W] each node's first edge (global id; any value at roots)
  parent: jax.Array  # [B * W] the first edge's other end; roots point at themselves
  root: jax.Array  # [B * W] bool
  candidate: jax.Array  # [B * E] bool real edges that may be in a spanning forest


def _global_ends(order: _Graph, width: int):
  """`[B * E]` each edge's ends as global node ids (`b * width + node`)."""
  base = jnp.arange(order.value.shape[0], dtype=jnp.int32)[:, None] * width
  return (base + order.u[None]).reshape(-1), (base + order.v[None]).reshape(-1)


def _forest(order: _Graph, squares: np.ndarray) -> _Forest:
  batch, num_edges = order.value.shape
  width = order.node_value.shape[1]
  u, v = _global_ends(order, width)
  real = (order.value < jnp.inf).reshape(-1) & (u != v)
  key = jnp.where(real, numerics.sortable_int32(order.value).reshape(-1), _INT_MAX)
  nodes = jnp.arange(batch * width, dtype=jnp.int32)
  edges = jnp.arange(batch * num_edges, dtype=jnp.int32)
  lightest = jnp.full(nodes.shape, _INT_MAX).at[u].min(key).at[v].min(key)
  first = (jnp.full(nodes.shape, _INT_MAX)
           .at[u].min(jnp.where(real & (key == lightest[u]), edges, _INT_MAX))
           .at[v].min(jnp.where(real & (key == lightest[v]), edges, _INT_MAX)))
  has = first < _INT_MAX
  first = jnp.where(has, first, 0)
  parent = jnp.where(has, u[first] + v[first] - nodes, nodes)
  root = ~has | ((parent[parent] == nodes) & (nodes < parent))
  candidate = real
  if squares.shape[0]:
    square_key = key.reshape(batch, num_edges)[:, squares]  # [B, Q, 4]
    square_edge = jnp.broadcast_to(jnp.asarray(squares), square_key.shape)
    last, last_key = square_edge[..., 0], square_key[..., 0]
    for j in range(1, 4):
      later = (square_key[..., j] > last_key) | (
          (square_key[..., j] == last_key) & (square_edge[..., j] > last))
      last = jnp.where(later, square_edge[..., j], last)
      last_key = jnp.where(later, square_key[..., j], last_key)
    lanes = jnp.arange(batch, dtype=jnp.int32)[:, None]
    candidate &= ~jnp.zeros((batch, num_edges), bool).at[lanes, last].set(True).reshape(-1)
  return _Forest(first, jnp.where(root, nodes, parent), root, candidate)


def _dies_at_first_edge(forest: _Forest, birth) -> jax.Array:
  """`[B * W]` whether each node dies at its first edge: whether a node on its
  parent's chain (all there by then) is older."""
  def jump(state):  # the oldest birth on the chain from the parent up to `pointer`
    pointer, value, tie = state
    above_value, above_tie = value[pointer], tie[pointer]
    older = _grid.lex_less(above_value, above_tie, value, tie)
    return pointer[pointer], jnp.where(older, above_value, value), jnp.where(older, above_tie, tie)

  def two_jumps(state):  # a test costs as much as a jump
    state = jump(jump(state[0]))
    return state, jnp.any(state[0][state[0]] != state[0])

  parent = forest.parent
  state = (parent, birth[0][parent], birth[1][parent])
  (_, value, tie), _ = lax.while_loop(lambda s: s[1], two_jumps, (state, jnp.array(True)))
  return ~forest.root & _grid.lex_less(value, tie, birth[0], birth[1])


def _elder(order: _Graph, forest: _Forest, node_value: jax.Array) -> jax.Array:
  """`[B, E]` per edge of `order` the local node that dies there (-1: none),
  with births `(node_value, order.node_tie)`.

  Nodes that die at their first edge are decided at once and contracted into
  their parent; the nodes left and the candidate edges between them (a few
  percent of the graph) go to `_h0`'s parallel elder rule, on arrays of the
  smallest capacity tier that holds them.
  """
  batch, num_edges = order.value.shape
  width = node_value.shape[1]
  birth = (node_value.reshape(-1), jnp.tile(order.node_tie, batch))
  nodes = jnp.arange(batch * width, dtype=jnp.int32)
  dies = _dies_at_first_edge(forest, birth)
  into = _h0._pointer_jump(jnp.where(dies, forest.parent, nodes))
  young = jnp.full((batch * num_edges,), -1, jnp.int32).at[
      jnp.where(dies, forest.first, batch * num_edges)].set(nodes, mode="drop")
  u, v = _global_ends(order, width)
  live = forest.candidate & (into[u] != into[v])
  survivors = _h0._pack(~dies.reshape(batch, width))
  candidates = _h0._pack(live.reshape(batch, num_edges))
  tiers = [(width, num_edges)]
  if batch * width >= _h0._MIN_PIXELS_FOR_TIERS:
    tiers = [(math.ceil(width * a), math.ceil(num_edges * b)) for a, b in _REDUCED_TIERS] + tiers
  branches = [functools.partial(_reduced_elder, node_cap=node_cap, edge_cap=edge_cap)
              for node_cap, edge_cap in tiers]
  args = (into[u], into[v], order.value.reshape(-1), birth, young, survivors, candidates)
  if len(branches) == 1:
    young = branches[0](*args)
  else:
    most_nodes, most_edges = jnp.max(survivors.total), jnp.max(candidates.total)
    tier = sum(((most_nodes > a) | (most_edges > b)).astype(jnp.int32) for a, b in tiers[:-1])
    young = lax.switch(tier, branches, *args)
  young = young.reshape(batch, num_edges)
  return jnp.where(young >= 0, young - jnp.arange(batch, dtype=jnp.int32)[:, None] * width, -1)


def _reduced_elder(u, v, value, birth, young, survivors: _h0._Packed,
                   candidates: _h0._Packed, *, node_cap: int, edge_cap: int):
  """`_elder`'s rounds on `[B, node_cap]` surviving nodes and `[B, edge_cap]`
  candidate edges (`u`, `v`: the edges' contracted ends); fills in `young`."""
  batch = survivors.words.shape[0]
  width, num_edges = birth[0].shape[0] // batch, young.shape[0] // batch
  lanes = jnp.arange(batch, dtype=jnp.int32)[:, None]
  node = _h0._compact(survivors, node_cap)
  edge = _h0._compact(candidates, edge_cap)
  is_edge = edge >= 0
  edge = lanes * num_edges + jnp.maximum(edge, 0)
  old_node = lanes * width + jnp.maximum(node, 0)

  def renumber(x):  # padding edges become loops at each image's first slot
    return jnp.where(is_edge, lanes * node_cap + _h0._rank_in_row(survivors, x - lanes * width),
                     lanes * node_cap).reshape(-1)

  compact_birth = (jnp.where(node >= 0, birth[0][old_node], jnp.inf).reshape(-1),
                   birth[1][old_node].reshape(-1))
  compact_u, compact_v = renumber(u[edge]), renumber(v[edge])
  compact_value = jnp.where(is_edge, value[edge], jnp.inf).reshape(-1)
  dying, compact_u, compact_v = _h0._elder_rounds(
      compact_u, compact_v, compact_value, compact_birth, batch=batch, shrink=_SHRINK)
  dying = _h0._elder_sequential(compact_u, compact_v, compact_value, dying, compact_birth,
                                batch=batch)
  decided = dying >= 0
  return young.at[jnp.where(decided, edge.reshape(-1), young.shape[0])].set(
      old_node.reshape(-1)[jnp.maximum(dying, 0)], mode="drop")


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

  Five elder-rule passes on three edge orders: each image's own filtration,
  then either the comparison's order with the inputs' births or the inputs'
  orders with the comparison's births.
  """
  build = _dual_graph if dual else _primal_graph
  batch = x.shape[0]
  # Images 0, 1, 2: x, y, c; each pass is (its edge order, its births).
  if in_comparison_order:
    orders, births = (0, 1, 2, 2, 2), (0, 1, 2, 0, 1)
  else:
    orders, births = (0, 1, 2, 0, 1), (0, 1, 2, 2, 2)
  graph = build(jnp.concatenate([x, y, c]))
  squares = _unit_squares(dual, x.shape[1:])
  per_image = lambda a: a.reshape((3, batch) + a.shape[1:])
  one_order = lambda value: graph._replace(value=value, voxel=None,
                                           node_value=graph.node_value[:batch], node_voxel=None)
  # The three orders' forests one after the other, then the five passes: in
  # one batch they would wait for each other's slowest loops.
  forests = lax.map(lambda value: _forest(one_order(value), squares), per_image(graph.value))
  node_values = per_image(graph.node_value)
  pick = lambda a, which: a[jnp.array(which)]
  young = lax.map(
      lambda run: _elder(one_order(run[0]), _Forest(*run[1]), run[2]),
      (pick(per_image(graph.value), orders), jax.tree.map(lambda a: pick(a, orders), forests),
       pick(node_values, births)))
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


def _match_on_host(x, y, comparison: str, capacity: int):
  """3D dimension 1 by matrix reduction on the host (`_matching_dim1`), one
  volume pair at a time."""
  host = functools.partial(_matching_dim1.padded_matching_dim1, comparison=comparison,
                           capacity=capacity)
  slots = jax.ShapeDtypeStruct((capacity,), jnp.int32)
  count = jax.ShapeDtypeStruct((), jnp.int32)
  result = (slots, slots, count, slots, slots, count, slots, slots)
  return jax.vmap(lambda a, b: jax.pure_callback(host, result, a, b, vmap_method="sequential"))(
      x, y)


def _match_on_device(x, y, c, dual: bool, in_comparison_order: bool, capacity: int):
  """`_match_dimension` as `(x_birth, x_death, x_count, y_birth, y_death,
  y_count, x_match, y_match)`."""
  px, py, x_match, y_match = _match_dimension(x, y, c, dual, in_comparison_order, capacity)
  return px.birth, px.death, px.count, py.birth, py.death, py.count, x_match, y_match


def _cells(shape, offsets_of, corners, inside) -> np.ndarray:
  """`[len(corners), 2^k]` the pixels of cells anchored at `corners` with
  offsets along the axes `offsets_of` in C order; rows of -1 where not `inside`."""
  strides = np.array([math.prod(shape[a + 1:]) for a in range(len(shape))])
  steps = [sum(int(o[i]) * int(strides[a]) for i, a in enumerate(offsets_of))
           for o in itertools.product((0, 1), repeat=len(offsets_of))]
  cells = corners[:, None] + np.array(steps)[None, :]
  return np.where(inside[:, None], cells, -1).astype(np.int32)


@functools.lru_cache(maxsize=None)
def _host_graph(shape: tuple[int, ...], dual: bool):
  """`_primal_graph` / `_dual_graph` as static tables for the CPU engine:
  `(uv [E, 2], edge_cells [E, m], node_cells [W, m'], squares, tie_order)`, edges in
  the list's order, nodes by local id, cells as pixel ids (-1 rows: no cell;
  the dual's outer node is the last node)."""
  u, v, _, _ = (_dual_ends if dual else _primal_ends)(shape)
  ndim, n = len(shape), math.prod(shape)
  coords = np.indices(shape).reshape(ndim, n)
  uv = np.ascontiguousarray(np.stack([u, v], axis=1), dtype=np.int32)
  if not dual:
    edge_cells = uv  # pixels are nodes; the loops past the border never merge
    node_cells = np.arange(n, dtype=np.int32)[:, None]
    tie_order = np.arange(n, dtype=np.int32)
  else:
    edge_cells = np.empty((n * ndim, 2 ** (ndim - 1)), np.int32)
    for k in range(ndim):
      _, spans = _dual_cell_axes(ndim, k)
      inside = np.logical_and.reduce([coords[a] < shape[a] - 1 for a in spans])
      edge_cells[np.arange(n) * ndim + k] = _cells(shape, spans, np.arange(n), inside)
    edge_cells = edge_cells[::-1]  # the list is reversed
    edge_cells[u == v] = -1
    top_shape = tuple(s - 1 for s in shape)
    corners = np.ravel_multi_index(np.indices(top_shape).reshape(ndim, -1), shape)
    node_cells = np.concatenate([
        _cells(shape, tuple(range(ndim)), corners, np.ones(corners.size, bool)),
        np.full((1, 2 ** ndim), -1, np.int32)])
    tie_order = np.arange(len(node_cells) - 1, -1, -1, dtype=np.int32)  # larger index older
  return uv, np.ascontiguousarray(edge_cells), node_cells, _unit_squares(dual, shape), tie_order


def _match_compiled(x, y, c, tasks):
  """Every `(dim, dual, in_comparison_order, capacity)` of `tasks` by the
  CPU engine (`_matching_host`), in one host call; results as
  `_match_on_device`'s."""
  batch, shape = x.shape[0], x.shape[1:]
  static, result = [], []
  for _, dual, in_comparison_order, capacity in tasks:
    static.append((_host_graph(shape, dual), dual, in_comparison_order))
    slots = jax.ShapeDtypeStruct((batch, 2, capacity), jnp.int32)
    result.append((slots, slots, jax.ShapeDtypeStruct((batch, 2), jnp.int32), slots))

  def host(images):  # numba is imported (and the kernels loaded) on first use
    from topojax.ph import _matching_host  # pylint: disable=import-outside-toplevel
    return _matching_host.match_dimensions(images, ndim=len(shape), static=static,
                                           capacities=[task[3] for task in tasks])

  outputs = jax.pure_callback(host, result, jnp.stack([x, y, c], axis=1),
                              vmap_method="broadcast_all")
  return [(births[:, 0], deaths[:, 0], counts[:, 0], births[:, 1], deaths[:, 1], counts[:, 1],
           matches[:, 0], matches[:, 1]) for births, deaths, counts, matches in outputs]


def _block(f, birth, death, count, capacity: int, dim: int, nonfinite) -> Diagram:
  """`cubical_persistence`'s finite block, per image of the batch."""
  block = jax.vmap(lambda image, birth, death, count: _finite_block(
      image, birth, death, count, capacity, dim))(f.reshape(f.shape[0], -1), birth, death,
                                                  count)
  return dataclasses.replace(block, nonfinite=nonfinite)


def _essential(f, order_values, sign, nonfinite) -> Diagram:
  """The essential H0 class: born at the first global minimum of `order_values`."""
  index = jnp.argmin(order_values.reshape(f.shape[0], -1), axis=1)  # first on ties
  block = jax.vmap(lambda image, i: _essential_block(image, i, sign))(
      f.reshape(f.shape[0], -1), index)
  return dataclasses.replace(block, nonfinite=nonfinite)


@functools.partial(jax.jit, static_argnames=("filtration", "comparison", "dims",
                                             "include_essential", "engine"))
def _betti_matching(pred, target, *, filtration, comparison, dims, include_essential, engine):
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
  capacity = {dim: _capacities(pred.shape[1:], "V", (dim,), None)[dim] for dim in dims}
  tasks = [(dim, dim > 0, (dim == 0) == (comparison == "union"), capacity[dim])
           for dim in dims if not (dim == 1 and ndim == 3)]

  def on_device(x, y, c):
    return [_match_on_device(x, y, c, *task[1:]) for task in tasks]

  if not tasks:
    matched = []
  elif engine == "device":
    matched = on_device(x, y, c)
  elif engine == "cpu":
    matched = _match_compiled(x, y, c, tasks)
  else:
    matched = lax.platform_dependent(x, y, c, cpu=lambda *a: _match_compiled(*a, tasks),
                                     default=on_device)
  matched = dict(zip([task[0] for task in tasks], matched))
  for dim in dims:
    if dim not in matched:  # 3D dimension 1
      matched[dim] = _match_on_host(x, y, comparison, capacity[dim])
    x_birth, x_death, x_count, y_birth, y_death, y_count, x_match, y_match = matched[dim]
    pred_blocks.append(_block(pred, x_birth, x_death, x_count, capacity[dim], dim, nonfinite))
    target_blocks.append(_block(target, y_birth, y_death, y_count, capacity[dim], dim,
                                nonfinite))
    pred_matches.append(jnp.where(x_match >= 0, x_match + offset, -1))
    target_matches.append(jnp.where(y_match >= 0, y_match + offset, -1))
    offset += capacity[dim]
  return BettiMatching(
      pred=concatenate(pred_blocks), target=concatenate(target_blocks),
      pred_match=jnp.concatenate(pred_matches, axis=1),
      target_match=jnp.concatenate(target_matches, axis=1))


def betti_matching(pred: jax.typing.ArrayLike, target: jax.typing.ArrayLike, *,
                   filtration: str = "superlevel", comparison: str = "union",
                   dims=None, include_essential: bool = False,
                   engine: str = "auto") -> BettiMatching:
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
  `jit`: on GPU and TPU by parallel elder-rule rounds in XLA, on the CPU by a
  compiled sequential union-find (`engine`; both give equal results). 3D
  dimension 1 has no union-find formulation: `dims=(0, 1, 2)` runs
  a matrix reduction on the host (`jax.pure_callback`, one volume at a time,
  pure Python: seconds for ~30^3 volumes), whose tie order is documented in
  `topojax.ph._matching_dim1` (not checked against Betti-Matching-3D's).

  Args:
    pred: `[B, H, W]` or `[B, D, H, W]` real-valued maps (e.g. foreground
      probabilities); floating.
    target: same shape (e.g. binary labels as floats).
    filtration: "superlevel" (high values first: foreground probabilities)
      or "sublevel".
    comparison: "union" or "intersection".
    dims: homology dimensions; default `(0, d-1)` (on the device).
    include_essential: add the essential H0 class of each image (born at the
      global extremum, `death = ±inf`), always matched to the other's.
    engine: how dimensions 0 and d-1 run: "auto" (the CPU kernel on CPU, XLA
      elsewhere), "device" (XLA's parallel rounds on every platform) or "cpu"
      (the numba union-find through `jax.pure_callback`, on every platform).

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
  available = tuple(range(ndim))
  dims = (0, ndim - 1) if dims is None else tuple(sorted(set(int(d) for d in dims)))
  if not dims or any(d not in available for d in dims):
    raise ValueError(f"`dims` must be a non-empty subset of {available}, got {dims}.")
  if engine not in _ENGINES:
    raise ValueError(f"`engine` must be one of {_ENGINES}, got {engine!r}.")
  checks.raise_if_nonfinite(pred, "pred")
  checks.raise_if_nonfinite(target, "target")
  return _betti_matching(pred, target, filtration=filtration, comparison=comparison,
                         dims=dims, include_essential=bool(include_essential), engine=engine)
