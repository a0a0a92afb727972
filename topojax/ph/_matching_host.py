"""Betti matching's elder-rule passes as a sequential union-find for the CPU.

On XLA:CPU the parallel elder-rule rounds of `_matching` (scatters and
pointer jumps over every pixel) cost several times what one compiled
sequential union-find does, so on the CPU the passes run here, in numba,
through `jax.pure_callback`, with exactly `_matching`'s conventions (same
graphs, edge order, births and slots): both engines give equal matchings, and
the tests compare them.

Per image, one stable radix sort of the pixels serves every dimension: the
value of every cell is a dense rank. Per image and dimension, a counting sort
puts the edges in order (leaving out those that close a unit square last,
which merge nothing), and one union-find per edge order tracks the oldest
node of each component under every set of births the matching needs (the
order's own and the other images'). The pairs and the matching follow from
which node dies at which edge. Images and dimensions are spread over the
CPU's cores (the kernels release the GIL).
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os

import numba
import numpy as np

_NONE = -1


_jit = functools.partial(numba.njit, nogil=True, cache=True)


@_jit
def dense_ranks(image):
  """Per pixel the rank of its value among the image's distinct values
  (-0.0 == 0.0), the number of distinct values, and the pixels by (value,
  index): a stable LSD radix sort with 11-bit digits, skipping digits that
  every pixel shares."""
  n = image.size
  bits = (image + np.float32(0.0)).view(np.int32)
  key = np.empty(n, np.uint32)
  for p in range(n):
    b = bits[p]
    if b < 0:
      b ^= np.int32(0x7FFFFFFF)
    key[p] = np.uint32(b) ^ np.uint32(0x80000000)
  order = np.arange(n).astype(np.int32)
  spare = np.empty(n, np.int32)
  bucket = np.zeros(2048, np.int64)
  for shift in (0, 11, 22):
    bucket[:] = 0
    for p in range(n):
      bucket[(key[p] >> shift) & 2047] += 1
    if bucket[(key[0] >> shift) & 2047] == n:
      continue
    total = 0
    for b in range(2048):
      count = bucket[b]
      bucket[b] = total
      total += count
    for i in range(n):
      p = order[i]
      b = (key[p] >> shift) & 2047
      spare[bucket[b]] = p
      bucket[b] += 1
    order, spare = spare, order
  dense = np.empty(n, np.int32)
  distinct = 0
  for i in range(n):
    if i > 0 and key[order[i]] != key[order[i - 1]]:
      distinct += 1
    dense[order[i]] = distinct
  return dense, distinct + 1, order


@_jit
def cell_value(cells, i, pixel_ranks, num_values, dual):
  """The dense rank of cell `i`'s value: the max of its pixels' (reversed
  for `dual`, whose order is decreasing)."""
  best = pixel_ranks[cells[i, 0]]
  for j in range(1, cells.shape[1]):
    best = max(best, pixel_ranks[cells[i, j]])
  return num_values - best if dual else best


@_jit
def cell_voxel(cells, i, pixel_ranks):
  """The first pixel of cell `i` carrying its value (-1: the outer node)."""
  at = cells[i, 0]
  if at < 0:
    return -1
  for j in range(1, cells.shape[1]):
    if pixel_ranks[cells[i, j]] > pixel_ranks[at]:
      at = cells[i, j]
  return at


@_jit
def sorted_edges(cells, uv, squares, pixel_ranks, num_values, dual):
  """The edges that can merge, stably sorted by their value ranks: their
  ids, ends and ranks in that order (read in sequence by the passes).

  An edge that closes a unit square of the grid last (by (key, index))
  merges nothing: its ends are joined by then. A counting sort."""
  num_edges = cells.shape[0]
  key = np.empty(num_edges, np.int32)
  bucket = np.zeros(num_values + 2, np.int32)
  for e in range(num_edges):
    if cells[e, 0] < 0:
      key[e] = -1
    else:
      key[e] = cell_value(cells, e, pixel_ranks, num_values, dual)
      bucket[key[e] + 1] += 1
  closes = np.zeros(num_edges, np.bool_)
  for q in range(squares.shape[0]):
    last = squares[q, 0]
    for j in range(1, 4):
      e = squares[q, j]
      if key[e] > key[last] or (key[e] == key[last] and e > last):
        last = e
    if not closes[last]:
      closes[last] = True
      bucket[key[last] + 1] -= 1
  for k in range(num_values + 1):
    bucket[k + 1] += bucket[k]
  order = np.empty(bucket[num_values + 1], np.int32)
  ends = np.empty((order.size, 2), np.int32)
  sorted_key = np.empty(order.size, np.int32)
  for e in range(num_edges):
    k = key[e]
    if k >= 0 and not closes[e]:
      i = bucket[k]
      order[i], sorted_key[i] = e, k
      ends[i, 0], ends[i, 1] = uv[e, 0], uv[e, 1]
      bucket[k] += 1
  return order, ends, sorted_key


@_jit
def node_ages(cells, pixel_ranks, num_values, pixel_order, tie_order, dual, key, by_age,
              rank):
  """Fills the nodes' value ranks `key`, the nodes by (value, tie)
  `by_age` and each node's place in it `rank` (0: oldest)."""
  if not dual:  # nodes are pixels, tie = index: the pixel order
    key[:] = pixel_ranks
    by_age[:] = pixel_order
  else:
    bucket = np.zeros(num_values + 2, np.int32)
    for node in range(cells.shape[0]):
      key[node] = 0 if cells[node, 0] < 0 else cell_value(cells, node, pixel_ranks,
                                                          num_values, True)
      bucket[key[node] + 1] += 1
    for k in range(num_values + 1):
      bucket[k + 1] += bucket[k]
    for node in tie_order:
      by_age[bucket[key[node]]] = node
      bucket[key[node]] += 1
  for r in range(by_age.size):
    rank[by_age[r]] = r


