"""Betti matching's elder-rule passes as a sequential union-find for the CPU.

On XLA:CPU the parallel elder-rule rounds of `_matching` (scatters and
pointer jumps over every pixel) cost several times what one compiled
sequential union-find does, so on the CPU the passes run here, in numba,
through `jax.pure_callback`, with exactly `_matching`'s conventions (same
graphs, edge order, births and slots): both engines give equal matchings, and
the tests compare them.

Per image, one stable radix sort of the pixels serves every dimension: the
value of every cell is a dense rank. Then one task per image pair and
dimension does the rest in one compiled call: the nodes' ages, the edges in
order (a counting sort that leaves out the edges closing a unit square last,
which merge nothing), one union-find per edge order tracking the oldest node
of each component under every set of births the matching needs (the order's
own and the other images'), and the pairs and the matching, which follow from
which node dies at which edge. Tasks run on the CPU's cores (the kernels
release the GIL) in per-thread scratch memory that is reused from call to
call: fresh pages cost more than the work.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
import threading
from typing import NamedTuple

import numba
import numpy as np

_NONE = -1


_jit = functools.partial(numba.njit, nogil=True, cache=True)


@_jit
def dense_ranks(image, dense, order, key, spare):
  """Fills `dense` with each pixel's rank among the image's distinct values
  (-0.0 == 0.0) and `order` with the pixels by (value, index); returns the
  number of distinct values. A stable LSD radix sort with 11-bit digits that
  skips the digits every pixel shares (`key`, `spare`: scratch)."""
  n = image.size
  bits = image.view(np.int32)
  for p in range(n):
    b = bits[p]
    if b == np.int32(-2147483648):  # -0.0
      b = np.int32(0)
    if b < 0:
      b ^= np.int32(0x7FFFFFFF)
    key[p] = np.uint32(b) ^ np.uint32(0x80000000)
  for p in range(n):
    order[p] = p
  source, target = order, spare
  swapped = False
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
      p = source[i]
      b = (key[p] >> shift) & 2047
      target[bucket[b]] = p
      bucket[b] += 1
    source, target = target, source
    swapped = not swapped
  if swapped:
    order[:] = spare
  distinct = 0
  for i in range(n):
    if i > 0 and key[order[i]] != key[order[i - 1]]:
      distinct += 1
    dense[order[i]] = distinct
  return distinct + 1


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
def sorted_edges(cells, uv, squares, pixel_ranks, num_values, dual, key, closes, bucket, order,
                 ends, sorted_key):
  """Fills `order`, `ends`, `sorted_key` with the ids, ends and value ranks
  of the edges that can merge, stably sorted by value (read in sequence by
  the passes); returns their number.

  An edge that closes a unit square of the grid last (by (key, index))
  merges nothing: its ends are joined by then. A counting sort (`key`,
  `closes`, `bucket`: scratch)."""
  num_edges = cells.shape[0]
  bucket[:num_values + 2] = 0
  for e in range(num_edges):
    if cells[e, 0] < 0:
      key[e] = -1
    else:
      key[e] = cell_value(cells, e, pixel_ranks, num_values, dual)
      bucket[key[e] + 1] += 1
  closes[:num_edges] = False
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
  for e in range(num_edges):
    k = key[e]
    if k >= 0 and not closes[e]:
      i = bucket[k]
      order[i], sorted_key[i] = e, k
      ends[i, 0], ends[i, 1] = uv[e, 0], uv[e, 1]
      bucket[k] += 1
  return bucket[num_values]  # now where each key's successor starts: the total


@_jit
def node_ages(cells, shape, pixel_ranks, num_values, pixel_order, tie_order, dual, bucket, key,
              by_age, rank):
  """Fills the nodes' value ranks `key`, the nodes by (value, tie)
  `by_age` and each node's place in it `rank` (0: oldest)."""
  if not dual:  # nodes are pixels, tie = index: the pixel order
    key[:] = pixel_ranks
    by_age[:] = pixel_order
    for r in range(by_age.size):
      rank[by_age[r]] = r
    return
  if shape.size == 2:  # top cells straight from the grid: 2x2 blocks in C order
    width, top = shape[1], 0
    for i in range(shape[0] - 1):
      for p in range(i * width, (i + 1) * width - 1):
        key[top] = num_values - max(max(pixel_ranks[p], pixel_ranks[p + 1]),
                                    max(pixel_ranks[p + width], pixel_ranks[p + width + 1]))
        top += 1
    key[top] = 0  # the outer node
  else:
    for node in range(cells.shape[0]):
      key[node] = 0 if cells[node, 0] < 0 else cell_value(cells, node, pixel_ranks,
                                                          num_values, True)
  bucket[:num_values + 2] = 0
  for node in range(cells.shape[0]):
    bucket[key[node] + 1] += 1
  for k in range(num_values + 1):
    bucket[k + 1] += bucket[k]
  for node in tie_order:
    r = bucket[key[node]]
    by_age[r], rank[node] = node, r
    bucket[key[node]] = r + 1


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
def elder_passes(ends, rank, births, parent, oldest, young):
  """The elder rule along the sorted edges `ends` under the births of the
  images `births` (node ages `rank[i]`, 0: oldest): `young[j, e]` the age of
  the node dying at the e-th edge under births j, -1 where none does (ages,
  not nodes: a node is looked up only where a pair needs it).

  The union-find is shared (which edges merge does not depend on births,
  only which node dies); roots hold minus their size and, per births, the
  oldest rank of their component (`parent`, `oldest`: scratch)."""
  num_births, num_nodes = births.size, rank.shape[1]
  parent[:num_nodes] = -1
  for node in range(num_nodes):
    for j in range(num_births):
      oldest[node, j] = rank[births[j], node]
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
      oldest[a, j] = min(older, younger)
      young[j, i] = max(older, younger)


