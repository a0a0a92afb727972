"""Tests for `topojax.ph.rips_h0` and `graph_persistence`.

Rips H0 against giotto-ph, scipy's minimum spanning tree and GUDHI's
RipsComplex; graph persistence against GUDHI's SimplexTree (lower-star), a
pure-Python union-find and a transcription of TOGL's pairing.
"""

from __future__ import annotations

import gph
import gudhi
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import cdist

from topojax import ph
from topojax.ph._diagram import gather_values

# ---------------------------------------------------------------------------
# Rips H0: references.


def _gph_deaths(x, distance_matrix=False):
  """giotto-ph's H0 deaths (it omits zero-length bars)."""
  kwargs = {"metric": "precomputed"} if distance_matrix else {}
  return np.sort(gph.ripser_parallel(np.asarray(x, np.float64), maxdim=0, **kwargs)["dgms"][0][:, 1])


def _scipy_mst(dist):
  """MST edges (i < j) and lengths.

  scipy reads (near-)zero entries as missing edges, so duplicate points would
  be disconnected: shift every edge by 1 (the MST is invariant to a constant).
  """
  n = dist.shape[0]
  graph = dist + 1.0
  np.fill_diagonal(graph, 0)
  mst = minimum_spanning_tree(graph).tocoo()
  lengths = mst.data - 1.0
  i, j = np.minimum(mst.row, mst.col), np.maximum(mst.row, mst.col)
  assert len(lengths) == n - 1
  return i, j, lengths


def _gudhi_deaths(points):
  """GUDHI Rips H0 deaths, zero-length bars included."""
  tree = gudhi.RipsComplex(points=np.asarray(points, np.float64)).create_simplex_tree(
      max_dimension=1)
  pairs = tree.persistence(min_persistence=-1, persistence_dim_max=True)
  return np.sort([death for dim, (_, death) in pairs if dim == 0])


def _check_rips(points):
  """rips_h0 on points and on their distance matrix against all three references."""
  points = np.asarray(points, np.float32)
  n = points.shape[0]
  dgm = ph.rips_h0(points)
  deaths = np.asarray(dgm.death, np.float64)
  assert dgm.capacity == n and bool(dgm.valid.all()) and not bool(dgm.overflow)
  assert not bool(dgm.nonfinite)
  np.testing.assert_array_equal(dgm.birth, 0)
  np.testing.assert_array_equal(dgm.dim, 0)
  np.testing.assert_array_equal(dgm.birth_index, np.arange(n) * (n + 1))
  assert np.isinf(deaths[0]) and np.isfinite(deaths[1:]).all()
  tol = dict(rtol=1e-5, atol=1e-6)

  finite = np.sort(deaths[1:])
  np.testing.assert_allclose(finite[finite > 0], _gph_deaths(points)[:-1], **tol)
  assert np.isinf(_gph_deaths(points)[-1])
  np.testing.assert_allclose(np.sort(deaths), _gudhi_deaths(points), **tol)
  dist = cdist(points.astype(np.float64), points.astype(np.float64))
  np.testing.assert_allclose(finite, np.sort(_scipy_mst(dist)[2]), **tol)

  # The indices name MST edges (i < j) of the distance matrix, whose entries are the deaths.
  index = np.asarray(dgm.death_index)
  assert index[0] == -1
  i, j = np.divmod(index[1:], n)
  assert (0 <= i).all() and (i < j).all()
  np.testing.assert_allclose(deaths[1:], dist[i, j], **tol)
  np.testing.assert_allclose(
      gather_values(ph.pairwise_distances(points), dgm.death_index, dgm.finite)[1:],
      deaths[1:], **tol)
  # Each slot j >= 1 is the edge that attaches point j.
  assert ((i == np.arange(1, n)) | (j == np.arange(1, n))).all()

  on_matrix = ph.rips_h0(dist.astype(np.float32), distance_matrix=True)
  np.testing.assert_allclose(np.sort(np.asarray(on_matrix.death)), np.sort(deaths), **tol)