@_jit
def find(parent, node):
  """The root of `node` (roots hold negative sizes), halving the path."""
  while parent[node] >= 0:
    up = parent[node]
    if parent[up] < 0:
      return up
    parent[node] = parent[up]
    node = parent[up]
  return node


@_jit
def elder_passes(ends, ranks, by_age, young):
  """The elder rule along the sorted edges `ends` under each births
  `ranks[j]` (0: oldest): `young[j, i]` the node dying at the i-th edge, -1
  where none does.

  The union-find is shared (which edges merge does not depend on births,
  only which node dies); roots hold minus their size and, per births, the
  oldest rank of their component."""
  num_births, num_nodes = ranks.shape
  parent = np.full(num_nodes, -1, np.int32)
  oldest = np.ascontiguousarray(ranks.T)
  for i in range(ends.shape[0]):
    a, b = find(parent, ends[i, 0]), find(parent, ends[i, 1])
    if a == b:
      for j in range(num_births):
        young[j, i] = _NONE
      continue
    if parent[a] > parent[b]:  # b is the larger
      a, b = b, a
    parent[a] += parent[b]
    parent[b] = a
    for j in range(num_births):
      older, younger = oldest[a, j], oldest[b, j]
      if younger < older:
        older, younger = younger, older
      oldest[a, j] = older
      young[j, i] = by_age[j, younger]


@_jit
def own_pairs(order, sorted_key, young, node_key, edge_cells, node_cells, pixel_ranks, dual,
              birth, death):
  """The pairs of positive persistence of one order's own pass `young`:
  their positions in the order, sorted by edge id (the slot order), with
  birth/death pixels filled (up to capacity)."""
  at = []
  for i in range(young.size):
    node = young[i]
    if node >= 0 and node_key[node] != sorted_key[i]:
      at.append(i)
  at = np.array(at, np.int32)
  at = at[np.argsort(order[at], kind="mergesort")]
  for slot in range(min(at.size, birth.size)):
    e, node = order[at[slot]], young[at[slot]]
    edge_voxel = cell_voxel(edge_cells, e, pixel_ranks)
    node_voxel = cell_voxel(node_cells, node, pixel_ranks)
    birth[slot] = edge_voxel if dual else node_voxel
    death[slot] = node_voxel if dual else edge_voxel
  return at


@_jit
def pair_and_match(orders, keys, young, node_key, edge_cells, node_cells, pixel_ranks, dual,
                   in_comparison_order, births, deaths, counts, matches):
  """The pairs of x, y (and c) from their own passes and the matching from
  the cross passes (see `_matching`); fills `births`/`deaths`/`matches`
  `[2, capacity]` and `counts` `[2]` for x and y. Per image i (x, y, c):
  `orders[i]`, `keys[i]` its sorted edges, `young[i]` its order's passes
  (row 0 its own births, then `passes_of`'s others)."""
  scratch = np.empty(births.shape[1], np.int32)
  genuine = []
  for i in range(3):
    at = own_pairs(orders[i], keys[i], young[i][0], node_key[i], edge_cells, node_cells,
                   pixel_ranks[i], dual, births[i] if i < 2 else scratch,
                   deaths[i] if i < 2 else scratch)
    genuine.append(at)
    if i < 2:
      counts[i] = at.size
  # Per comparison pair, the x and y slot it is matched through.
  through = np.full((2, genuine[2].size), _NONE, np.int32)
  table = np.empty(node_key.shape[1], np.int32)
  for i in range(2):
    table[:] = _NONE
    if in_comparison_order:
      # In c's order, the component dying at a c pair by i's births is the
      # birth of i's matched pair.
      for slot, at in enumerate(genuine[i]):
        table[young[i][0, at]] = slot
      for s, at in enumerate(genuine[2]):
        through[i, s] = table[young[2][1 + i, at]]
    else:
      # In i's order, its pairs name the c component dying with them.
      for slot, at in enumerate(genuine[i]):
        table[young[i][1, at]] = slot
      for s, at in enumerate(genuine[2]):
        through[i, s] = table[young[2][0, at]]
  capacity = births.shape[1]
  for s in range(genuine[2].size):
    a, b = through[0, s], through[1, s]
    if a >= 0 and b >= 0 and a < capacity and b < capacity:
      matches[0, a], matches[1, b] = b, a


