"""TOPO: the windowed MALIS region-separation loss (Oner et al.), as TopoMortar runs it.

The network predicts a truncated distance map. Besides a regression term, each
non-overlapping window of the image is a 4-connected pixel graph whose edges
cost the sum of their two pixels' predicted values; Kruskal's algorithm builds
its maximum spanning tree, and every tree edge is weighted by the number of
pixel pairs it is the maximin (bottleneck) edge of: pairs from different
ground-truth regions (negative, pushed to 0) or from the same region
(positive, pushed to the truncation distance). Those are the MALIS weights
(Turaga et al. 2009), computed here on the device in one `jit`:

1. the tree edges in Kruskal order, by a union-find over the sorted edges of
   every window at once (the one sequential part: one step per edge, after
   the edges that close a unit square last, ~80 % of the non-tree edges, are
   ruled out elementwise), which also chains each component's pixels into a
   list, so that the final list orders the pixels with every Kruskal
   component contiguous (the leaf order of the merge tree);
2. the pair counts without per-component label histograms: a merge's two
   sides are adjacent runs of that order, each region's consecutive pixels in
   that order first meet at the latest merge between them (a range maximum
   over merge ranks), and the region's pixels on either side of that merge
   are counted by binary search in the pixels sorted by (region, position).

Counts are exact for any number of regions.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from topojax._src import checks
from topojax._src import morphology
from topojax._src import numerics

_CONVENTIONS = ("topomortar", "oner")
# Largest window side: (group * E + edge) sort keys must fit in int32.
_MAX_WINDOW = 128


def _nonzero(x: jax.Array) -> jax.Array:
  return x if x.dtype == jnp.bool_ else x != jnp.zeros((), x.dtype)


# --- Distance maps ---------------------------------------------------------------------------


def truncated_edt(mask: jax.Array, max_distance: float) -> jax.Array:
  r"""Exact Euclidean distance transform, truncated: $\min(\mathrm{EDT}(m), D)$.

  As `scipy.ndimage.distance_transform_edt(mask)`: each nonzero pixel gets its
  distance to the nearest zero pixel, zero pixels get 0. Separable: the
  distance to the nearest zero of the same column (two cumulative scans), then
  the minimum of $k^2 + d_{col}^2$ over the horizontal offsets $|k| \le
  \lceil D \rceil$, which is exact below the truncation.

  An image without any zero pixel gets D everywhere (scipy returns distances
  to a phantom pixel outside the image there).

  Args:
    mask: `[..., H, W]`, nonzero = inside.
    max_distance: D > 0.

  Returns:
    `[..., H, W]` float32 distances in [0, D].
  """
  mask = _nonzero(jnp.asarray(mask))
  h, w = mask.shape[-2:]
  radius = int(math.ceil(max_distance))
  far = radius + 1  # any clipped column distance already exceeds the truncation
  rows = jnp.arange(h, dtype=jnp.int32).reshape((1,) * (mask.ndim - 2) + (h, 1))
  zero = ~mask
  above = lax.cummax(jnp.where(zero, rows, -2 * far - h), axis=mask.ndim - 2)
  below = lax.cummin(jnp.where(zero, rows, 2 * far + 2 * h), axis=mask.ndim - 2, reverse=True)
  column = jnp.minimum(jnp.minimum(rows - above, below - rows), far)
  column_sq = column * column
  pad = [(0, 0)] * (mask.ndim - 1) + [(radius, radius)]
  padded = jnp.pad(column_sq, pad, constant_values=far * far)
  best = column_sq
  for k in range(1, radius + 1):
    for shift in (radius - k, radius + k):
      shifted = lax.slice_in_dim(padded, shift, shift + w, axis=mask.ndim - 1)
      best = jnp.minimum(best, k * k + shifted)
  distance = jnp.sqrt(best.astype(jnp.float32))
  return jnp.minimum(distance, jnp.float32(max_distance))


# --- Regions ---------------------------------------------------------------------------------


def _shift(x: jax.Array, dy: int, dx: int, fill) -> jax.Array:
  """`x[..., i - dy, j - dx]` with `fill` outside."""
  h, w = x.shape[-2:]
  pad = [(0, 0)] * (x.ndim - 2) + [(max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0))]
  padded = jnp.pad(x, pad, constant_values=fill)
  y0, x0 = max(-dy, 0), max(-dx, 0)
  return padded[..., y0:y0 + h, x0:x0 + w]


def _label_components(region: jax.Array, connectivity: int) -> jax.Array:
  """`[W, h, w]` bool -> `[W, h * w]` int32: each region pixel's component, named
  by its smallest flat index; `h * w` outside the region.

  Hooking and pointer jumping until nothing changes: every pixel hooks its
  root onto the smallest root among its neighbours' (a scatter-min), then all
  pointers jump to their roots.
  """
  num_windows, h, w = region.shape
  n = h * w
  sentinel = jnp.int32(n)
  offsets = [(1, 0), (-1, 0), (0, 1), (0, -1)]
  if connectivity == 8:
    offsets += [(1, 1), (1, -1), (-1, 1), (-1, -1)]
  rows = jnp.arange(num_windows, dtype=jnp.int32)[:, None]

  def jump(x):
    return jnp.where(x < n, jnp.take_along_axis(x, jnp.minimum(x, n - 1), axis=1), x)

  def compress(x):
    return lax.while_loop(lambda s: jnp.any(s[0] != s[1]), lambda s: (jump(s[0]), s[0]),
                          (jump(x), x))[0]

  def step(state):
    root, _ = state  # every pixel points at its root
    grid = root.reshape((num_windows, h, w))
    best = grid
    for dy, dx in offsets:
      best = jnp.minimum(best, _shift(grid, dy, dx, n))
    best = jnp.where(region, best, sentinel).reshape((num_windows, n))
    hooked = root.at[rows, jnp.minimum(root, n - 1)].min(jnp.where(root < n, best, n))
    new = compress(jnp.minimum(hooked, best))
    return new, jnp.any(new != root)

  ids = jnp.arange(n, dtype=jnp.int32).reshape((1, h, w))
  init = jnp.where(region, ids, sentinel).reshape((num_windows, n))
  return lax.while_loop(lambda s: s[1], step, (init, jnp.array(True)))[0]


# --- MALIS pair counts -----------------------------------------------------------------------


def window_edges(window: int) -> tuple[np.ndarray, np.ndarray]:
  """The reference's edge list of a `window` x `window` 4-connected grid.

  Horizontal edges `(p, p + 1)` in C order, then vertical edges `(p, p + window)`
  in C order: `2 * window * (window - 1)` edges, this index is the tie order.
  """
  nodes = np.arange(window * window, dtype=np.int32).reshape(window, window)
  first = np.concatenate([nodes[:, :-1].ravel(), nodes[:-1, :].ravel()])
  second = np.concatenate([nodes[:, 1:].ravel(), nodes[1:, :].ravel()])
  return first, second


def _find(parent: jax.Array, x: jax.Array, depth: int) -> jax.Array:
  """Union-find roots, unrolled: union by size keeps trees at most log2(n) deep.

  (A `while_loop` here would take `parent` as an operand and copy it each step.)
  """
  for _ in range(depth):
    x = parent[x]
  return x


def _kruskal_keys(cost: jax.Array) -> jax.Array:
  """int32 keys increasing in Kruskal order (decreasing cost), exact for any float32."""
  return ~numerics.sortable_int32(cost)  # reversed without overflow


def _later(key_a, index_a, key_b, index_b):
  """Edge a comes after edge b in Kruskal order (key, then index)."""
  return (key_a > key_b) | ((key_a == key_b) & (index_a > index_b))


def _cycle_candidates(key: jax.Array, window: int) -> jax.Array:
  """`[W, E]` False for edges that close a unit square after its three others.

  The last edge of a cycle in Kruskal order is in no maximum spanning tree;
  the squares rule out about 80 % of the non-tree edges, elementwise.
  """
  num_windows = key.shape[0]
  split = window * (window - 1)
  index = jnp.arange(key.shape[1], dtype=jnp.int32)[None, :]
  h_key = key[:, :split].reshape((num_windows, window, window - 1))
  v_key = key[:, split:].reshape((num_windows, window - 1, window))
  h_idx = index[:, :split].reshape((1, window, window - 1))
  v_idx = index[:, split:].reshape((1, window - 1, window))
  # Square (r, c): top h[r, c], bottom h[r + 1, c], left v[r, c], right v[r, c + 1].
  sides = [(h_key[:, :-1, :], h_idx[:, :-1, :]), (h_key[:, 1:, :], h_idx[:, 1:, :]),
           (v_key[:, :, :-1], v_idx[:, :, :-1]), (v_key[:, :, 1:], v_idx[:, :, 1:])]
  last = []
  for i, (k, x) in enumerate(sides):
    is_last = jnp.ones(k.shape, bool)
    for j, (k2, x2) in enumerate(sides):
      if i != j:
        is_last = is_last & _later(k, x, k2, x2)
    last.append(is_last)
  no = jnp.zeros((num_windows, 1, window - 1), bool)
  h_out = jnp.concatenate([last[0], no], axis=1) | jnp.concatenate([no, last[1]], axis=1)
  no = jnp.zeros((num_windows, window - 1, 1), bool)
  v_out = jnp.concatenate([last[2], no], axis=2) | jnp.concatenate([no, last[3]], axis=2)
  return ~jnp.concatenate([h_out.reshape((num_windows, -1)), v_out.reshape((num_windows, -1))],
                          axis=1)


def _kruskal_order(cost: jax.Array, window: int) -> jax.Array:
  """`[W, E]` edge indices in Kruskal order (decreasing cost, ties by index), the
  edges that `_cycle_candidates` rules out last.

  Two single-operand int32 sorts (much faster on CPU than a sort with an index
  payload): the keys, then (first position of the key) * E + index.
  """
  num_edges = cost.shape[1]
  key = _kruskal_keys(cost)
  key = jnp.where(_cycle_candidates(key, window), key, jnp.iinfo(jnp.int32).max)
  group = jax.vmap(lambda k: jnp.searchsorted(jnp.sort(k), k, side="left"))(key)
  index = jnp.arange(num_edges, dtype=jnp.int32)[None, :]
  return jnp.sort(group.astype(jnp.int32) * num_edges + index, axis=1) % num_edges


def _kruskal(order: jax.Array, first: np.ndarray, second: np.ndarray, n: int):
  """Maximum spanning trees of W graphs on n nodes, built in Kruskal order.

  Args:
    order: `[W, E]` edge indices in Kruskal order (every tree edge before any
      edge ruled out of the tree).
    first, second: `[E]` the edges' end nodes.
    n: nodes per graph (the graphs must be connected).

  Returns:
    `(edge, tail, size_a, size_b, after)`: for the m-th merge of each graph
    (`[W, n - 1]` each) its edge, the last node of the first side's list and the
    two sides' sizes; and `[W * n]` each node's successor in its graph's final
    list (-1 at the end), by global id `w * n + node`.
  """
  num_windows, num_edges = order.shape
  base = (jnp.arange(num_windows, dtype=jnp.int32) * n)[:, None]
  ends_u = jnp.asarray(first)[order] + base
  ends_v = jnp.asarray(second)[order] + base
  total = num_windows * n
  ids = jnp.arange(total, dtype=jnp.int32)
  merge_base = jnp.arange(num_windows, dtype=jnp.int32) * (n - 1)
  node_base = jnp.arange(num_windows, dtype=jnp.int32) * n
  depth = max(1, int(math.floor(math.log2(n))))

  def body(state):
    j, parent, info, after, count, merges = state
    u, v = ends_u[:, j], ends_v[:, j]
    # The barrier keeps the find chains out of the gathers below (XLA would fuse a
    # copy of each chain into every consumer).
    root_u, root_v = lax.optimization_barrier((_find(parent, u, depth), _find(parent, v, depth)))
    # Every read before any write, so that the scatters below update in place.
    info_u, info_v = lax.optimization_barrier((info[root_u], info[root_v]))
    size_u, head_u, tail_u = info_u[:, 0], info_u[:, 1], info_u[:, 2]
    size_v, head_v, tail_v = info_v[:, 0], info_v[:, 1], info_v[:, 2]
    joins = root_u != root_v
    node_at = lambda x: jnp.where(joins, x, total)
    # Union by size; the new root keeps u's head and v's tail.
    top = jnp.where(size_u >= size_v, root_u, root_v)
    below = jnp.where(size_u >= size_v, root_v, root_u)
    parent = parent.at[node_at(below)].set(top, mode="drop")
    info = info.at[node_at(top)].set(jnp.stack([size_u + size_v, head_u, tail_v], axis=1),
                                     mode="drop")
    after = after.at[node_at(tail_u)].set(head_v, mode="drop")
    record = jnp.stack([order[:, j], tail_u - node_base, size_u, size_v], axis=1)
    merges = merges.at[jnp.where(joins, merge_base + count, num_merges)].set(record, mode="drop")
    return j + 1, parent, info, after, count + joins.astype(jnp.int32), merges

  num_merges = num_windows * (n - 1)
  info = jnp.stack([jnp.ones_like(ids), ids, ids], axis=1)
  state = (jnp.int32(0), ids, info, jnp.full_like(ids, -1),
           jnp.zeros((num_windows,), jnp.int32), jnp.zeros((num_merges, 4), jnp.int32))
  # The trees are complete after the last tree edge: stop there.
  state = lax.while_loop(lambda s: jnp.any(s[4] < n - 1) & (s[0] < num_edges), body, state)
  _, _, _, after, _, merges = state
  edge, last, size_a, size_b = (merges[:, k] for k in range(4))
  shape = (num_windows, n - 1)
  return (edge.reshape(shape), last.reshape(shape), size_a.reshape(shape),
          size_b.reshape(shape), after)


def _list_positions(after: jax.Array, num_windows: int, n: int) -> jax.Array:
  """`[W, n]` each node's position in its graph's list (pointer jumping)."""
  to_end = (after >= 0).astype(jnp.int32)
  succ = after
  for _ in range(max(1, math.ceil(math.log2(n)))):
    valid = succ >= 0
    safe = jnp.maximum(succ, 0)
    # Barriers: XLA would fuse the rounds into one gather chain, recomputing
    # earlier rounds per element.
    to_end, succ = lax.optimization_barrier((to_end + jnp.where(valid, to_end[safe], 0),
                                             jnp.where(valid, succ[safe], -1)))
  return lax.optimization_barrier(n - 1 - to_end).reshape((num_windows, n))


def malis_pair_counts(cost: jax.Array, labels: jax.Array, window: int):
  """Per-edge MALIS pair counts on W windows, both signs.

  For every edge of the maximum spanning tree (Kruskal order: decreasing
  cost, ties by edge index) the numbers of labelled pixel pairs it joins:
  positive = same label, negative = different labels. Pixels with label
  `window**2` (or more) are unlabelled and in no pair. `malis.malis_loss_weights`
  with `pos=1` / `pos=0` on one window, when the costs have no ties.

  Args:
    cost: `[W, E]` floating edge costs, edges as in `window_edges`.
    labels: `[W, window**2]` int32 labels in [0, window**2], C order.
    window: the window's side.

  Returns:
    `(positive, negative)`, `[W, E]` int32 each, zero off the tree.
  """
  n = window * window
  num_windows, num_edges = cost.shape
  first, second = window_edges(window)
  if n == 1:
    zeros = jnp.zeros((num_windows, num_edges), jnp.int32)
    return zeros, zeros
  edge, last, size_a, size_b, after = _kruskal(_kruskal_order(cost, window), first, second, n)
  position = _list_positions(after, num_windows, n)
  rows = jnp.arange(num_windows, dtype=jnp.int32)[:, None]
  merges = jnp.broadcast_to(jnp.arange(n - 1, dtype=jnp.int32), (num_windows, n - 1))

  # The m-th merge joins the runs [lo, gap) and [gap, hi) of the final order.
  gap = jnp.take_along_axis(position, last, axis=1) + 1
  lo, hi = gap - size_a, gap + size_b
  rank_at_gap = jnp.zeros((num_windows, n), jnp.int32).at[rows, gap].set(merges)

  labels = jnp.where(labels < n, labels, n).astype(jnp.int32)
  label_at = jnp.zeros((num_windows, n), jnp.int32).at[rows, position].set(labels)
  labelled = (label_at < n).astype(jnp.int32)
  before = jnp.concatenate([jnp.zeros((num_windows, 1), jnp.int32),
                            jnp.cumsum(labelled, axis=1)], axis=1)  # [W, n + 1]
  take = lambda x, i: jnp.take_along_axis(x, i, axis=1)
  total_a = take(before, gap) - take(before, lo)
  total_b = take(before, hi) - take(before, gap)

  # Labelled pixels sorted by (label, position); each label's consecutive pair
  # (p, q) first meets at the latest merge among the gaps p+1 .. q.
  slots = jnp.arange(n, dtype=jnp.int32)[None, :]
  keys = jnp.sort(jnp.where(label_at < n, label_at * n + slots, n * n), axis=1)
  label_k, pos_k = keys // n, keys % n
  same = (label_k[:, :-1] == label_k[:, 1:]) & (keys[:, 1:] < n * n)
  p, q = pos_k[:, :-1], pos_k[:, 1:]

  # Sparse table of range maxima over rank_at_gap[1:] (gap g at index g - 1).
  levels = [rank_at_gap[:, 1:]]
  span = 1
  while 2 * span <= n - 1:
    prev = levels[-1]
    shifted = jnp.pad(prev[:, span:], [(0, 0), (0, span)], constant_values=-1)
    levels.append(jnp.maximum(prev, shifted))
    span *= 2
  table = jnp.stack(levels)  # [L, W, n - 1]
  start = jnp.where(same, p, 0)  # gap p + 1 -> index p
  stop = jnp.where(same, q - 1, 0)  # gap q -> index q - 1, inclusive
  length = stop - start + 1
  level = 31 - lax.clz(length)
  flat = table.reshape(-1)
  stride_level, stride_row = num_windows * (n - 1), n - 1
  at = lambda lev, i: flat[lev * stride_level + rows * stride_row + i]
  meet = jnp.maximum(at(level, start), at(level, stop - (1 << level) + 1))  # merge index

  # The label's pixels in [lo, gap) end at key i, those in [gap, hi) start at i + 1.
  search = jax.vmap(lambda k, x: jnp.searchsorted(k, x, side="left"))
  base_key = label_k[:, :-1] * n
  at_gap = slots[:, 1:]  # i + 1
  pairs = ((at_gap - search(keys, base_key + take(lo, meet)))
           * (search(keys, base_key + take(hi, meet)) - at_gap))
  positive = jnp.zeros((num_windows, n - 1), jnp.int32).at[rows, meet].add(
      jnp.where(same, pairs, 0))
  negative = total_a * total_b - positive

  def per_edge(count):
    return jnp.zeros((num_windows, num_edges), jnp.int32).at[rows, edge].set(count)
  return per_edge(positive), per_edge(negative)


# --- The loss --------------------------------------------------------------------------------


def _windows(x: jax.Array, window: int) -> jax.Array:
  """`[B, H, W]` -> `[B * nh * nw, window, window]`, the full windows in C order."""
  b, h, w = x.shape
  nh, nw = h // window, w // window
  x = x[:, :nh * window, :nw * window].reshape((b, nh, window, nw, window))
  return x.transpose(0, 1, 3, 2, 4).reshape((b * nh * nw, window, window))


def _unwindow(x: jax.Array, shape: tuple[int, int, int], window: int) -> jax.Array:
  """Inverse of `_windows`, zero outside the full windows."""
  b, h, w = shape
  nh, nw = h // window, w // window
  x = x.reshape((b, nh, nw, window, window)).transpose(0, 1, 3, 2, 4)
  x = x.reshape((b, nh * window, nw * window))
  return jnp.pad(x, [(0, 0), (0, h - nh * window), (0, w - nw * window)])


def _edge_sums(x: jax.Array) -> jax.Array:
  """`[W, w, w]` -> `[W, E]`: x at both ends, edges as in `window_edges`."""
  n = x.shape[0]
  horizontal = (x[:, :, :-1] + x[:, :, 1:]).reshape((n, -1))
  vertical = (x[:, :-1, :] + x[:, 1:, :]).reshape((n, -1))
  return jnp.concatenate([horizontal, vertical], axis=1)


def _node_sums(edge_values: jax.Array, window: int) -> jax.Array:
  """`[W, E]` -> `[W, w, w]`: each edge's value added to both its pixels."""
  n = edge_values.shape[0]
  split = window * (window - 1)
  horizontal = edge_values[:, :split].reshape((n, window, window - 1))
  vertical = edge_values[:, split:].reshape((n, window - 1, window))
  pad = lambda x, a, b: jnp.pad(x, [(0, 0)] + [a, b])
  return (pad(horizontal, (0, 0), (0, 1)) + pad(horizontal, (0, 0), (1, 0))
          + pad(vertical, (0, 1), (0, 0)) + pad(vertical, (1, 0), (0, 0)))