SHAPES = [(1, 2), (2, 3), (3, 1), (8, 2), (33, 3), (64, 4)]


@pytest.mark.parametrize("n, d", SHAPES)
def test_rips_h0_matches_gph_scipy_gudhi(n, d):
  rng = np.random.default_rng(n * 10 + d)
  for _ in range(2):
    _check_rips(rng.normal(size=(n, d)))
    _check_rips(rng.uniform(-5, 5, size=(n, d)))


@pytest.mark.parametrize("n, d", SHAPES)
def test_rips_h0_ties_and_duplicates(n, d):
  rng = np.random.default_rng(n + d)
  _check_rips(rng.integers(0, 3, size=(n, d)))  # integer grid: many equal edges
  _check_rips(rng.integers(0, 2, size=(n, d)))  # mostly duplicate points
  _check_rips(np.zeros((n, d)))  # all points equal
  base = rng.normal(size=(n, d))
  _check_rips(np.concatenate([base, base])[:n])  # exact duplicates


def test_rips_h0_one_and_two_points():
  one = ph.rips_h0(jnp.array([[1.0, 2.0]]))
  assert one.death.tolist() == [np.inf] and one.death_index.tolist() == [-1]
  assert one.birth_index.tolist() == [0] and one.birth.tolist() == [0.0]
  two = ph.rips_h0(jnp.array([[0.0, 0.0], [3.0, 4.0]]))
  assert two.death.tolist() == [np.inf, 5.0]
  assert two.death_index.tolist() == [-1, 1] and two.birth_index.tolist() == [0, 3]
  assert two.to_numpy().tolist() == [[0.0, 0.0, 5.0], [0.0, 0.0, np.inf]]
  matrix = ph.rips_h0(jnp.array([[0.0, 2.5], [2.5, 0.0]]), distance_matrix=True)
  assert matrix.death.tolist() == [np.inf, 2.5] and matrix.death_index.tolist() == [-1, 1]


def test_rips_h0_distance_matrix_reads_the_upper_triangle():
  rng = np.random.default_rng(0)
  dist = cdist(*(2 * [rng.normal(size=(12, 2))])).astype(np.float32)
  scrambled = np.triu(dist) + np.tril(rng.uniform(0, 0.01, size=(12, 12)), -1)
  np.fill_diagonal(scrambled, 0)
  a = ph.rips_h0(dist, distance_matrix=True)
  b = ph.rips_h0(scrambled.astype(np.float32), distance_matrix=True)
  for field in ("death", "death_index"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_rips_h0_infinite_distances_are_absent_edges():
  rng = np.random.default_rng(1)
  groups = [rng.normal(size=(k, 2)) + 10 * g for g, k in enumerate([4, 1, 6])]
  points = np.concatenate(groups)
  label = np.repeat(np.arange(3), [4, 1, 6])
  dist = cdist(points, points)
  dist[label[:, None] != label[None, :]] = np.inf
  dgm = ph.rips_h0(dist.astype(np.float32), distance_matrix=True)
  assert int(dgm.essential.sum()) == 3 and not bool(dgm.nonfinite)
  assert (np.asarray(dgm.death_index)[np.asarray(dgm.essential)] == -1).all()
  np.testing.assert_allclose(np.sort(np.asarray(dgm.death)),
                             _gph_deaths(dist, distance_matrix=True), rtol=1e-5)


def test_rips_h0_gradient_matches_the_mst():
  rng = np.random.default_rng(2)
  points = rng.normal(size=(40, 3))
  i, j, _ = _scipy_mst(cdist(points, points))
  unit = (points[i] - points[j]) / np.linalg.norm(points[i] - points[j], axis=1)[:, None]
  expected = np.zeros_like(points)
  np.add.at(expected, i, unit)
  np.add.at(expected, j, -unit)

  def total(x):
    dgm = ph.rips_h0(x)
    return jnp.sum(jnp.where(dgm.finite, dgm.death, 0.0))
  grad = jax.jit(jax.grad(total))(jnp.asarray(points, jnp.float32))
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)

  # On a distance matrix: one-hot at the upper-triangle entry of each MST edge.
  def total_matrix(d):
    dgm = ph.rips_h0(d, distance_matrix=True)
    return jnp.sum(jnp.where(dgm.finite, dgm.death, 0.0))
  grad_d = jax.grad(total_matrix)(jnp.asarray(cdist(points, points), jnp.float32))
  one_hot = np.zeros((40, 40))
  one_hot[i, j] = 1
  np.testing.assert_array_equal(grad_d, one_hot)