def passes_of(in_comparison_order: bool) -> tuple[tuple[int, ...], ...]:
  """Per image (x, y, c), the births of the passes along its order: its own,
  then x's and y's for c (comparison order) or c's for x and y."""
  return ((0,), (1,), (2, 0, 1)) if in_comparison_order else ((0, 2), (1, 2), (2,))


@functools.cache
def _pool(pid: int):  # per process: a forked child has none of its parent's threads
  del pid
  return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def match_dimensions(images, *, ndim: int, static, capacities):
  """Host side of `_matching`'s CPU engine.

  Four rounds of tasks over the cores, each on every image and dimension: the
  pixel sort of each image (shared by the dimensions), each image's graph,
  the passes along each order, then pairs and matching.

  Args:
    images: `[..., 3, *spatial]` float32 with `ndim` spatial axes: the
      sublevel values of x, y and the comparison image c (leading batch axes).
    static: per dimension `(graph, dual, in_comparison_order)`, the graph
      `_matching._host_graph(shape, dual)`.
    capacities: per dimension the pair slots.

  Returns:
    Per dimension `(births, deaths, counts, matches)`: `[..., 2, capacity]`
    int32 pixels (x and y), `[..., 2]` counts, `[..., 2, capacity]` matches.
  """
  images = np.asarray(images, np.float32)
  lead = images.shape[:-ndim - 1]
  flat = np.ascontiguousarray(images.reshape((-1, 3, math.prod(images.shape[-ndim:]))))
  batch, num_pixels = flat.shape[0], flat.shape[2]
  pixel_ranks = np.empty((batch, 3, num_pixels), np.int32)
  pixel_order = np.empty((batch, 3, num_pixels), np.int32)
  num_values = np.empty((batch, 3), np.int32)

  def rank(b, i):
    pixel_ranks[b, i], num_values[b, i], pixel_order[b, i] = dense_ranks(flat[b, i])

  _run([functools.partial(rank, b, i) for b in range(batch) for i in range(3)])
  jobs = [(d, b) for d in range(len(static)) for b in range(batch)]
  nodes = {}  # (d, b): node_key, by_age, rank, each [3, W]
  edges = {}  # (d, b, i): order, ends, sorted keys
  for d, b in jobs:
    nodes[d, b] = np.empty((3, 3, static[d][0][2].shape[0]), np.int32)

  def graph(d, b, i):
    (uv, edge_cells, node_cells, squares, tie_order), dual, _ = static[d]
    node_ages(node_cells, pixel_ranks[b, i], num_values[b, i], pixel_order[b, i], tie_order,
              dual, *nodes[d, b][:, i])
    edges[d, b, i] = sorted_edges(edge_cells, uv, squares, pixel_ranks[b, i], num_values[b, i],
                                  dual)

  _run([functools.partial(graph, d, b, i) for d, b in jobs for i in range(3)])
  young = {}

  def elder(d, b, i):
    births_of = list(passes_of(static[d][2])[i])
    _, by_age, ages = nodes[d, b]
    young[d, b, i] = np.empty((len(births_of), edges[d, b, i][0].size), np.int32)
    elder_passes(edges[d, b, i][1], ages[births_of], by_age[births_of], young[d, b, i])

  _run([functools.partial(elder, d, b, i) for d, b in jobs for i in range(3)])
  # Per dimension: births, deaths [B, 2, capacity], counts [B, 2], matches.
  outputs = [(np.full((batch, 2, capacity), _NONE, np.int32),
              np.full((batch, 2, capacity), _NONE, np.int32), np.zeros((batch, 2), np.int32),
              np.full((batch, 2, capacity), _NONE, np.int32)) for capacity in capacities]

  def match(d, b):
    (_, edge_cells, node_cells, _, _), dual, in_comparison_order = static[d]
    order, keys, passes = zip(*[(edges[d, b, i][0], edges[d, b, i][2], young[d, b, i])
                                for i in range(3)])
    pair_and_match(order, keys, passes, nodes[d, b][0], edge_cells, node_cells,
                   pixel_ranks[b], dual, in_comparison_order, *(a[b] for a in outputs[d]))

  _run([functools.partial(match, d, b) for d, b in jobs])
  return [tuple(a.reshape(lead + a.shape[1:]) for a in output) for output in outputs]


def _run(tasks):
  """Run the (GIL-releasing) `tasks` on the CPU's cores."""
  if len(tasks) == 1:
    tasks[0]()
  else:
    for future in [_pool(os.getpid()).submit(task) for task in tasks]:
      future.result()