@_jit
def own_pairs(order, sorted_key, young, by_age, node_key, edge_cells, node_cells, pixel_ranks,
              dual, birth, death, capacity, at):
  """The pairs of positive persistence of one order's own pass `young`
  (ages; `by_age` their nodes): fills `at` with their positions in the
  order, sorted by edge id (the slot order), and the first `capacity` of
  `birth`/`death` with their pixels; returns their number."""
  count = 0
  for i in range(young.size):
    if young[i] >= 0 and node_key[by_age[young[i]]] != sorted_key[i]:
      at[count] = i
      count += 1
  at[:count] = at[:count][np.argsort(order[at[:count]], kind="mergesort")]
  for slot in range(min(count, capacity)):
    e, node = order[at[slot]], by_age[young[at[slot]]]
    edge_voxel = cell_voxel(edge_cells, e, pixel_ranks)
    node_voxel = cell_voxel(node_cells, node, pixel_ranks)
    birth[slot] = edge_voxel if dual else node_voxel
    death[slot] = node_voxel if dual else edge_voxel
  return count


@_jit
def pair_and_match(orders, keys, num_edges, young, by_age, node_key, edge_cells, node_cells,
                   pixel_ranks, dual, in_comparison_order, at, table, births, deaths, counts,
                   matches):
  """The pairs of x, y (and c) from their own passes and the matching from
  the cross passes (see `_matching`); fills `births`/`deaths`/`matches`
  `[2, capacity]` and `counts` `[2]` for x and y. Per image i (x, y, c):
  `orders[i]`, `keys[i]` its `num_edges[i]` sorted edges, `young[i]` its
  order's passes (row 0 its own births, then `passes_of`'s others); `at`,
  `table`: scratch."""
  genuine = np.empty(3, np.int64)
  for i in range(3):
    m = num_edges[i]
    genuine[i] = own_pairs(orders[i, :m], keys[i, :m], young[i, 0, :m], by_age[i], node_key[i],
                           edge_cells, node_cells, pixel_ranks[i], dual, births[min(i, 1)],
                           deaths[min(i, 1)], births.shape[1] if i < 2 else 0, at[i])
  counts[:] = genuine[:2]
  capacity = births.shape[1]
  for i in range(2):
    # Per comparison pair, the slot of i it is matched through: in c's order
    # the component dying at a c pair by i's births is the birth of i's
    # matched pair; in i's order, i's pairs name the c component dying with
    # them. Both sides of a lookup are ages under the same births.
    own, lookup = (young[i, 0], young[2, 1 + i]) if in_comparison_order else (
        young[i, 1], young[2, 0])
    table[:node_key.shape[1]] = _NONE
    for slot in range(genuine[i]):
      table[own[at[i, slot]]] = slot
    for s in range(genuine[2]):
      at[3 + i, s] = table[lookup[at[2, s]]]
  for s in range(genuine[2]):
    a, b = at[3, s], at[4, s]
    if a >= 0 and b >= 0 and a < capacity and b < capacity:
      matches[0, a], matches[1, b] = b, a