def _normalised(counts: jax.Array) -> jax.Array:
  counts = counts.astype(jnp.float32)
  total = jnp.sum(counts, axis=1, keepdims=True)
  return jnp.where(total > 0, counts / jnp.where(total > 0, total, 1.0), counts)


def _malis_node_weights(pred, truth, *, window, max_distance, min_distance, dilation,
                        connectivity, with_negative, with_positive):
  r"""`[B, H, W]` float32 pixel weights of the negative and positive MALIS terms.

  `truth` is the ground-truth map g: costs and weights are masked by
  $g_i + g_j$, and regions lie farther than `dilation` from $\{g = 0\}$.
  """
  shape = pred.shape
  zeros = jnp.zeros(shape, jnp.float32)
  if shape[1] < window or shape[2] < window or not (with_negative or with_positive):
    return zeros, zeros
  p, g = _windows(pred.astype(jnp.float32), window), _windows(truth, window)
  num_windows = p.shape[0]
  labels = _label_components(~morphology.dilate_cross(g == 0, 2, dilation), connectivity)

  cost, truth_cost = _edge_sums(p), _edge_sums(g)
  passes = []
  if with_negative:
    passes.append(jnp.where(truth_cost > max_distance, jnp.float32(max_distance), cost))
  if with_positive:
    passes.append(jnp.where(truth_cost < min_distance, jnp.float32(0.0), cost))
  positive, negative = malis_pair_counts(jnp.concatenate(passes, axis=0),
                                         jnp.tile(labels, (len(passes), 1)), window)
  truth_cost = jnp.minimum(truth_cost, max_distance)
  weight_neg = weight_pos = zeros
  if with_negative:
    w = _normalised(negative[:num_windows])
    w = jnp.where(truth_cost >= min_distance, 0.0, w)
    weight_neg = _unwindow(_node_sums(w, window), shape, window)
  if with_positive:
    w = _normalised(positive[num_windows if with_negative else 0:])
    w = jnp.where(truth_cost < max_distance, 0.0, w)
    weight_pos = _unwindow(_node_sums(w, window), shape, window)
  return weight_neg, weight_pos


