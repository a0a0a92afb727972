"""Vietoris–Rips H0 of point clouds and lower-star persistence of graphs.

Both are spanning-forest computations that run on the device as one
`lax.fori_loop`, under `jax.jit` and `jax.vmap`, and return a `Diagram` whose
values are gathered from the input, so gradients flow one-hot to the cells
(distance-matrix entries, node values) that created and destroyed each class.

* `rips_h0`: the 0-dimensional Vietoris–Rips diagram of a point cloud or of a
  distance matrix, from a minimum spanning tree (Prim's algorithm, N - 1 steps
  of one O(N) vector minimum each, O(N) memory for point input).
* `graph_persistence`: H0 and H1 of a graph under the lower-star filtration of
  its node values (as in TOGL), by union-find with the elder rule over the
  edges sorted once; `graph_persistence_togl` gives the same pairs in TOGL's
  per-node / per-edge tuple layout.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from topojax._src import checks
from topojax._src import numerics
from topojax.ph._diagram import Diagram, gather_values

# Flat indices i * N + j into an [N, N] matrix must fit in int32.
_MAX_POINTS = 46340


def _is_traced(x: jax.Array) -> bool:
  return isinstance(x, jax.core.Tracer)


def _unflatten(tree, batch_shape: tuple[int, ...]):
  """Reshapes the leading (flattened) batch axis of every leaf to `batch_shape`."""
  return jax.tree_util.tree_map(lambda a: a.reshape(batch_shape + a.shape[1:]), tree)


# ---------------------------------------------------------------------------
# Vietoris–Rips H0.


def pairwise_distances(points: jax.Array) -> jax.Array:
  r"""Euclidean distance matrix of point clouds, with finite gradients.

  $$D_{ij} = \lVert x_i - x_j \rVert_2$$

  computed from differences (not the $\lVert x\rVert^2 - 2\,x\cdot y$
  expansion, which loses precision for close points) and with a gradient-safe
  square root: coincident points give distance 0 and gradient 0, not NaN. This
  is the matrix that `rips_h0(points)` indexes (`death_index = i * N + j`),
  computed here in full; `rips_h0` itself never builds it.

  Args:
    points: `[..., N, D]` floating point clouds (leading axes are batch axes).

  Returns:
    `[..., N, N]` distances, in the dtype of `points`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.ph import pairwise_distances
    >>> pairwise_distances(jnp.array([[0.0, 0.0], [3.0, 4.0]])).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
  """
  points = jnp.asarray(points)
  checks.check_floating(points, "points")
  if points.ndim < 2:
    raise ValueError(f"`points` must be [..., N, D], got shape {points.shape}.")
  return numerics.safe_norm(points[..., :, None, :] - points[..., None, :, :])


def _prim(row, n: int):
  """Prim's algorithm from vertex 0 on the complete graph with weights `row(j)`.

  Edges are ordered by (weight, flat index `min(i, j) * n + max(i, j)`), a
  strict total order, so the tree is the unique minimum spanning tree under
  it: the one Kruskal's algorithm builds from the upper triangle stable-sorted
  by weight (equal weights in row-major order), ties and duplicate points
  included.

  Returns `parent` (`[N]` int32, the tree vertex through which each vertex was
  attached; 0 for vertex 0) and `attach` (`[N]`, the weight of that edge, +inf
  when the vertex could only be reached through +inf weights).
  """
  vertex = jnp.arange(n, dtype=jnp.int32)
  never = jnp.iinfo(jnp.int32).max
  edge_to = lambda j: jnp.minimum(vertex, j) * n + jnp.maximum(vertex, j)

  def step(_, carry):
    in_tree, best, best_edge, parent = carry
    outside = ~in_tree
    lightest = jnp.min(jnp.where(outside, best, jnp.inf))
    # The outside vertex with the smallest (weight, edge); when every
    # remaining weight is +inf this starts a new component.
    j = jnp.argmin(jnp.where(outside & (best == lightest), best_edge, never)).astype(jnp.int32)
    in_tree = in_tree.at[j].set(True)
    weights, edges = row(j), edge_to(j)
    closer = ~in_tree & ((weights < best) | ((weights == best) & (edges < best_edge)))
    return (in_tree, jnp.where(closer, weights, best), jnp.where(closer, edges, best_edge),
            jnp.where(closer, j, parent))

  init = (vertex == 0, row(jnp.int32(0)), edge_to(jnp.int32(0)), jnp.zeros((n,), jnp.int32))
  _, attach, _, parent = lax.fori_loop(0, n - 1, step, init)
  return parent, attach


def _rips_h0_single(x: jax.Array, distance_matrix: bool) -> Diagram:
  """Rips H0 of one `[N, D]` point cloud or one `[N, N]` distance matrix."""
  n = x.shape[0]
  vertex = jnp.arange(n, dtype=jnp.int32)
  frozen = lax.stop_gradient(x)
  if distance_matrix:
    upper = vertex[:, None] < vertex[None, :]
    # Only the strict upper triangle is read; the diagonal counts as 0.
    sym = jnp.where(upper, frozen, jnp.where(upper.T, frozen.T, 0))
    row = lambda j: sym[j]
    nonfinite = jnp.any(jnp.isnan(sym) | (sym == -jnp.inf))
  else:
    coords = frozen.T  # [D, N]: one contiguous vector per coordinate
    row = lambda j: jnp.sum(
        jnp.square(coords - lax.dynamic_slice_in_dim(coords, j, 1, axis=1)), axis=0)
    nonfinite = ~jnp.all(jnp.isfinite(x))
  parent, attach = _prim(row, n)

  finite = (vertex > 0) & (attach < jnp.inf)
  lo, hi = jnp.minimum(parent, vertex), jnp.maximum(parent, vertex)
  death_index = jnp.where(finite, lo * n + hi, -1)
  if distance_matrix:
    length = gather_values(x, death_index, finite)
  else:
    length = numerics.safe_norm(x[lo] - x[hi])
  return Diagram(
      birth=jnp.zeros((n,), x.dtype),
      death=jnp.where(finite, length, jnp.inf).astype(x.dtype),
      birth_index=vertex * (n + 1),
      death_index=death_index,
      dim=jnp.zeros((n,), jnp.int32),
      valid=jnp.ones((n,), bool),
      overflow=jnp.zeros((), bool),
      nonfinite=nonfinite,
  )


@functools.partial(jax.jit, static_argnames=("distance_matrix",))
def _rips_h0(x: jax.Array, distance_matrix: bool) -> Diagram:
  core = functools.partial(_rips_h0_single, distance_matrix=distance_matrix)
  batch_shape = x.shape[:-2]
  if not batch_shape:
    return core(x)
  out = jax.vmap(core)(x.reshape((-1,) + x.shape[-2:]))
  return _unflatten(out, batch_shape)


def _raise_if_bad_rips_values(x: jax.Array, distance_matrix: bool) -> None:
  """Eager-only value checks (no-ops on tracers, where `nonfinite` flags)."""
  if _is_traced(x):
    return
  if not distance_matrix:
    if not bool(jnp.all(jnp.isfinite(x))):
      raise ValueError("`points` must be finite; got NaN or inf coordinates.")
    return
  if bool(jnp.any(jnp.isnan(x))):
    raise ValueError("`x` (a distance matrix) holds NaN entries.")
  if bool(jnp.any(x < 0)):
    raise ValueError("`x` (a distance matrix) must be >= 0; got negative entries.")
  if bool(jnp.any(jnp.diagonal(x, axis1=-2, axis2=-1) != 0)):
    raise ValueError(
        "`x` (a distance matrix) must have a zero diagonal: every point enters "
        "the Rips filtration at 0 (vertex weights, as giotto-ph reads a nonzero "
        "diagonal, are not supported).")


def rips_h0(x: jax.Array, *, distance_matrix: bool = False) -> Diagram:
  r"""0-dimensional Vietoris–Rips persistence of point clouds, on the device.

  Every point is born at 0 and two components merge when the shortest edge
  between them enters, so the finite H0 deaths are the edge lengths of a
  minimum spanning tree (MST) of the complete graph with weights
  $d(x_i, x_j)$:

  $$\mathrm{Dgm}_0 = \{(0, \ell_e) : e \in \mathrm{MST}\} \cup \{(0, +\infty)\}.$$

  The MST is grown by Prim's algorithm from point 0 in a `lax.fori_loop`
  (N - 1 steps, each one O(N) vector minimum). Equal lengths are ordered by
  the flat index `min(i, j) * N + max(i, j)`, so the tree is the one Kruskal's
  algorithm builds from the stable-sorted upper triangle, ties included. For
  point input each step computes the distances from the newly attached point,
  so memory stays O(N D) and no N x N matrix is built.

  **Layout.** N slots, one per point: slot 0 is the essential class (birth 0,
  death +inf) and slot j >= 1 the bar that dies when point j is attached, along
  the MST edge (i, j) to its tree neighbour i. All slots are valid, `dim` is 0,
  and the capacity never overflows.

  **Indices and gradients.** Indices are flat indices into the N x N distance
  matrix: the input itself for `distance_matrix=True`,
  `pairwise_distances(points)` for point input. `death_index` is
  `min(i, j) * N + max(i, j)` (upper triangle), -1 for essential classes;
  `birth_index` is the diagonal cell `j * N + j` of point j, whose birth is
  the constant 0 (no gradient). Deaths are differentiable: for a distance
  matrix, one-hot at the upper-triangle entry of each MST edge; for points,
  through $\lVert x_i - x_j\rVert$ with a gradient-safe square root
  (coincident points give a zero-length bar with gradient 0, not NaN).

  **Distance matrices** are read in their strict upper triangle only (pass a
  symmetric matrix; the lower triangle and the diagonal are ignored). `+inf`
  entries are absent edges, as in ripser and giotto-ph: a point cloud that
  falls apart into k groups has k essential classes (death +inf,
  `death_index` -1). Eager calls raise on NaN, negative entries and a nonzero
  diagonal (giotto-ph reads the diagonal as vertex birth times, which this
  routine does not support).

  **Bad values.** Under `jit`/`vmap`, NaN or ±inf coordinates (NaN or -inf
  distances) set the diagram's `nonfinite` flag; eager calls raise instead.
  Negative distances and a nonzero diagonal are only caught eagerly.

  Args:
    x: `[..., N, D]` floating point clouds (N points in R^D), or with
      `distance_matrix=True`, `[..., N, N]` distance matrices. Leading axes are
      batch axes. Requires 1 <= N <= 46340 (flat indices are int32).
    distance_matrix: read `x` as distance matrices (ripser's and scikit-tda's
      flag; giotto-ph's `metric="precomputed"`).

  Returns:
    A `Diagram` with capacity N (batch axes of `x` kept): N - 1 finite pairs
    (one per MST edge; zero-length for duplicate points, which ripser and
    giotto-ph omit) and one essential pair, in the dtype of `x`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from topojax.ph import rips_h0
    >>> points = jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0], [5.0, 2.0]])
    >>> dgm = rips_h0(points)
    >>> dgm.death.tolist()
    [inf, 1.0, 2.0, 4.0]
    >>> dgm.death_index.tolist()  # MST edges (0, 1), (1, 2), (2, 3) as i * 4 + j
    [-1, 1, 6, 11]
    >>> total_length = lambda p: jnp.sum(rips_h0(p).death[1:])
    >>> jax.grad(total_length)(points).tolist()
    [[-1.0, 0.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 0.0]]
    >>> d = jnp.array([[0.0, 1.0, jnp.inf], [1.0, 0.0, jnp.inf],
    ...                [jnp.inf, jnp.inf, 0.0]])
    >>> rips_h0(d, distance_matrix=True).death.tolist()  # two components
    [inf, 1.0, inf]

  References:
    Prim, "Shortest connection networks and some generalizations", Bell System
    Technical Journal 36(6), 1957.
    Bauer, "Ripser: efficient computation of Vietoris–Rips persistence
    barcodes", Journal of Applied and Computational Topology 5, 2021.
  """
  x = jnp.asarray(x)
  name = "x" if distance_matrix else "points"
  checks.check_floating(x, name)
  if distance_matrix:
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
      raise ValueError(
          f"`x` must be [..., N, N] square distance matrices with "
          f"`distance_matrix=True`, got shape {x.shape}.")
  elif x.ndim < 2:
    raise ValueError(
        f"`points` must be [..., N, D] point clouds (for a distance matrix pass "
        f"`distance_matrix=True`), got shape {x.shape}.")
  n = x.shape[-2]
  if not 1 <= n <= _MAX_POINTS:
    raise ValueError(
        f"`{name}` must hold 1 <= N <= {_MAX_POINTS} points (int32 flat indices "
        f"into the N x N distance matrix), got N = {n} (shape {x.shape}).")
  _raise_if_bad_rips_values(x, distance_matrix)
  return _rips_h0(x, distance_matrix=bool(distance_matrix))


# ---------------------------------------------------------------------------
# Lower-star graph persistence.


def _find(parent: jax.Array, x: jax.Array):
  """Root of `x`, with path halving; returns the updated `parent` and the root."""
  def not_root(carry):
    parent, y = carry
    return parent[y] != y

  def halve(carry):
    parent, y = carry
    grandparent = parent[parent[y]]
    return parent.at[y].set(grandparent), grandparent

  return lax.while_loop(not_root, halve, (parent, x))


def _graph_single(values: jax.Array, edges: jax.Array, node_mask: jax.Array) -> Diagram:
  """Lower-star H0 and H1 of one graph: `[N]` values, `[E, 2]` edges, `[N]` mask."""
  n, e = values.shape[0], edges.shape[0]
  f = lax.stop_gradient(values)
  node = jnp.arange(n, dtype=jnp.int32)
  edge = jnp.arange(e, dtype=jnp.int32)

  # Which rows are edges of the simplicial complex.
  lo = jnp.minimum(edges[:, 0], edges[:, 1])
  hi = jnp.maximum(edges[:, 0], edges[:, 1])
  padding = lo < 0
  out_of_range = ~padding & (hi >= n)
  a, b = jnp.clip(lo, 0, n - 1), jnp.clip(hi, 0, n - 1)
  use = ~padding & ~out_of_range & (a != b) & node_mask[a] & node_mask[b]
  # Repeats of an edge (either orientation) after its first occurrence: sort
  # the kept rows first, by (a, b, row), and compare neighbours.
  perm = jnp.lexsort((edge, b, a, ~use))
  sa, sb, su = a[perm], b[perm], use[perm]
  repeat = (edge > 0) & su & (sa == jnp.roll(sa, 1)) & (sb == jnp.roll(sb, 1)) & jnp.roll(su, 1)
  use = use & ~jnp.zeros((e,), bool).at[perm].set(repeat)

  # An edge enters at its larger endpoint (ties: the larger index, a <= b).
  top = jnp.where(f[a] > f[b], a, b)
  order = jnp.argsort(jnp.where(use, f[top], jnp.inf), stable=True)

  def older_than(u, v):
    return (f[u] < f[v]) | ((f[u] == f[v]) & (u < v))

  def step(k, carry):
    parent, killer, cycle = carry
    i = order[k]
    parent, ra = _find(parent, a[i])
    parent, rb = _find(parent, b[i])
    merge = use[i] & (ra != rb)
    a_older = older_than(ra, rb)
    older, younger = jnp.where(a_older, ra, rb), jnp.where(a_older, rb, ra)
    parent = parent.at[younger].set(jnp.where(merge, older, parent[younger]))
    killer = killer.at[younger].set(jnp.where(merge, top[i], killer[younger]))
    cycle = cycle.at[i].set(use[i] & (ra == rb))
    return parent, killer, cycle

  init = (node, jnp.full((n,), -1, jnp.int32), jnp.zeros((e,), bool))
  if e:  # (a zero-trip loop is still traced, and indexing an empty `order` fails)
    _, killer, cycle = lax.fori_loop(0, e, step, init)
  else:
    _, killer, cycle = init

  valid0 = node_mask
  finite0 = valid0 & (killer >= 0)
  h0 = dict(
      birth=gather_values(values, node, valid0),
      death=jnp.where(finite0, gather_values(values, killer, finite0),
                      jnp.where(valid0, jnp.inf, 0)).astype(values.dtype),
      birth_index=jnp.where(valid0, node, -1),
      death_index=jnp.where(finite0, killer, -1),
      dim=jnp.where(valid0, 0, -1).astype(jnp.int32),
      valid=valid0)
  h1 = dict(
      birth=gather_values(values, top, cycle),
      death=jnp.where(cycle, jnp.inf, 0).astype(values.dtype),
      birth_index=jnp.where(cycle, top, -1),
      death_index=jnp.full((e,), -1, jnp.int32),
      dim=jnp.where(cycle, 1, -1).astype(jnp.int32),
      valid=cycle)
  return Diagram(
      **{name: jnp.concatenate([h0[name], h1[name]]) for name in h0},
      overflow=jnp.zeros((), bool),
      nonfinite=jnp.any(node_mask & ~jnp.isfinite(values)) | jnp.any(out_of_range))


@jax.jit
def _graph_persistence(values, edges, node_mask) -> Diagram:
  batch_shape = values.shape[:-1]
  if not batch_shape:
    return _graph_single(values, edges, node_mask)
  flat = lambda x, k: x.reshape((-1,) + x.shape[x.ndim - k:])
  shared_edges = edges.ndim == 2
  shared_mask = node_mask.ndim == 1
  out = jax.vmap(_graph_single, in_axes=(0, None if shared_edges else 0,
                                         None if shared_mask else 0))(
      flat(values, 1), edges if shared_edges else flat(edges, 2),
      node_mask if shared_mask else flat(node_mask, 1))
  return _unflatten(out, batch_shape)


def _check_graph_inputs(node_values, edges, node_mask):
  node_values, edges = jnp.asarray(node_values), jnp.asarray(edges)
  checks.check_floating(node_values, "node_values")
  checks.check_integer(edges, "edges")
  if node_values.ndim < 1 or node_values.shape[-1] == 0:
    raise ValueError(
        f"`node_values` must be [..., N] with N >= 1 nodes, got shape {node_values.shape}.")
  batch_shape, n = node_values.shape[:-1], node_values.shape[-1]
  if edges.ndim < 2 or edges.shape[-1] != 2 or edges.shape[:-2] not in ((), batch_shape):
    raise ValueError(
        f"`edges` must be [E, 2] or [..., E, 2] with the batch shape of "
        f"`node_values` ({batch_shape}), one row (u, v) per edge (a PyG "
        f"`edge_index` is [2, E]: pass `edge_index.T`), got shape {edges.shape}.")
  if n > 2**31 - 1:
    raise ValueError(f"`node_values` has too many nodes for int32 indices: N = {n}.")
  edges = edges.astype(jnp.int32)
  if node_mask is None:
    node_mask = jnp.ones((n,), bool)
  else:
    node_mask = jnp.asarray(node_mask)
    if node_mask.dtype != bool or node_mask.shape not in ((n,), node_values.shape):
      raise ValueError(
          f"`node_mask` must be bool with shape (N,) = ({n},) or "
          f"{node_values.shape} (that of `node_values`), got {node_mask.dtype} "
          f"{node_mask.shape}.")
  if not _is_traced(node_values) and not _is_traced(node_mask):
    unmasked = jnp.broadcast_to(node_mask, node_values.shape)
    if not bool(jnp.all(jnp.isfinite(node_values) | ~unmasked)):
      raise ValueError("`node_values` must be finite; got NaN or inf values.")
  if not _is_traced(edges) and bool(
      jnp.any((jnp.max(edges, axis=-1) >= n) & (jnp.min(edges, axis=-1) >= 0))):
    raise ValueError(
        f"`edges` index nodes out of range: N = {n} nodes take indices in "
        f"[0, {n - 1}] (rows with a negative entry are padding).")
  return node_values, edges, node_mask


def graph_persistence(node_values: jax.Array, edges: jax.Array, *,
                      node_mask: jax.Array | None = None) -> Diagram:
  r"""Lower-star persistence (H0 and H1) of a graph, as in TOGL.

  Node v enters the filtration at $f(v)$ and edge (u, v) at
  $\max(f(u), f(v))$. Edges are sorted once by value (ties: edge order) and
  swept by a union-find in a `lax.fori_loop` (path halving in a
  `lax.while_loop`) with the **elder rule**: when an edge joins two components,
  the one with the larger minimum dies (ties: the larger node index), so every
  node v owns one H0 pair

  $$\bigl(f(v),\; \max(f(u), f(w))\bigr)\quad\text{or}\quad(f(v), +\infty),$$

  the edge (u, w) being the one that merged v's component into an older one,
  and the component's oldest node keeping an essential class. Nodes that join
  an existing component on entry get zero-length pairs (GUDHI lists them with
  `min_persistence=-1`). Every edge that closes a cycle (its endpoints already
  connected) creates an essential H1 class $(\max(f(u), f(w)), +\infty)$: a
  graph has no 2-cells, so cycles never die.

  **Layout.** Capacity N + E: slot v < N holds node v's H0 pair (all valid
  unless masked); slot N + e holds the H1 class of edge e when it closes a
  cycle (otherwise padding). Never overflows.

  **Indices and gradients.** Indices point into `node_values`: `birth_index`
  of an H0 pair is v itself, `death_index` (and an H1 class's `birth_index`) is
  the endpoint of the edge with the larger value (ties: the larger index), so
  gradients flow one-hot to node values. Essential classes have death +inf and
  `death_index` -1.

  **Edges.** `edges` rows (u, v) are undirected. As in a simplicial complex,
  self-loops (u, u) are ignored, and so are repeats of an edge after its first
  occurrence in either orientation, so a PyG `edge_index` holding both
  directions can be passed as it is (TOGL drops the reversed copies first).
  Rows with a negative entry are padding, and so are edges touching a node
  outside `node_mask` (masked nodes get padding slots), so a batch of
  different-sized graphs can be padded to common N and E and `vmap`-ed.

  **Bad values.** Under `jit`/`vmap`, NaN or ±inf node values (unmasked) and
  edge indices >= N set the diagram's `nonfinite` flag; eager calls raise.

  Args:
    node_values: `[..., N]` floating node values f (leading axes are batch
      axes, e.g. TOGL's several filtrations of one graph).
    edges: `[E, 2]` integer edge list shared by the batch, or `[..., E, 2]`
      with the batch shape of `node_values`.
    node_mask: optional bool `[N]` or `[..., N]`: which nodes exist.

  Returns:
    A `Diagram` with capacity N + E (batch axes kept), in the dtype of
    `node_values`: H0 pairs (`dim` 0) in slots [0, N), H1 classes (`dim` 1) in
    slots [N, N + E). For a superlevel filtration pass `-node_values` and negate
    the values back.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.ph import graph_persistence
    >>> f = jnp.array([0.0, 2.0, 1.0, 3.0])      # a 4-cycle 0-1-2-3-0
    >>> edges = jnp.array([[0, 1], [1, 2], [2, 3], [3, 0]])
    >>> dgm = graph_persistence(f, edges)
    >>> dgm.to_numpy().tolist()  # rows [dim, birth, death]
    [[0.0, 0.0, inf], [0.0, 1.0, 2.0], [0.0, 2.0, 2.0], [0.0, 3.0, 3.0], [1.0, 3.0, inf]]
    >>> dgm.death_index[:4].tolist(), dgm.valid[4:].tolist()
    ([-1, 1, 1, 3], [False, False, False, True])

  References:
    Horn, Brouwer, Moor, Moreau, Rieck and Borgwardt, "Topological Graph Neural
    Networks", ICLR 2022.
    Edelsbrunner and Harer, "Computational Topology: An Introduction", AMS
    2010 (elder rule, VII.1).
  """
  node_values, edges, node_mask = _check_graph_inputs(node_values, edges, node_mask)
  return _graph_persistence(node_values, edges, node_mask)


def graph_persistence_togl(node_values: jax.Array, edges: jax.Array, *,
                           node_mask: jax.Array | None = None
                           ) -> tuple[jax.Array, jax.Array]:
  r"""`graph_persistence` in TOGL's layout: one (birth, death) tuple per node and edge.

  TOGL (`torch_persistent_homology`'s `compute_persistence_homology_batched_mt`)
  returns `persistence0` `[N, 2]`, the H0 pair of each node, and
  `persistence1` `[E, 2]`, a pair for each cycle-closing edge and (0, 0) for
  the others, and replaces the infinite deaths of essential classes by one
  finite "unpaired value". The same here:

  * row v of `pairs0`: $(f(v), d_v)$ with $d_v$ the death of node v's H0 pair,
    or the unpaired value $u = \max_v f(v)$ if it is essential;
  * row e of `pairs1`: $(\max(f(a), f(b)), u)$ if edge e = (a, b) closes a
    cycle, else (0, 0).

  u is TOGL's unpaired value (the largest edge value) whenever every node has
  an edge; the gradient of u flows to one node holding the maximum, as in
  TOGL. Masked nodes and ignored edges (self-loops, repeats, padding) give
  (0, 0) rows. Pairs equal TOGL's up to which node of a tie (equal values)
  owns a pair: TOGL breaks ties by edge orientation, this routine by node
  index. The differences to TOGL's edge handling are documented in
  `graph_persistence`: TOGL keeps self-loops as cycles.

  Args:
    node_values: `[..., N]` floating node values (leading axes are batch axes).
    edges: `[E, 2]` or `[..., E, 2]` integer edge list.
    node_mask: optional bool `[N]` or `[..., N]`: which nodes exist.

  Returns:
    `(pairs0, pairs1)`: `[..., N, 2]` and `[..., E, 2]` (birth, death) rows,
    differentiable in `node_values`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from topojax.ph import graph_persistence_togl
    >>> f = jnp.array([0.0, 2.0, 1.0, 3.0])
    >>> edges = jnp.array([[0, 1], [1, 2], [2, 3], [3, 0]])
    >>> pairs0, pairs1 = graph_persistence_togl(f, edges)
    >>> pairs0.tolist()
    [[0.0, 3.0], [2.0, 2.0], [1.0, 2.0], [3.0, 3.0]]
    >>> pairs1.tolist()
    [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [3.0, 3.0]]

  References:
    Horn et al., "Topological Graph Neural Networks", ICLR 2022
    (github.com/BorgwardtLab/TOGL).
  """
  node_values, edges, node_mask = _check_graph_inputs(node_values, edges, node_mask)
  return _togl_tuples(_graph_persistence(node_values, edges, node_mask),
                      node_values.shape[-1])


@functools.partial(jax.jit, static_argnames=("n",))
def _togl_tuples(dgm: Diagram, n: int) -> tuple[jax.Array, jax.Array]:
  birth0, death0, valid0 = dgm.birth[..., :n], dgm.death[..., :n], dgm.valid[..., :n]
  # Every unmasked node has an H0 slot whose birth is its value: u = max birth.
  top = jnp.argmax(jnp.where(valid0, birth0, -jnp.inf), axis=-1)
  unpaired = jnp.take_along_axis(birth0, top[..., None], axis=-1)
  death0 = jnp.where(jnp.isinf(death0), unpaired, death0)
  pairs0 = jnp.where(valid0[..., None], jnp.stack([birth0, death0], axis=-1), 0)
  birth1, valid1 = dgm.birth[..., n:], dgm.valid[..., n:]
  pairs1 = jnp.stack([birth1, jnp.broadcast_to(unpaired, birth1.shape)], axis=-1)
  pairs1 = jnp.where(valid1[..., None], pairs1, 0)
  return pairs0.astype(dgm.birth.dtype), pairs1.astype(dgm.birth.dtype)