@_jit
def match_task(pixel_ranks, num_values, pixel_order, uv, edge_cells, node_cells, squares,
               tie_order, shape, dual, in_comparison_order, births_of,
               bucket, closes, edge_key, node_key, by_age, node_rank, order, ends, sorted_key,
               num_edges, parent, oldest, young, at, births, deaths, counts, matches):
  """One image pair (x, y and c = `pixel_ranks[:3]`, of `shape`) in one dimension:
  nodes' ages, each image's sorted edges, its passes (the births of the
  images `births_of[i]`, -1 padded), then `pair_and_match`. The
  arguments from `bucket` to `at` are scratch (`_Workspace`)."""
  for i in range(3):
    node_ages(node_cells, shape, pixel_ranks[i], num_values[i], pixel_order[i], tie_order, dual,
              bucket, node_key[i], by_age[i], node_rank[i])
  for i in range(3):
    num_edges[i] = sorted_edges(edge_cells, uv, squares, pixel_ranks[i], num_values[i], dual,
                                edge_key, closes, bucket, order[i], ends[i], sorted_key[i])
    m, num_births = num_edges[i], np.sum(births_of[i] >= 0)
    elder_passes(ends[i, :m], node_rank, births_of[i, :num_births], parent, oldest,
                 young[i, :num_births, :m])
  pair_and_match(order, sorted_key, num_edges, young, by_age, node_key, edge_cells, node_cells,
                 pixel_ranks, dual, in_comparison_order, at, parent, births, deaths, counts,
                 matches)


def passes_of(in_comparison_order: bool) -> np.ndarray:
  """`[3, 3]` per image (x, y, c) the births of the passes along its order
  (-1: none): its own, then x's and y's for c (comparison order) or c's for
  x and y."""
  rows = ((0,), (1,), (2, 0, 1)) if in_comparison_order else ((0, 2), (1, 2), (2,))
  return np.array([row + (-1,) * (3 - len(row)) for row in rows], np.int64)


class _Workspace(NamedTuple):
  """One task's scratch memory (`_workspace`)."""
  bucket: np.ndarray  # [n + 2] counting-sort buckets
  closes: np.ndarray  # [E] bool
  edge_key: np.ndarray  # [E] counting-sort keys
  node_key: np.ndarray  # [3, W] per image
  by_age: np.ndarray  # [3, W]
  node_rank: np.ndarray  # [3, W]
  order: np.ndarray  # [3, E + 1] (a spare slot)
  ends: np.ndarray  # [3, E + 1, 2]
  sorted_key: np.ndarray  # [3, E + 1]
  num_edges: np.ndarray  # [3]
  parent: np.ndarray  # [W] union-find, then the matching's table
  oldest: np.ndarray  # [W, 3]
  young: np.ndarray  # [3, 3, E]
  at: np.ndarray  # [5, E]


_local = threading.local()
# Workspaces up to this size stay with their thread (256^2: 17 MiB, 512^2:
# 68 MiB); larger ones (big volumes) are made per task and freed.
_KEPT_BYTES = 80 << 20


