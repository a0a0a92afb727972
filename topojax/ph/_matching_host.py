"""The Betti matching passes as sequential union-find, compiled for the CPU.

On XLA:CPU the parallel elder-rule rounds of `_matching` (scatters and
pointer jumps over every pixel) cost several times a sequential union-find:
the CPU runs one compiled loop per pass instead. This module is that loop, in
numba, with exactly the conventions of `_matching` (same graphs, same edge
order and births, same slots), so both engines return equal matchings; the
tests compare them. It runs through `jax.pure_callback`, one call for every
image and dimension, spread over the CPU's cores.

Per image and dimension: a stable radix sort per edge order (the input
images' and the comparison image's), one union-find per order that tracks the
oldest node of each component under every set of births the matching needs
(an order's own births and the other images'), then the pairs and the
matching from who dies where.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
import types

import numpy as np

_NONE = -1


@functools.cache
def _kernels():
  """The compiled kernels (numba imported on first use, cached on disk)."""
  import numba  # pylint: disable=import-outside-toplevel

  jit = functools.partial(numba.njit, nogil=True, cache=True)

  @jit
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

  @jit
  def cell_keys(cells, dense, num_values, dual, nodes):
    """Per cell (a row of pixel ids) the dense rank of its value, the max of
    its pixels' (reversed for `dual`, where the order is decreasing), and its
    first pixel attaining it. Rows starting with -1: no edge (key -1), or
    among `nodes` the dual's outer node (key 0, the oldest)."""
    num_cells, width = cells.shape
    key = np.empty(num_cells, np.int32)
    voxel = np.empty(num_cells, np.int32)
    for i in range(num_cells):
      first = cells[i, 0]
      if first < 0:
        key[i] = 0 if nodes else -1
        voxel[i] = -1
        continue
      best, at = dense[first], first
      for j in range(1, width):
        r = dense[cells[i, j]]
        if r > best:
          best, at = r, cells[i, j]
      key[i] = num_values - best if dual else best
      voxel[i] = at
    return key, voxel

  @jit
  def without_square_closers(key, squares):
    """`key` with -1 at the edges that close a unit square of the grid last
    (by (key, index)): their ends are joined by then, so they merge nothing."""
    kept = key.copy()
    for q in range(squares.shape[0]):
      last = squares[q, 0]
      for j in range(1, 4):
        e = squares[q, j]
        if key[e] > key[last] or (key[e] == key[last] and e > last):
          last = e
      kept[last] = -1
    return kept

  @jit
  def edge_order(key, num_keys, uv):
    """The edges with `key >= 0` stably sorted by key (a counting sort), and
    their ends in that order (so that the passes read them in sequence)."""
    bucket = np.zeros(num_keys + 1, np.int32)
    for e in range(key.size):
      if key[e] >= 0:
        bucket[key[e] + 1] += 1
    for k in range(num_keys):
      bucket[k + 1] += bucket[k]
    order = np.empty(bucket[num_keys], np.int32)
    ends = np.empty((bucket[num_keys], 2), np.int32)
    for e in range(key.size):
      k = key[e]
      if k >= 0:
        i = bucket[k]
        order[i] = e
        ends[i, 0], ends[i, 1] = uv[e, 0], uv[e, 1]
        bucket[k] += 1
    return order, ends

  @jit
  def node_order(key, num_keys, tie_order):
    """The nodes stably sorted by (key, tie), `tie_order` listing them by tie."""
    bucket = np.zeros(num_keys + 1, np.int32)
    for node in tie_order:
      bucket[key[node] + 1] += 1
    for k in range(num_keys):
      bucket[k + 1] += bucket[k]
    order = np.empty(tie_order.size, np.int32)
    for node in tie_order:
      order[bucket[key[node]]] = node
      bucket[key[node]] += 1
    return order

  @jit
  def elder_passes(order, ends, ranks, by_age, young):
    """The elder rule along the edges `order` (ends `ends`) under each births
    `ranks[j]` (0: oldest): `young[j, e]` the node dying at edge `e` (left
    untouched where none dies).

    The union-find is shared (which edges merge does not depend on births,
    only which node dies); roots hold minus their size and, per births, the
    oldest rank of their component."""
    num_births, num_nodes = ranks.shape
    parent = np.full(num_nodes, -1, np.int32)
    oldest = np.ascontiguousarray(ranks.T)
    for i in range(order.size):
      a, b = ends[i, 0], ends[i, 1]
      while parent[a] >= 0:
        up = parent[a]
        if parent[up] < 0:
          a = up
          break
        parent[a] = parent[up]
        a = parent[up]
      while parent[b] >= 0:
        up = parent[b]
        if parent[up] < 0:
          b = up
          break
        parent[b] = parent[up]
        b = parent[up]
      if a == b:
        continue
      if parent[a] > parent[b]:  # b is the larger
        a, b = b, a
      parent[a] += parent[b]
      parent[b] = a
      e = order[i]
      for j in range(num_births):
        older, younger = oldest[a, j], oldest[b, j]
        if younger < older:
          older, younger = younger, older
        oldest[a, j] = older
        young[j, e] = by_age[j, younger]

  @jit
  def own_pairs(young, edge_key, node_key, edge_voxel, node_voxel, dual, birth, death, slot):
    """Pairs of positive persistence in edge order: `slot[e]` each genuine
    edge's slot, birth/death pixels filled; returns the count."""
    count = 0
    for e in range(young.size):
      node = young[e]
      if node < 0 or node_key[node] == edge_key[e]:
        continue
      slot[e] = count
      if count < birth.size:
        if dual:
          birth[count], death[count] = edge_voxel[e], node_voxel[node]
        else:
          birth[count], death[count] = node_voxel[node], edge_voxel[e]
      count += 1
    return count

  @jit
  def match_dimension(pixel_ranks, num_values, pixel_order, uv, edge_cells, node_cells,
                      squares, tie_order, dual, in_comparison_order, births, deaths, counts,
                      matches):
    """One image triple (x, y, c) in one dimension (see `_matching`), from
    `dense_ranks` of each image: fills `births`/`deaths`/`matches`
    `[2, capacity]` and `counts` `[2]` for x and y."""
    num_edges, num_nodes = uv.shape[0], node_cells.shape[0]
    edge_key = np.empty((3, num_edges), np.int32)
    edge_voxel = np.empty((3, num_edges), np.int32)
    node_key = np.empty((3, num_nodes), np.int32)
    node_voxel = np.empty((3, num_nodes), np.int32)
    ranks = np.empty((3, num_nodes), np.int32)
    by_age = np.empty((3, num_nodes), np.int32)
    orders, ends = [], []
    for i in range(3):
      edge_key[i], edge_voxel[i] = cell_keys(edge_cells, pixel_ranks[i], num_values[i], dual,
                                             False)
      node_key[i], node_voxel[i] = cell_keys(node_cells, pixel_ranks[i], num_values[i], dual,
                                             True)
      order, end = edge_order(without_square_closers(edge_key[i], squares), num_values[i] + 1,
                              uv)
      orders.append(order)
      ends.append(end)
      if dual:
        by_age[i] = node_order(node_key[i], num_values[i] + 1, tie_order)
      else:
        by_age[i] = pixel_order[i]  # (value, index): the nodes' order
      for r in range(num_nodes):
        ranks[i, by_age[i, r]] = r
    young = np.full((3, num_edges), _NONE, np.int32)  # own births
    cross = np.full((3, num_edges), _NONE, np.int32)  # x, y: in c's order or by c's births
    if in_comparison_order:
      passes = np.full((3, num_edges), _NONE, np.int32)
      elder_passes(orders[2], ends[2], ranks, by_age, passes)
      young[2], cross[0], cross[1] = passes[2], passes[0], passes[1]
      for i in range(2):
        elder_passes(orders[i], ends[i], ranks[i:i + 1], by_age[i:i + 1], young[i:i + 1])
    else:
      elder_passes(orders[2], ends[2], ranks[2:3], by_age[2:3], young[2:3])
      pair = np.empty((2, num_nodes), np.int32)
      pair_by_age = np.empty((2, num_nodes), np.int32)
      for i in range(2):
        pair[0], pair[1] = ranks[i], ranks[2]
        pair_by_age[0], pair_by_age[1] = by_age[i], by_age[2]
        passes = np.full((2, num_edges), _NONE, np.int32)
        elder_passes(orders[i], ends[i], pair, pair_by_age, passes)
        young[i], cross[i] = passes[0], passes[1]
    slots = np.full((3, num_edges), _NONE, np.int32)
    capacity = births.shape[1]
    scratch = np.empty(capacity, np.int32)
    for i in range(3):
      birth = births[i] if i < 2 else scratch
      death = deaths[i] if i < 2 else scratch
      count = own_pairs(young[i], edge_key[i], node_key[i], edge_voxel[i], node_voxel[i],
                        dual, birth, death, slots[i])
      if i < 2:
        counts[i] = count
    # Per comparison edge, the x and y slot it is matched through.
    through = np.full((2, num_edges), _NONE, np.int32)
    table = np.empty(num_nodes, np.int32)
    for i in range(2):
      table[:] = _NONE
      if in_comparison_order:
        # In c's order, the component dying at a c pair by i's births is the
        # birth of i's matched pair.
        for e in range(num_edges):
          if slots[i, e] >= 0:
            table[young[i, e]] = slots[i, e]
        for e in range(num_edges):
          if slots[2, e] >= 0:
            through[i, e] = table[cross[i, e]]
      else:
        # In i's order, its pairs name the c component dying with them.
        for e in range(num_edges):
          if slots[i, e] >= 0:
            table[cross[i, e]] = slots[i, e]
        for e in range(num_edges):
          if slots[2, e] >= 0:
            through[i, e] = table[young[2, e]]
    for e in range(num_edges):
      a, b = through[0, e], through[1, e]
      if a >= 0 and b >= 0 and a < capacity and b < capacity:
        matches[0, a], matches[1, b] = b, a

  @jit
  def image_ranks(images, pixel_ranks, pixel_order):
    """`dense_ranks` of each image of `images [k, n]`; returns the counts."""
    num_values = np.empty(images.shape[0], np.int32)
    for i in range(images.shape[0]):
      pixel_ranks[i], num_values[i], pixel_order[i] = dense_ranks(images[i])
    return num_values

  return types.SimpleNamespace(dense_ranks=dense_ranks, cell_keys=cell_keys,
                               without_square_closers=without_square_closers, edge_order=edge_order,
                               node_order=node_order, elder_passes=elder_passes,
                               own_pairs=own_pairs, image_ranks=image_ranks,
                               match_dimension=match_dimension)