def _check_float(value, name: str, *, positive: bool = False) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f"`{name}` must be a number, got {type(value).__name__}.")
  value = float(value)
  if not math.isfinite(value) or value < 0 or (positive and value == 0):
    bound = "> 0" if positive else ">= 0"
    raise ValueError(f"`{name}` must be finite and {bound}, got {value}.")
  return value


def topo_malis(pred: jax.typing.ArrayLike, target: jax.typing.ArrayLike, *,
               alpha: float = 1e-3, window: int = 64, max_distance: float = 20.0,
               min_distance: float = 10.0, negative_weight: float = 1.0,
               positive_weight: float = 0.1, dilation: int = 5,
               convention: str = "topomortar") -> jax.Array:
  r"""TOPO loss (Oner et al.): distance regression plus windowed MALIS, per example.

  With $y$ the predicted distance map, $\bar y$ its truncated target and
  $D$ = `max_distance`,

  $$\mathcal{L} = \alpha \sum_i (y_i - \bar y_i)^2
     + \lambda_- \sum_i W^-_i\, y_i^2 + \lambda_+ \sum_i W^+_i\, (D - y_i)^2 .$$

  Each full `window` x `window` tile (non-overlapping; a remainder strip at
  the bottom or right has no MALIS term) is a 4-connected pixel graph whose
  edge $(i, j)$ costs $y_i + y_j$. For the maximum spanning tree (Kruskal
  order: decreasing cost, ties by the edge's index: horizontal edges in C
  order, then vertical ones) each tree edge gets the number of pixel pairs
  whose maximin path it bottlenecks: pairs from different regions ($W^-$) or
  the same region ($W^+$). Regions are the connected components of the
  pixels farther than `dilation` (city-block) from $\{g = 0\}$ in the tile,
  with $g$ the ground-truth map below. The negative counts are taken on costs
  set to $D$ where $g_i + g_j > D$, the positive ones on costs set to 0 where
  $g_i + g_j < D_{min}$; each is divided by its sum in the tile; negative
  weights are kept where $\min(g_i + g_j, D) < D_{min}$, positive ones where
  $\min(g_i + g_j, D) \ge D$; a pixel's weight is the sum of its edges'. The
  weights are constants (`stop_gradient`), so gradients reach the pixels.

  Conventions (`target` is always a binary mask, nonzero = structure):

  * "topomortar" (TopoMortar's `MSETopoWinLoss`): $\bar y = \min(\mathrm{EDT}
    (\text{target}), D)$, the distance inside the structure to the nearest
    background pixel, so the structure is $y > 0$; $g$ = the binary target,
    so $g_i + g_j \le 2$: with the defaults the costs are never changed,
    every negative weight is kept and the positive term is identically 0 (it
    is skipped). Regions, 4-connected, are the structure eroded by
    `dilation`: the loss separates the eroded pieces of the structure, pushing
    its thin necks towards 0 (TOPO ranks last on TopoMortar).
  * "oner" (the paper's code, `TOPO-Windowed-Loss`): $\bar y = g =
    \min(\mathrm{EDT}(\text{target} = 0), D)$, the distance to the nearest
    structure pixel (Oner's target is the distance to the centre-lines: pass
    a centre-line mask), so the structure is where $y$ is small; regions
    8-connected: the background farther than `dilation` from the structure.

  Args:
    pred: `[B, H, W]` floating predicted distance map y, finite and
      non-negative (TopoMortar applies a ReLU to the network output, see
      `topo_malis_on_logits`).
    target: `[B, H, W]` binary ground truth (any dtype; nonzero = structure).
    alpha: weight of the summed squared regression error.
    window: side of the MALIS tiles, at most 128.
    max_distance: D, the truncation of the distance maps.
    min_distance: $D_{min}$.
    negative_weight: $\lambda_-$ (TopoMortar's `malis_lr`).
    positive_weight: $\lambda_+$ (TopoMortar's `malis_lr_pos`).
    dilation: iterations of the cross-shaped dilation that separates regions
      (0: none; scipy's `iterations=0` would dilate until nothing changes).
    convention: "topomortar" or "oner", see above.

  Returns:
    `[B]` losses; their sum is TopoMortar's batch loss.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from topojax.losses import topo_malis
    >>> target = jnp.zeros((1, 16, 16)).at[0, 2:7, 1:15].set(1.).at[0, 9:14, 1:15].set(1.)
    >>> target = target.at[0, 7:9, 7:9].set(1.)  # two bands joined by a thin bridge
    >>> pred = target * jax.random.uniform(jax.random.key(0), (1, 16, 16), minval=1., maxval=2.)
    >>> loss = lambda y: topo_malis(y, target, window=16, dilation=1).sum()
    >>> round(float(loss(pred)), 4)
    4.0529
    >>> grad = jax.grad(loss)(pred)  # the eroded bands are two regions: cut the bridge
    >>> [int(i) for i in jnp.unravel_index(jnp.argmax(grad[0]), (16, 16))]
    [6, 8]

  References:
    Oner, Koziński, Citraro, Dadap, Konings, Fua, "Promoting Connectivity of
    Network-Like Structures by Enforcing Region Separation", TPAMI 2022
    (arXiv 2009.07011). Turaga et al., "Maximin affinity learning of image
    segmentation", NeurIPS 2009. Valverde et al., TopoMortar, arXiv 2503.03365.
  """
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  checks.check_floating(pred, "pred")
  if pred.ndim != 3:
    raise ValueError(f"`pred` must be [B, H, W], got shape {pred.shape}.")
  checks.check_spatial(pred, "pred", 2)
  if target.shape != pred.shape:
    raise ValueError(f"`target` must have the shape of `pred` {pred.shape}, got {target.shape}.")
  window = checks.check_positive_int(window, "window")
  if not 2 <= window <= _MAX_WINDOW:
    raise ValueError(f"`window` must be in [2, {_MAX_WINDOW}], got {window}.")
  dilation = checks.check_positive_int(dilation, "dilation", allow_zero=True)
  if convention not in _CONVENTIONS:
    raise ValueError(f"`convention` must be one of {_CONVENTIONS}, got {convention!r}.")
  alpha = _check_float(alpha, "alpha")
  max_distance = _check_float(max_distance, "max_distance", positive=True)
  min_distance = _check_float(min_distance, "min_distance")
  negative_weight = _check_float(negative_weight, "negative_weight")
  positive_weight = _check_float(positive_weight, "positive_weight")
  return _topo_malis(pred, target, alpha=alpha, window=window, max_distance=max_distance,
                     min_distance=min_distance, negative_weight=negative_weight,
                     positive_weight=positive_weight, dilation=dilation, convention=convention)