def _workspace(num_pixels: int, num_nodes: int, num_edges: int) -> _Workspace:
  """A workspace for these sizes, cut from this thread's buffers, which fit
  either dimension's graph (at most a node per pixel, the same edges)."""
  sizes = (num_pixels, num_edges)
  if getattr(_local, "sizes", None) == sizes:
    buffers = _local.buffers
  else:
    i32 = functools.partial(np.empty, dtype=np.int32)
    width = num_pixels + 1
    buffers = _Workspace(
        bucket=i32(num_pixels + 2), closes=np.empty(num_edges, bool), edge_key=i32(num_edges),
        node_key=i32(3 * width), by_age=i32(3 * width), node_rank=i32(3 * width),
        order=i32((3, num_edges + 1)), ends=i32((3, num_edges + 1, 2)),
        sorted_key=i32((3, num_edges + 1)), num_edges=np.empty(3, np.int64), parent=i32(width),
        oldest=i32(3 * width), young=i32((3, 3, num_edges)), at=i32((5, num_edges)))
    if sum(a.nbytes for a in buffers) <= _KEPT_BYTES:
      _local.sizes, _local.buffers = sizes, buffers
  per_node = lambda a, shape: a[:math.prod(shape)].reshape(shape)
  return buffers._replace(
      node_key=per_node(buffers.node_key, (3, num_nodes)),
      by_age=per_node(buffers.by_age, (3, num_nodes)),
      node_rank=per_node(buffers.node_rank, (3, num_nodes)),
      parent=buffers.parent[:num_nodes], oldest=per_node(buffers.oldest, (num_nodes, 3)))


@functools.cache
def _pool(pid: int):  # per process: a forked child has none of its parent's threads
  del pid
  return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def match_dimensions(images, *, ndim: int, static, capacities):
  """Host side of `_matching`'s CPU engine.

  Two rounds of tasks over the cores: the pixel sort of each image (shared
  by the dimensions), then `match_task` per image pair and dimension.

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
  lead, shape = images.shape[:-ndim - 1], images.shape[-ndim:]
  flat = np.ascontiguousarray(images.reshape((-1, 3, math.prod(shape))))
  batch, num_pixels = flat.shape[0], flat.shape[2]
  pixel_ranks = np.empty((batch, 3, num_pixels), np.int32)
  pixel_order = np.empty((batch, 3, num_pixels), np.int32)
  num_values = np.empty((batch, 3), np.int32)

  def rank(b, i):
    ws = getattr(_local, "sort", None)
    if ws is None or ws[0].size != num_pixels:
      ws = _local.sort = (np.empty(num_pixels, np.uint32), np.empty(num_pixels, np.int32))
    num_values[b, i] = dense_ranks(flat[b, i], pixel_ranks[b, i], pixel_order[b, i], *ws)

  _run([functools.partial(rank, b, i) for b in range(batch) for i in range(3)])
  outputs = [(np.full((batch, 2, capacity), _NONE, np.int32),
              np.full((batch, 2, capacity), _NONE, np.int32), np.zeros((batch, 2), np.int32),
              np.full((batch, 2, capacity), _NONE, np.int32)) for capacity in capacities]

  spatial = np.array(shape, np.int64)

  def match(d, b):
    graph, dual, in_comparison_order = static[d]
    workspace = _workspace(num_pixels, graph[2].shape[0], graph[1].shape[0])
    match_task(pixel_ranks[b], num_values[b], pixel_order[b], *graph, spatial, dual,
               in_comparison_order, passes_of(in_comparison_order), *workspace,
               *(a[b] for a in outputs[d]))

  _run([functools.partial(match, d, b) for d in range(len(static)) for b in range(batch)])
  return [tuple(a.reshape(lead + a.shape[1:]) for a in output) for output in outputs]


def _run(tasks):
  """Run the (GIL-releasing) `tasks` on the CPU's cores."""
  if len(tasks) == 1:
    tasks[0]()
  else:
    for future in [_pool(os.getpid()).submit(task) for task in tasks]:
      future.result()