def test_rips_h0_gradient_is_finite_for_duplicate_points():
  points = jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
  grad = jax.grad(lambda x: jnp.sum(ph.rips_h0(x).death[1:] ** 2))(points)
  assert bool(jnp.all(jnp.isfinite(grad)))
  grad_d = jax.grad(lambda x: jnp.sum(ph.pairwise_distances(x)))(points)
  assert bool(jnp.all(jnp.isfinite(grad_d)))


def test_rips_h0_batches_jit_and_vmap():
  rng = np.random.default_rng(3)
  clouds = jnp.asarray(rng.normal(size=(2, 3, 9, 2)), jnp.float32)
  batched = ph.rips_h0(clouds)
  assert batched.death.shape == (2, 3, 9) and batched.overflow.shape == (2, 3)
  vmapped = jax.vmap(jax.vmap(ph.rips_h0))(clouds)
  jitted = jax.jit(ph.rips_h0)(clouds[1, 2])
  for field in ("death", "death_index", "birth_index"):
    one = ph.rips_h0(clouds[1, 2])
    np.testing.assert_array_equal(getattr(batched, field)[1, 2], getattr(one, field))
    np.testing.assert_array_equal(getattr(vmapped, field), getattr(batched, field))
    np.testing.assert_array_equal(getattr(jitted, field), getattr(one, field))
  matrices = ph.pairwise_distances(clouds)
  on_matrix = ph.rips_h0(matrices, distance_matrix=True)
  np.testing.assert_array_equal(on_matrix.death_index, batched.death_index)
  np.testing.assert_allclose(on_matrix.death, batched.death, rtol=1e-6)


def test_rips_h0_flags_bad_values_under_jit_and_raises_eagerly():
  points = np.random.default_rng(4).normal(size=(6, 2)).astype(np.float32)
  bad = points.copy()
  bad[2, 1] = np.nan
  with pytest.raises(ValueError, match="`points` must be finite"):
    ph.rips_h0(bad)
  assert bool(jax.jit(ph.rips_h0)(bad).nonfinite)
  assert not bool(jax.jit(ph.rips_h0)(points).nonfinite)
  bad[2, 1] = np.inf
  with pytest.raises(ValueError, match="`points` must be finite"):
    ph.rips_h0(bad)
  flags = jax.vmap(ph.rips_h0)(np.stack([points, bad])).nonfinite
  assert flags.tolist() == [False, True]

  dist = cdist(points, points).astype(np.float32)
  nan_dist = dist.copy()
  nan_dist[0, 3] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    ph.rips_h0(nan_dist, distance_matrix=True)
  flagged = jax.jit(ph.rips_h0, static_argnames="distance_matrix")(
      nan_dist, distance_matrix=True)
  assert bool(flagged.nonfinite)
  negative = dist.copy()
  negative[1, 2] = -1
  with pytest.raises(ValueError, match=">= 0"):
    ph.rips_h0(negative, distance_matrix=True)
  weighted = dist.copy()
  np.fill_diagonal(weighted, 0.5)
  with pytest.raises(ValueError, match="zero diagonal"):
    ph.rips_h0(weighted, distance_matrix=True)


