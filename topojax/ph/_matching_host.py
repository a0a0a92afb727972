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
import os

import numpy as np

_NONE = -1


@functools.cache
def _kernels():
  """The compiled kernels (numba imported on first use, cached on disk)."""
  import numba  # pylint: disable=import-outside-toplevel

  jit = functools.partial(numba.njit, nogil=True, cache=True)

  @jit
  def sortable(value):
    """uint32 keys in the order of the float32 `value` (-0.0 == 0.0)."""
    bits = (value + np.float32(0.0)).view(np.int32)
    flipped = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits)
    return flipped.view(np.uint32) ^ np.uint32(0x80000000)

  @jit
  def stable_order(key, keep):
    """Indices `i` with `keep[i]`, stably sorted by `key` (LSD radix, 11-bit
    digits; a digit that every key shares is skipped)."""
    count = 0
    for i in range(key.size):
      count += keep[i]
    order = np.empty(count, np.int32)
    j = 0
    for i in range(key.size):
      if keep[i]:
        order[j] = i
        j += 1
    spare = np.empty(count, np.int32)
    bucket = np.zeros(2048, np.int64)
    for shift in (0, 11, 22):
      bucket[:] = 0
      for i in range(count):
        bucket[(key[order[i]] >> shift) & 2047] += 1
      if count == 0 or bucket[(key[order[0]] >> shift) & 2047] == count:
        continue
      total = 0
      for b in range(2048):
        n = bucket[b]
        bucket[b] = total
        total += n
      for i in range(count):
        e = order[i]
        b = (key[e] >> shift) & 2047
        spare[bucket[b]] = e
        bucket[b] += 1
      order, spare = spare, order
    return order

  @jit
  def birth_ranks(node_value, tie_order):
    """Rank of each node by (value, tie) (0: oldest) and the inverse map;
    `tie_order` lists the nodes by increasing tie."""
    key = sortable(node_value)[tie_order]
    keep = np.ones(key.size, np.bool_)
    by_age = tie_order[stable_order(key, keep)]
    rank = np.empty(by_age.size, np.int32)
    for r in range(by_age.size):
      rank[by_age[r]] = r
    return rank, by_age

  @jit
  def elder_passes(order, u, v, ranks, by_age, young):
    """The elder rule along `order` under each births `ranks[j]`: `young[j, e]`
    the node dying at edge `e` (left untouched where none dies).

    The union-find is shared: which edges merge does not depend on births,
    only which node dies; each births keeps its own oldest rank per root."""
    num_births, num_nodes = ranks.shape
    parent = np.arange(num_nodes, dtype=np.int32)
    size = np.ones(num_nodes, np.int32)
    oldest = ranks.copy()
    for i in range(order.size):
      e = order[i]
      a = u[e]
      while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
      b = v[e]
      while parent[b] != b:
        parent[b] = parent[parent[b]]
        b = parent[b]
      if a == b:
        continue
      if size[a] < size[b]:
        a, b = b, a
      parent[b] = a
      size[a] += size[b]
      for j in range(num_births):
        older, younger = oldest[j, a], oldest[j, b]
        if younger < older:
          older, younger = younger, older
        oldest[j, a] = older
        young[j, e] = by_age[j, younger]

  @jit
  def own_pairs(young, edge_value, node_value, edge_voxel, node_voxel, dual, birth, death,
                slot):
    """Pairs of positive persistence in edge order: `slot[e]` each genuine
    edge's slot (else -1), birth/death pixels filled; returns the count."""
    count = 0
    for e in range(young.size):
      node = young[e]
      if node < 0 or node_value[node] == edge_value[e]:
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
  def match_dimension(u, v, value, voxel, node_value, node_voxel, tie_order, dual,
                      in_comparison_order, births, deaths, counts, matches):
    """One image triple `(x, y, c)` in one dimension (see `_matching`).

    Fills `births`/`deaths`/`matches` `[2, capacity]` and `counts` `[2]` for
    x and y."""
    num_edges, num_nodes = value.shape[1], node_value.shape[1]
    ranks = np.empty((3, num_nodes), np.int32)
    by_age = np.empty((3, num_nodes), np.int32)
    for i in range(3):
      ranks[i], by_age[i] = birth_ranks(node_value[i], tie_order)
    real = np.empty(num_edges, np.bool_)
    for e in range(num_edges):
      real[e] = u[e] != v[e]
    orders = []
    for i in range(3):
      orders.append(stable_order(sortable(value[i]), real & (value[i] < np.inf)))
    young = np.full((3, num_edges), _NONE, np.int32)  # own births
    cross = np.full((3, num_edges), _NONE, np.int32)  # x, y: in c's order or by c's births
    if in_comparison_order:
      passes = np.full((3, num_edges), _NONE, np.int32)
      elder_passes(orders[2], u, v, ranks, by_age, passes)
      young[2], cross[0], cross[1] = passes[2], passes[0], passes[1]
      for i in range(2):
        elder_passes(orders[i], u, v, ranks[i:i + 1], by_age[i:i + 1], young[i:i + 1])
    else:
      elder_passes(orders[2], u, v, ranks[2:3], by_age[2:3], young[2:3])
      pair = np.empty((2, num_nodes), np.int32)
      pair_by_age = np.empty((2, num_nodes), np.int32)
      for i in range(2):
        pair[0], pair[1] = ranks[i], ranks[2]
        pair_by_age[0], pair_by_age[1] = by_age[i], by_age[2]
        passes = np.full((2, num_edges), _NONE, np.int32)
        elder_passes(orders[i], u, v, pair, pair_by_age, passes)
        young[i], cross[i] = passes[0], passes[1]
    slots = np.full((3, num_edges), _NONE, np.int32)
    capacity = births.shape[1]
    scratch = np.empty(capacity, np.int32)
    for i in range(3):
      birth = births[i] if i < 2 else scratch
      death = deaths[i] if i < 2 else scratch
      count = own_pairs(young[i], value[i], node_value[i], voxel[i], node_voxel[i], dual,
                        birth, death, slots[i])
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

  return match_dimension