@functools.cache
def _pool():
  return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def match_dimensions(images, *, ndim: int, static, capacities):
  """Host side of `_matching`'s CPU engine.

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
  kernels = _kernels()
  images = np.asarray(images, np.float32)
  lead = images.shape[:-ndim - 1]
  flat = np.ascontiguousarray(images.reshape((-1, 3, math.prod(images.shape[-ndim:]))))
  batch, num_pixels = flat.shape[0], flat.shape[2]
  # The pixel sort of each image serves every dimension.
  pixel_ranks = np.empty((batch, 3, num_pixels), np.int32)
  pixel_order = np.empty((batch, 3, num_pixels), np.int32)
  num_values = np.empty((batch, 3), np.int32)

  def rank(b, i):
    num_values[b, i:i + 1] = kernels.image_ranks(flat[b, i:i + 1], pixel_ranks[b, i:i + 1],
                                                 pixel_order[b, i:i + 1])

  _run([functools.partial(rank, b, i) for b in range(batch) for i in range(3)])
  outputs, tasks = [], []
  for (graph, dual, in_comparison_order), capacity in zip(static, capacities):
    births = np.full((batch, 2, capacity), _NONE, np.int32)
    deaths = np.full((batch, 2, capacity), _NONE, np.int32)
    counts = np.zeros((batch, 2), np.int32)
    matches = np.full((batch, 2, capacity), _NONE, np.int32)
    tasks += [functools.partial(kernels.match_dimension, pixel_ranks[b], num_values[b],
                                pixel_order[b], *graph, dual, in_comparison_order, births[b],
                                deaths[b], counts[b], matches[b])
              for b in range(batch)]
    outputs.append(tuple(a.reshape(lead + a.shape[1:])
                         for a in (births, deaths, counts, matches)))
  _run(tasks)
  return outputs


def _run(tasks):
  """Run the (GIL-releasing) `tasks` on the CPU's cores."""
  if len(tasks) == 1:
    tasks[0]()
  else:
    for future in [_pool().submit(task) for task in tasks]:
      future.result()