def test_rips_h0_shape_and_dtype_errors():
  with pytest.raises(ValueError, match="`points` must have a floating dtype"):
    ph.rips_h0(np.zeros((4, 2), np.int32))
  with pytest.raises(ValueError, match=r"`points` must be \[..., N, D\]"):
    ph.rips_h0(jnp.zeros((4,)))
  with pytest.raises(ValueError, match="square"):
    ph.rips_h0(jnp.zeros((4, 3)), distance_matrix=True)
  with pytest.raises(ValueError, match="1 <= N"):
    ph.rips_h0(jnp.zeros((0, 3)))
  with pytest.raises(ValueError, match="1 <= N"):
    jax.eval_shape(ph.rips_h0, jax.ShapeDtypeStruct((50000, 2), jnp.float32))
  with pytest.raises(ValueError, match="`points` must have a floating dtype"):
    ph.pairwise_distances(np.zeros((3, 2), np.int32))


def test_rips_h0_low_precision_and_float64_inputs():
  points = np.random.default_rng(5).normal(size=(10, 2))
  half = ph.rips_h0(jnp.asarray(points, jnp.bfloat16))
  assert half.death.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.sort(np.asarray(half.death, np.float64))[:-1],
                             np.sort(_scipy_mst(cdist(points, points))[2]), rtol=2e-2)


@pytest.mark.slow
def test_rips_h0_thorough():
  rng = np.random.default_rng(6)
  for n in (17, 100, 257):
    for d in (1, 5):
      _check_rips(rng.normal(size=(n, d)))
      _check_rips(rng.integers(0, 4, size=(n, d)))
      _check_rips(np.round(rng.normal(size=(n, d)), 1))


# ---------------------------------------------------------------------------
# Graph persistence: references.


def _graph_reference(f, edges, mask=None):
  """Pure-Python lower-star union-find with the elder rule, slot by slot."""
  f = [float(v) for v in f]
  n, e = len(f), len(edges)
  mask = [True] * n if mask is None else [bool(m) for m in mask]
  seen, kept = set(), []
  for k, (u, v) in enumerate(edges):
    u, v = int(u), int(v)
    a, b = min(u, v), max(u, v)
    if a < 0 or a == b or not (mask[a] and mask[b]) or (a, b) in seen:
      continue
    seen.add((a, b))
    top = a if f[a] > f[b] else b
    kept.append((f[top], k, a, b, top))
  parent = list(range(n))

  def find(x):
    while parent[x] != x:
      x = parent[x]
    return x

  killer, cycle_top = [-1] * n, {}
  for _, k, a, b, top in sorted(kept):  # by value, then edge index
    ra, rb = find(a), find(b)
    if ra == rb:
      cycle_top[k] = top
      continue
    older, younger = sorted((ra, rb), key=lambda r: (f[r], r))
    parent[younger], killer[younger] = older, top
  slots = []
  for v in range(n):
    if not mask[v]:
      slots.append((0.0, 0.0, -1, -1, -1, False))
    elif killer[v] < 0:
      slots.append((f[v], np.inf, v, -1, 0, True))
    else:
      slots.append((f[v], f[killer[v]], v, killer[v], 0, True))
  for k in range(e):
    if k in cycle_top:
      slots.append((f[cycle_top[k]], np.inf, cycle_top[k], -1, 1, True))
    else:
      slots.append((0.0, 0.0, -1, -1, -1, False))
  return [np.array(column) for column in zip(*slots)] if slots else None


def _gudhi_graph(f, edges, mask=None):
  """GUDHI's lower-star persistence of the graph's 1-skeleton, all pairs."""
  tree = gudhi.SimplexTree()
  mask = np.ones(len(f), bool) if mask is None else np.asarray(mask)
  for v, value in enumerate(f):
    if mask[v]:
      tree.insert([v], filtration=float(value))
  for u, v in np.asarray(edges).tolist():
    if min(u, v) >= 0 and u != v and mask[u] and mask[v]:
      tree.insert([u, v], filtration=max(float(f[u]), float(f[v])))
  rows = [(dim, b, d) for dim, (b, d) in
          tree.persistence(min_persistence=-1, persistence_dim_max=True)]
  rows = np.array(rows, np.float64).reshape(-1, 3)
  return rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]