@functools.partial(jax.jit, static_argnames=(
    "alpha", "window", "max_distance", "min_distance", "negative_weight", "positive_weight",
    "dilation", "convention"))
def _topo_malis(pred, target, *, alpha, window, max_distance, min_distance, negative_weight,
                positive_weight, dilation, convention):
  mask = _nonzero(target)
  if convention == "topomortar":
    regression_target = truncated_edt(mask, max_distance)
    truth, connectivity = mask.astype(jnp.float32), 4  # scipy.ndimage.label
    positive_possible = max_distance <= 2.0  # else g_i + g_j <= 2 < D keeps no weight
  else:
    regression_target = truth = truncated_edt(~mask, max_distance)
    connectivity, positive_possible = 8, True  # skimage.measure.label
  weight_neg, weight_pos = _malis_node_weights(
      lax.stop_gradient(pred), truth, window=window, max_distance=max_distance,
      min_distance=min_distance, dilation=dilation, connectivity=connectivity,
      with_negative=negative_weight > 0,
      with_positive=positive_weight > 0 and positive_possible)
  dtype = pred.dtype if jnp.finfo(pred.dtype).bits >= 32 else jnp.float32  # reduce in f32+
  y = pred.astype(dtype)
  weight_neg = lax.stop_gradient(weight_neg).astype(dtype)
  weight_pos = lax.stop_gradient(weight_pos).astype(dtype)
  per_pixel = (alpha * (y - regression_target.astype(dtype)) ** 2
               + negative_weight * weight_neg * y ** 2
               + positive_weight * weight_pos * (max_distance - y) ** 2)
  return jnp.sum(per_pixel, axis=(1, 2))