@functools.cache
def _pool():
  return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def match_dimensions(graphs, static, capacities):
  """Host side of `_matching`'s CPU engine.

  Args:
    graphs: per dimension `(value, voxel, node_value, node_voxel)`, each
      `[..., 3, E]` / `[..., 3, W]` (leading batch axes, then x, y, c).
    static: per dimension `(u, v, tie_order, dual, in_comparison_order)`.
    capacities: per dimension the pair slots.

  Returns:
    Per dimension `(births, deaths, counts, matches)`: `[..., 2, capacity]`
    int32 pixels (x and y), `[..., 2]` counts, `[..., 2, capacity]` matches.
  """
  match_dimension = _kernels()
  outputs, tasks = [], []
  for graph, (u, v, tie_order, dual, in_comparison_order), capacity in zip(
      graphs, static, capacities):
    value, voxel, node_value, node_voxel = (np.asarray(a) for a in graph)
    lead = value.shape[:-2]
    flat = [a.reshape((-1,) + a.shape[-2:]) for a in (value, voxel, node_value, node_voxel)]
    batch = flat[0].shape[0]
    births = np.full((batch, 2, capacity), _NONE, np.int32)
    deaths = np.full((batch, 2, capacity), _NONE, np.int32)
    counts = np.zeros((batch, 2), np.int32)
    matches = np.full((batch, 2, capacity), _NONE, np.int32)
    for b in range(batch):
      tasks.append(functools.partial(
          match_dimension, u, v, *(a[b] for a in flat), tie_order, dual,
          in_comparison_order, births[b], deaths[b], counts[b], matches[b]))
    outputs.append(tuple(a.reshape(lead + a.shape[1:])
                         for a in (births, deaths, counts, matches)))
  if len(tasks) == 1:
    tasks[0]()
  else:
    for future in [_pool().submit(task) for task in tasks]:
      future.result()
  return outputs