def _check_graph(f, edges, mask=None):
  f = np.asarray(f, np.float32)
  edges = np.asarray(edges, np.int32).reshape(-1, 2)
  dgm = ph.graph_persistence(f, edges, node_mask=mask)
  assert dgm.capacity == len(f) + len(edges)
  assert not bool(dgm.overflow) and not bool(dgm.nonfinite)
  ref = _graph_reference(f, edges, mask)
  for field, expected in zip(
      ("birth", "death", "birth_index", "death_index", "dim", "valid"), ref):
    np.testing.assert_array_equal(getattr(dgm, field), expected, err_msg=field)
  np.testing.assert_array_equal(dgm.to_numpy(), _gudhi_graph(f, edges, mask))
  return dgm


def test_graph_persistence_hand_cases():
  # A 4-cycle: one H0 class, one H1 class born when the last edge closes it.
  dgm = _check_graph([0.0, 2.0, 1.0, 3.0], [[0, 1], [1, 2], [2, 3], [3, 0]])
  assert dgm.death[:4].tolist() == [np.inf, 2.0, 2.0, 3.0]
  assert dgm.valid[4:].tolist() == [False, False, False, True]
  # Self-loops, both orientations, padding rows and an isolated node.
  dgm = _check_graph([1.0, 0.0, 2.0, 5.0],
                     [[0, 0], [0, 1], [1, 0], [-1, -1], [1, 2], [2, 1], [2, 0], [3, -1]])
  assert int(dgm.essential.sum()) == 3  # node 1's class, isolated node 3, cycle 0-1-2
  assert dgm.in_dim(1).tolist() == [False] * 10 + [True, False]
  # No edges: every node is its own essential class.
  dgm = _check_graph([3.0, 1.0, 2.0], np.zeros((0, 2), np.int32))
  assert dgm.death.tolist() == [np.inf] * 3
  # One node.
  dgm = _check_graph([4.0], [[0, 0]])
  assert dgm.death.tolist() == [np.inf, 0.0] and dgm.valid.tolist() == [True, False]


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(0, 3), min_size=8, max_size=8),
       edges=st.lists(st.tuples(st.integers(-1, 7), st.integers(-1, 7)),
                      min_size=14, max_size=14),
       mask=st.lists(st.booleans(), min_size=8, max_size=8))
def test_graph_persistence_matches_references(values, edges, mask):
  _check_graph(values, edges)
  _check_graph(values, edges, np.array(mask))


def test_graph_persistence_random_graphs():
  rng = np.random.default_rng(7)
  for n, e in [(5, 3), (20, 40), (50, 50), (60, 200)]:
    values = rng.integers(0, 6, size=n).astype(np.float32)
    _check_graph(values, rng.integers(0, n, size=(e, 2)))
    _check_graph(rng.normal(size=n), rng.integers(0, n, size=(e, 2)))
    # Essential H1 classes: kept edges - nodes + components (Euler characteristic).
    edges = rng.integers(0, n, size=(e, 2))
    dgm = ph.graph_persistence(rng.normal(size=n).astype(np.float32), edges)
    kept = len({(min(u, v), max(u, v)) for u, v in edges.tolist() if u != v})
    components = int((dgm.essential & dgm.in_dim(0)).sum())
    assert int(dgm.in_dim(1).sum()) == kept - n + components


