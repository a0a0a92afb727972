"""A slow, plain NumPy replica of Betti-Matching-3D's induced matching (the oracle).

It follows the authors' C++ (nstucki/Betti-Matching-3D, `dimension_0.cpp`,
`top_dimension.cpp`, `data_structures.cpp`) step by step, with union-finds in
Python loops, for small images:

- dimension 0: pixels are nodes; the V-construction edges (pixel, pixel + e_k)
  are taken in increasing (value, x, y[, z], type) order; equal births: the
  larger index is younger.
- dimension d-1: the top cells (and one outer node at +inf) are nodes; the
  (d-1)-cubes are edges, taken in decreasing (value, index) order; equal
  births: the smaller index is younger.
- "comparison" pass (dimension 0 with the union): in the comparison image's
  order, the younger roots by the input's values key the inputs' pairs by
  birth cell; "input" pass (dimension d-1 with the union): in each input's own
  order the younger root by the comparison's values keys that input's pair,
  then the comparison's own pairs look both keys up. The intersection swaps
  the two passes (the maps go the other way).

Pairs are reported as (birth pixel, death pixel), flat C-order indices, with
the C++'s parent-voxel rule (the first pixel of the cell, in C order, that has
the cell's value).
"""

from __future__ import annotations

import itertools

import numpy as np


def _parent_voxel(f, pixels):
  values = [f[p] for p in pixels]
  best = max(values)
  return min(np.ravel_multi_index(p, f.shape) for p, v in zip(pixels, values) if v == best)


class _Graph:
  """Nodes with birth values, edges as (value, index, u, v, parent voxel)."""

  def __init__(self, f, dual):
    self.f, self.dual = f, dual
    shape, d = f.shape, f.ndim
    if not dual:
      self.node_value = {i: f.flat[i] for i in range(f.size)}
      self.node_voxel = {i: i for i in range(f.size)}
      edges = []
      for anchor in itertools.product(*map(range, shape)):
        for k in range(d):
          far = list(anchor)
          far[k] += 1
          if far[k] >= shape[k]:
            continue
          far = tuple(far)
          value = max(f[anchor], f[far])
          index = np.ravel_multi_index(anchor, shape) * d + k
          edges.append((value, index, np.ravel_multi_index(anchor, shape),
                        np.ravel_multi_index(far, shape), _parent_voxel(f, [anchor, far])))
      self.edges = sorted(edges, key=lambda e: (e[0], e[1]))
      return
    top_shape = tuple(n - 1 for n in shape)
    outer = int(np.prod(top_shape))
    self.node_value, self.node_voxel = {outer: np.inf}, {outer: -1}
    for cell in itertools.product(*map(range, top_shape)):
      corners = [tuple(c + o for c, o in zip(cell, off))
                 for off in itertools.product((0, 1), repeat=d)]
      i = np.ravel_multi_index(cell, top_shape)
      self.node_value[i] = max(f[c] for c in corners)
      self.node_voxel[i] = _parent_voxel(f, corners)
    edges = []
    for anchor in itertools.product(*map(range, shape)):
      for k in range(d):
        missing = 1 - k if d == 2 else k  # the axis the (d-1)-cube does not span
        spans = [a for a in range(d) if a != missing]
        if any(anchor[a] >= shape[a] - 1 for a in spans):
          continue
        pixels = []
        for off in itertools.product((0, 1), repeat=d - 1):
          p = list(anchor)
          for a, o in zip(spans, off):
            p[a] += o
          pixels.append(tuple(p))
        sides = []
        for step in (-1, 0):
          cell = list(anchor)
          cell[missing] += step
          inside = 0 <= cell[missing] < top_shape[missing]
          sides.append(np.ravel_multi_index(cell, top_shape) if inside else outer)
        value = max(f[p] for p in pixels)
        index = np.ravel_multi_index(anchor, shape) * d + k
        edges.append((value, index, sides[0], sides[1], _parent_voxel(f, pixels)))
    self.edges = sorted(edges, key=lambda e: (e[0], e[1]), reverse=True)

  def younger(self, births, x, y):
    """Of two roots, the one that dies (the C++'s `link`)."""
    bx, by = births[x], births[y]
    if self.dual:
      return x if (bx, x) < (by, y) else y
    return x if (bx, x) > (by, y) else y


def _find(parent, x):
  while parent[x] != x:
    parent[x] = parent[parent[x]]
    x = parent[x]
  return x


def _run_tracked(order: _Graph, *birth_graphs):
  """Kruskal over `order`'s edges with one union-find per birth function."""
  graphs = (order,) + birth_graphs
  parents = [{i: i for i in order.node_value} for _ in graphs]
  out = []
  for edge in order.edges:
    _, _, u, v, _ = edge
    roots = [(_find(p, u), _find(p, v)) for p in parents]
    if roots[0][0] == roots[0][1]:
      continue
    young = []
    for g, p, (ru, rv) in zip(graphs, parents, roots):
      y = g.younger(g.node_value, ru, rv)
      p[y] = ru if y == rv else rv
      young.append(y)
    out.append((edge, young))
  return out


def _pairs(graph: _Graph):
  """The graph's own pairs: (birth pixel, death pixel, key = dying node, edge)."""
  pairs = []
  for edge, (young,) in _run_tracked(graph):
    value, _, _, _, voxel = edge
    if graph.node_value[young] != value:
      if graph.dual:
        pairs.append((voxel, graph.node_voxel[young], young))
      else:
        pairs.append((graph.node_voxel[young], voxel, young))
  return pairs


def matching(p, g, *, dim: int, comparison: str = "union"):
  """Pairs of `p` and `g` in dimension `dim` (0 or d-1) and their matching.

  Sublevel filtrations, V construction; the comparison image is min(p, g)
  for the union, max(p, g) for the intersection. Returns `(pairs_p, pairs_g,
  matches)`: pairs as (birth pixel, death pixel) tuples, matches as
  (index in pairs_p, index in pairs_g).
  """
  p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
  c = np.minimum(p, g) if comparison == "union" else np.maximum(p, g)
  dual = dim == p.ndim - 1 and dim > 0
  graphs = [_Graph(x, dual) for x in (p, g, c)]
  own = [_pairs(x) for x in graphs[:2]]
  # Union: dimension 0 looks in the comparison's order, the top dimension in
  # the inputs' orders; the intersection swaps them.
  in_comparison_order = (dim == 0) == (comparison == "union")
  matches = []
  if in_comparison_order:
    slot = [{key: i for i, (_, _, key) in enumerate(pairs)} for pairs in own]
    for edge, (young_c, young_p, young_g) in _run_tracked(graphs[2], graphs[0], graphs[1]):
      if graphs[2].node_value[young_c] != edge[0] and young_p in slot[0] and young_g in slot[1]:
        matches.append((slot[0][young_p], slot[1][young_g]))
  else:
    by_comparison_root = []
    for graph, pairs in zip(graphs[:2], own):
      slot = {key: i for i, (_, _, key) in enumerate(pairs)}
      keyed = {}
      for edge, (young, young_c) in _run_tracked(graph, graphs[2]):
        if graph.node_value[young] != edge[0]:
          keyed[young_c] = slot[young]
      by_comparison_root.append(keyed)
    for edge, (young_c,) in _run_tracked(graphs[2]):
      if graphs[2].node_value[young_c] != edge[0]:
        if young_c in by_comparison_root[0] and young_c in by_comparison_root[1]:
          matches.append((by_comparison_root[0][young_c], by_comparison_root[1][young_c]))
  strip = lambda pairs: [(b, d) for b, d, _ in pairs]
  return strip(own[0]), strip(own[1]), matches