def topo_malis_on_logits(logits: jax.typing.ArrayLike, labels: jax.typing.ArrayLike,
                         **hyperparameters) -> jax.Array:
  r"""`topo_malis` on the trainer's `(logits, labels)`, as TopoMortar wires it.

  TopoMortar's TOPO network has one output channel `out`; the loss sees
  $y = \mathrm{ReLU}(\text{out})$ and the segmentation is `out > 1e-5`. Here
  `out` is channel 0 when C = 1 and the margin `logits[..., 1] - logits[..., 0]`
  when C = 2, so that the argmax segmentation is `out > 0`, as in TopoMortar
  up to the 1e-5. `labels > 0` is the target.

  Args:
    logits: `[B, H, W, C]` floating, C = 1 or 2.
    labels: `[B, H, W]` integer labels (nonzero = structure), or soft binary
      labels (thresholded at 0.5).
    **hyperparameters: keyword arguments of `topo_malis`.

  Returns:
    `[B]` losses.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.losses import topo_malis_on_logits
    >>> logits = jnp.zeros((2, 8, 8, 2))
    >>> topo_malis_on_logits(logits, jnp.zeros((2, 8, 8), jnp.int32), window=8).tolist()
    [0.0, 0.0]
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  checks.check_floating(logits, "logits")
  labels = checks.hard_labels(labels)  # soft labels: their mask q > 0.5
  checks.check_integer(labels, "labels")
  if logits.ndim != 4 or logits.shape[-1] not in (1, 2):
    raise ValueError("`logits` must be [B, H, W, C] with C = 1 or 2 (channels-last), "
                     f"got shape {logits.shape}.")
  if labels.shape != logits.shape[:-1]:
    raise ValueError(f"`labels` must have shape logits.shape[:-1] = {logits.shape[:-1]}, "
                     f"got {labels.shape}.")
  out = logits[..., 0] if logits.shape[-1] == 1 else logits[..., 1] - logits[..., 0]
  return topo_malis(jax.nn.relu(out), labels > 0, **hyperparameters)