def _togl_reference(f, edges):
  """TOGL's pairing (`compute_persistence_homology_batched_mt`), transcribed in NumPy.

  Union-find over edges stably sorted by value; of the two roots, the one with
  the smaller value stays (else the first endpoint's root dies); essential
  classes and cycles get the largest edge value as death; non-cycle edges (0, 0).
  """
  f = np.asarray(f, np.float64)
  edge_values = np.maximum(f[edges[:, 0]], f[edges[:, 1]])
  order = np.argsort(edge_values, kind="stable")
  unpaired = edge_values[order[-1]]
  parent = np.arange(len(f))

  def find(x):
    while parent[x] != x:
      x = parent[x]
    return x

  pairs0 = np.stack([f, np.zeros_like(f)], axis=1)
  pairs1 = np.zeros((len(edges), 2))
  for k in order:
    u, v = edges[k]
    younger, older = find(u), find(v)
    if younger == older:
      pairs1[k] = edge_values[k], unpaired
      continue
    if f[younger] < f[older]:
      younger, older = older, younger
    pairs0[younger, 1] = edge_values[k]
    parent[younger] = older
  roots = parent == np.arange(len(f))
  pairs0[roots, 1] = unpaired
  return pairs0, pairs1


def test_graph_persistence_togl_layout_matches_togl():
  rng = np.random.default_rng(8)
  for n, e in [(6, 9), (30, 45), (40, 120)]:
    values = rng.permutation(n).astype(np.float32)  # distinct: no tie conventions
    edges = np.stack([np.arange(n), rng.integers(0, n, size=n)], axis=1)  # every node has an edge
    edges = np.concatenate([edges, rng.integers(0, n, size=(e, 2))])
    edges = edges[edges[:, 0] != edges[:, 1]]
    edges = np.unique(np.sort(edges, axis=1), axis=0)  # TOGL's remove_duplicate_edges
    edges = rng.permutation(edges)
    pairs0, pairs1 = ph.graph_persistence_togl(values, edges)
    ref0, ref1 = _togl_reference(values, edges)
    np.testing.assert_array_equal(pairs0, ref0)
    np.testing.assert_array_equal(pairs1, ref1)
    # PyG's both-direction edge list gives the same tuples for the first copies.
    both = np.concatenate([edges, edges[:, ::-1]])
    p0, p1 = ph.graph_persistence_togl(values, both)
    np.testing.assert_array_equal(p0, ref0)
    np.testing.assert_array_equal(p1[:len(edges)], ref1)
    np.testing.assert_array_equal(p1[len(edges):], 0)


def test_graph_persistence_gradients_are_one_hot():
  rng = np.random.default_rng(9)
  n, e = 25, 40
  values = rng.normal(size=n).astype(np.float32)
  edges = rng.integers(0, n, size=(e, 2))
  _, _, birth_index, death_index, dim, valid = _graph_reference(values, edges)
  finite = valid & (death_index >= 0)
  expected = np.zeros(n)
  np.add.at(expected, death_index[finite], 1.0)
  np.add.at(expected, birth_index[finite], -1.0)
  cycles = valid & (dim == 1)
  np.add.at(expected, birth_index[cycles], 2.0)

  def loss(f):
    dgm = ph.graph_persistence(f, edges)
    persistence = jnp.sum(jnp.where(dgm.finite, dgm.death - dgm.birth, 0.0))
    return persistence + 2.0 * jnp.sum(jnp.where(dgm.in_dim(1), dgm.birth, 0.0))
  grad = jax.jit(jax.grad(loss))(jnp.asarray(values))
  np.testing.assert_array_equal(grad, expected)
  # TOGL tuples: every entry gathers one node value; essential deaths and cycle
  # deaths are the unpaired value u, the largest node value.
  togl_grad = jax.grad(lambda f: sum(jnp.sum(p) for p in ph.graph_persistence_togl(f, edges)))(
      jnp.asarray(values))
  expected = np.zeros(n)
  np.add.at(expected, birth_index[valid], 1.0)
  np.add.at(expected, death_index[finite], 1.0)
  expected[np.argmax(values)] += np.sum(valid & (death_index < 0))
  np.testing.assert_array_equal(togl_grad, expected)


def test_graph_persistence_batches_and_vmap():
  rng = np.random.default_rng(10)
  n, e = 12, 20
  values = rng.normal(size=(2, 3, n)).astype(np.float32)
  edges = rng.integers(-1, n, size=(e, 2)).astype(np.int32)
  mask = rng.random(n) > 0.2
  shared = ph.graph_persistence(values, edges, node_mask=mask)
  assert shared.death.shape == (2, 3, n + e) and shared.nonfinite.shape == (2, 3)
  per_edges = ph.graph_persistence(values, np.broadcast_to(edges, (2, 3, e, 2)),
                                   node_mask=np.broadcast_to(mask, (2, 3, n)))
  vmapped = jax.vmap(jax.vmap(lambda f: ph.graph_persistence(f, edges, node_mask=mask)))(values)
  for field in ("birth", "death", "birth_index", "death_index", "valid", "dim"):
    one = ph.graph_persistence(values[1, 2], edges, node_mask=mask)
    np.testing.assert_array_equal(getattr(shared, field)[1, 2], getattr(one, field))
    np.testing.assert_array_equal(getattr(per_edges, field), getattr(shared, field))
    np.testing.assert_array_equal(getattr(vmapped, field), getattr(shared, field))
  p0, p1 = ph.graph_persistence_togl(values, edges, node_mask=mask)
  assert p0.shape == (2, 3, n, 2) and p1.shape == (2, 3, e, 2)
  q0, q1 = ph.graph_persistence_togl(values[0, 1], edges, node_mask=mask)
  np.testing.assert_array_equal(p0[0, 1], q0)
  np.testing.assert_array_equal(p1[0, 1], q1)


def test_graph_persistence_flags_and_errors():
  values = np.array([0.0, 1.0, 2.0], np.float32)
  edges = np.array([[0, 1], [1, 2]], np.int32)
  jitted = jax.jit(ph.graph_persistence)
  assert not bool(jitted(values, edges).nonfinite)
  with pytest.raises(ValueError, match="`node_values` must be finite"):
    ph.graph_persistence(np.array([0.0, np.nan, 1.0], np.float32), edges)
  assert bool(jitted(np.array([0.0, np.nan, 1.0], np.float32), edges).nonfinite)
  # A masked node's value is never read.
  masked = ph.graph_persistence(np.array([0.0, 1.0, np.nan], np.float32), edges,
                                node_mask=np.array([True, True, False]))
  assert not bool(masked.nonfinite)
  with pytest.raises(ValueError, match="out of range"):
    ph.graph_persistence(values, np.array([[0, 3]]))
  assert bool(jitted(values, np.array([[0, 3]])).nonfinite)
  with pytest.raises(ValueError, match="`node_values` must have a floating dtype"):
    ph.graph_persistence(np.array([0, 1, 2]), edges)
  with pytest.raises(ValueError, match="`edges` must have an integer dtype"):
    ph.graph_persistence(values, edges.astype(np.float32))
  with pytest.raises(ValueError, match=r"edge_index\.T"):
    ph.graph_persistence(values, np.zeros((2, 5), np.int32))
  with pytest.raises(ValueError, match="N >= 1"):
    ph.graph_persistence(np.zeros((0,), np.float32), edges)
  with pytest.raises(ValueError, match="`node_mask` must be bool"):
    ph.graph_persistence(values, edges, node_mask=np.ones(3, np.int32))
  with pytest.raises(ValueError, match="batch shape"):
    ph.graph_persistence(np.zeros((2, 3), np.float32), np.zeros((3, 4, 2), np.int32))


@pytest.mark.slow
def test_graph_persistence_thorough():
  rng = np.random.default_rng(11)
  for n, e in [(100, 150), (200, 600), (300, 300)]:
    for _ in range(3):
      _check_graph(rng.integers(0, 10, size=n), rng.integers(-1, n, size=(e, 2)),
                   rng.random(n) > 0.1)
      _check_graph(rng.normal(size=n), rng.integers(0, n, size=(e, 2)))
