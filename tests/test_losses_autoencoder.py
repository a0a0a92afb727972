"""Tests for `topojax.losses.topological_autoencoder` (Moor et al. 2020).

References: hand-computed cases, a numpy transcription of the original's
pairing (`src/topology.py`, `PersistentHomologyCalculation`: Kruskal over the
stable-sorted upper triangle with a union-find) and loss
(`src/models/approx_based.py`), scipy's minimum spanning tree, and a torch
replica of the original's forward pass for gradients.
"""

from __future__ import annotations

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.sparse.csgraph import minimum_spanning_tree

from topojax.losses import topological_autoencoder
from topojax.losses._autoencoder import topological_autoencoder_components

# ---------------------------------------------------------------------------
# The original, in numpy.


def _original_pairs(dist: np.ndarray) -> np.ndarray:
  """The original's 0-dim persistence pairs: Kruskal on the upper triangle.

  Edges (the diagonal included, as `np.triu_indices_from` lists it) are
  stable-sorted by length; an edge is a pair when it joins two components of a
  union-find. Returns `[B - 1, 2]` rows (i, j), i < j, in the order found.
  """
  n = dist.shape[0]
  parent = list(range(n))

  def find(u):
    root = u
    while parent[root] != root:
      root = parent[root]
    while parent[u] != root:  # path compression
      parent[u], u = root, parent[u]
    return root

  rows, cols = np.triu_indices_from(dist)
  pairs = []
  for k in np.argsort(dist[rows, cols], kind="stable"):
    u, v = int(rows[k]), int(cols[k])
    ru, rv = find(u), find(v)
    if ru == rv:
      continue
    # The original merges the younger (larger) root into the older one; the
    # direction does not change which edges are pairs.
    parent[max(ru, rv)] = min(ru, rv)
    pairs.append((min(u, v), max(u, v)))
  return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _distances(points: np.ndarray) -> np.ndarray:
  points = np.asarray(points, np.float64).reshape(len(points), -1)
  return np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)


def _original_loss(x, z, x_scale="max", latent_norm=1.0):
  """(loss, x_to_z, z_to_x, pairs_x, pairs_z) as the original computes them."""
  dx, dz = _distances(x), _distances(z)
  if x_scale == "max":
    dx = dx / dx.max()
  elif x_scale is not None:
    dx = dx / x_scale
  dz = dz / latent_norm
  px, pz = _original_pairs(dx), _original_pairs(dz)
  x_to_z = np.sum((dx[px[:, 0], px[:, 1]] - dz[px[:, 0], px[:, 1]]) ** 2)
  z_to_x = np.sum((dz[pz[:, 0], pz[:, 1]] - dx[pz[:, 0], pz[:, 1]]) ** 2)
  return (x_to_z + z_to_x) / len(x), x_to_z, z_to_x, px, pz


def _as_set(edges) -> set[tuple[int, int]]:
  return {tuple(int(v) for v in row) for row in np.asarray(edges)}


def _check_against_original(xs, zs, **kwargs):
  """Every batch of `xs` `[M, B, D]`, `zs` `[M, B, d]` against the original."""
  xs, zs = np.asarray(xs, np.float32), np.asarray(zs, np.float32)
  loss = np.asarray(topological_autoencoder(xs, zs, **kwargs))
  c = topological_autoencoder_components(xs, zs, **kwargs)
  assert loss.shape == xs.shape[:1]
  for m in range(len(xs)):
    want, x_to_z, z_to_x, px, pz = _original_loss(xs[m], zs[m], **kwargs)
    assert _as_set(c.edges_x[m]) == _as_set(px), m
    assert _as_set(c.edges_z[m]) == _as_set(pz), m
    assert int(c.matched_pairs[m]) == len(_as_set(px) & _as_set(pz))
    np.testing.assert_allclose(loss[m], want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(c.x_to_z[m], x_to_z, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(c.z_to_x[m], z_to_x, rtol=2e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Hand-computed cases.


def test_hand_computed_line():
  # x on a line: 0, 1, 3, 6 -> MST (0,1) 1, (1,2) 2, (2,3) 3.
  # z: 0, 3, 1, 6 -> MST (0,2) 1, (1,2) 2, (1,3) 3; shared edge (1, 2).
  x = np.array([[0.0], [1.0], [3.0], [6.0]], np.float32)
  z = np.array([[0.0], [3.0], [1.0], [6.0]], np.float32)
  c = topological_autoencoder_components(x, z, x_scale=None)
  assert _as_set(c.edges_x) == {(0, 1), (1, 2), (2, 3)}
  assert _as_set(c.edges_z) == {(0, 2), (1, 2), (1, 3)}
  # x_to_z: A_Z on (0,1), (1,2), (2,3) = 3, 2, 5: (1-3)^2 + 0 + (3-5)^2 = 8.
  # z_to_x: A_X on (0,2), (1,2), (1,3) = 3, 2, 5: (1-3)^2 + 0 + (3-5)^2 = 8.
  assert float(c.x_to_z) == 8.0 and float(c.z_to_x) == 8.0
  assert int(c.matched_pairs) == 1
  assert float(topological_autoencoder(x, z, x_scale=None)) == 4.0  # 16 / B
  # "max" scaling divides A_X by 6; latent_norm divides A_Z.
  # x_to_z = (1/6 - 3/2)^2 + (2/6 - 1)^2 + (3/6 - 5/2)^2, etc.
  a_x = {(0, 1): 1 / 6, (1, 2): 2 / 6, (2, 3): 3 / 6, (0, 2): 3 / 6, (1, 3): 5 / 6}
  a_z = {(0, 1): 3 / 2, (1, 2): 2 / 2, (2, 3): 5 / 2, (0, 2): 1 / 2, (1, 3): 3 / 2}
  want = (sum((a_x[e] - a_z[e]) ** 2 for e in [(0, 1), (1, 2), (2, 3)])
          + sum((a_z[e] - a_x[e]) ** 2 for e in [(0, 2), (1, 2), (1, 3)])) / 4
  got = float(topological_autoencoder(x, z, latent_norm=2.0))
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_hand_computed_square_ties_follow_kruskal_order():
  # A unit square: four edges of length 1 tie. Kruskal takes them in the order
  # (0,1), (0,2), (1,3), (2,3) (row-major) and keeps the first three.
  x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
  c = topological_autoencoder_components(x, x, x_scale=None)
  assert _as_set(c.edges_x) == {(0, 1), (0, 2), (1, 3)} == _as_set(_original_pairs(_distances(x)))
  # Stretch z along the second axis: (0,1), (2,3) keep length 1, (0,2), (1,3)
  # tie at 2. Kruskal takes (0,1), (2,3), then (0,2) before (1,3), which closes
  # a cycle.
  z = x * np.array([1.0, 2.0], np.float32)
  c = topological_autoencoder_components(x, z, x_scale=None)
  assert _as_set(c.edges_z) == {(0, 1), (2, 3), (0, 2)}
  # x_to_z on (0,1), (0,2), (1,3): 0 + (1-2)^2 + (1-2)^2 = 2.
  # z_to_x on (0,1), (2,3), (0,2): 0 + 0 + (2-1)^2 = 1.
  np.testing.assert_allclose([float(c.x_to_z), float(c.z_to_x)], [2.0, 1.0])
  np.testing.assert_allclose(float(topological_autoencoder(x, z, x_scale=None)), 3.0 / 4)


def test_single_point_and_two_points():
  one = np.zeros((1, 3), np.float32)
  assert float(topological_autoencoder(one, one[:, :2])) == 0.0
  x = np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)
  z = np.array([[0.0], [2.0]], np.float32)
  # One edge, in both trees: "max" scales A_X to 1; (1 - 2)^2 twice, / 2.
  assert float(topological_autoencoder(x, z)) == 1.0


# ---------------------------------------------------------------------------
# Against the original.


# Shapes are shared across tests (one compilation each): batches of M clouds
# [M, 12, 4] -> [M, 12, 2], and single clouds [12, 4] -> [12, 2].
M, B, D, d = 48, 12, 4, 2


def test_matches_original_on_random_clouds():
  rng = np.random.default_rng(0)
  xs = rng.normal(size=(M, B, D))
  zs = rng.normal(size=(M, B, d))
  _check_against_original(xs, zs)
  _check_against_original(xs, zs, x_scale=None, latent_norm=0.7)
  _check_against_original(xs, zs, x_scale=3.0)


def test_matches_original_with_duplicates_and_ties():
  rng = np.random.default_rng(1)
  # Integer grids: many equal lengths; repeated rows: zero lengths (three or
  # more coincident points tie among themselves).
  xs = rng.integers(-1, 2, size=(M, B, D)).astype(np.float32)
  zs = rng.integers(-2, 3, size=(M, B, d)).astype(np.float32)
  xs[:, 6:9] = xs[:, :1]
  zs[:, 3:5] = zs[:, 10:11]
  _check_against_original(xs, zs)
  _check_against_original(xs, zs, x_scale=None)


@hypothesis.settings(max_examples=30, deadline=None, derandomize=True)
@hypothesis.given(
    x=hnp.arrays(np.float32, (B, D), elements=st.integers(-1, 1).map(float)),
    z=hnp.arrays(np.float32, (B, d), elements=st.integers(-1, 1).map(float)))
def test_matches_original_hypothesis(x, z):
  want, x_to_z, z_to_x, px, pz = _original_loss(x, z, x_scale=None)
  c = topological_autoencoder_components(x, z, x_scale=None)
  assert _as_set(c.edges_x) == _as_set(px) and _as_set(c.edges_z) == _as_set(pz)
  np.testing.assert_allclose([c.x_to_z, c.z_to_x], [x_to_z, z_to_x], rtol=2e-5, atol=1e-6)


def test_mst_is_minimal_against_scipy():
  rng = np.random.default_rng(2)
  xs = rng.normal(size=(M, B, D)).astype(np.float32)
  c = topological_autoencoder_components(xs, xs[..., :d], x_scale=None)
  for m in range(len(xs)):
    dist = _distances(xs[m])
    # scipy drops zero entries: shift every edge by 1 (the MST is invariant).
    graph = dist + 1.0
    np.fill_diagonal(graph, 0)
    want = minimum_spanning_tree(graph).sum() - (len(dist) - 1)
    edges = np.asarray(c.edges_x[m])
    np.testing.assert_allclose(dist[edges[:, 0], edges[:, 1]].sum(), want, rtol=1e-5)


# ---------------------------------------------------------------------------
# Invariances.


def test_zero_for_isometric_latent():
  rng = np.random.default_rng(3)
  # x: planar clouds embedded in R^4; z: the same clouds rotated and shifted.
  planar = rng.normal(size=(M, B, d)).astype(np.float32)
  x = np.concatenate([planar, np.zeros((M, B, D - d), np.float32)], axis=-1)
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  z = (planar @ q.astype(np.float32) + np.float32(5.0)).astype(np.float32)
  np.testing.assert_allclose(topological_autoencoder(x, z, x_scale=None), 0, atol=1e-9)
  # "max" scaling: an isometric copy scaled by c, with latent_norm = c * max.
  for m in range(3):
    largest = _distances(x[m]).max()
    loss = topological_autoencoder(x[m], 2 * z[m], latent_norm=2 * largest)
    np.testing.assert_allclose(loss, 0, atol=1e-9)


def test_invariant_to_point_order():
  rng = np.random.default_rng(4)
  x = rng.normal(size=(B, D)).astype(np.float32)
  z = rng.normal(size=(B, d)).astype(np.float32)
  perm = rng.permutation(B)
  np.testing.assert_allclose(topological_autoencoder(x[perm], z[perm]),
                             topological_autoencoder(x, z), rtol=1e-6)


# ---------------------------------------------------------------------------
# Transformations and gradients.


def test_jit_vmap_and_leading_axes():
  rng = np.random.default_rng(5)
  xs = rng.normal(size=(2, 3, B, D)).astype(np.float32)
  zs = rng.normal(size=(2, 3, B, d)).astype(np.float32)
  loop = np.array([[float(topological_autoencoder(xs[i, j], zs[i, j])) for j in range(3)]
                   for i in range(2)])
  eager = topological_autoencoder(xs, zs)
  assert eager.shape == (2, 3)
  np.testing.assert_allclose(eager, loop, rtol=1e-6)
  flat_x, flat_z = xs.reshape(6, B, D), zs.reshape(6, B, d)
  np.testing.assert_allclose(jax.vmap(topological_autoencoder)(flat_x, flat_z),
                             loop.ravel(), rtol=1e-6)
  # Under jit, with latent_norm traced (a learnable parameter).
  f = jax.jit(lambda x, z, s: topological_autoencoder(x, z, latent_norm=s))
  np.testing.assert_allclose(f(xs[0, 0], zs[0, 0], jnp.float32(1.0)), loop[0, 0], rtol=1e-6)
  np.testing.assert_allclose(f(xs[0, 0], zs[0, 0], jnp.float32(2.0)),
                             topological_autoencoder(xs[0, 0], zs[0, 0], latent_norm=2.0),
                             rtol=1e-6)


def _torch_original_grads(x, z, latent_norm):
  """Gradients of the original's forward (torch autograd, float64)."""
  torch = pytest.importorskip("torch")
  tx = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
  tz = torch.tensor(np.asarray(z, np.float64), requires_grad=True)
  ts = torch.tensor([float(latent_norm)], dtype=torch.float64, requires_grad=True)
  dx = torch.norm(tx[:, None] - tx, dim=2, p=2)
  dx = dx / dx.max()
  dz = torch.norm(tz[:, None] - tz, dim=2, p=2) / ts
  px = _original_pairs(dx.detach().numpy())
  pz = _original_pairs(dz.detach().numpy())
  sig = lambda d, p: d[(p[:, 0], p[:, 1])]
  loss = (((sig(dx, px) - sig(dz, px)) ** 2).sum()
          + ((sig(dz, pz) - sig(dx, pz)) ** 2).sum()) / float(len(x))
  loss.backward()
  return float(loss.detach()), tx.grad.numpy(), tz.grad.numpy(), float(ts.grad[0])


@pytest.mark.slow  # importing torch takes seconds
def test_gradients_match_torch_original():
  rng = np.random.default_rng(6)
  for _ in range(3):
    x = rng.normal(size=(B, D)).astype(np.float32)
    z = rng.normal(size=(B, d)).astype(np.float32)
    s = np.float32(1.5)
    want_loss, gx, gz, gs = _torch_original_grads(x, z, s)
    loss, grads = jax.value_and_grad(
        lambda x, z, s: topological_autoencoder(x, z, latent_norm=s), argnums=(0, 1, 2))(
            x, z, s)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(grads[0], gx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[1], gz, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[2], gs, rtol=1e-4, atol=1e-5)


def test_finite_gradients_with_duplicates():
  rng = np.random.default_rng(7)
  x = rng.integers(-1, 2, size=(B, D)).astype(np.float32)
  z = rng.integers(-1, 2, size=(B, d)).astype(np.float32)
  x[:4] = x[4]
  z[2:9] = z[0]
  value_and_grad = jax.value_and_grad(
      lambda x, z, s: topological_autoencoder(x, z, latent_norm=s), argnums=(0, 1, 2))
  _, grads = value_and_grad(x, z, jnp.float32(1.0))
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  # All points coincide in both spaces: loss and gradients 0, not NaN.
  loss, grads = value_and_grad(np.zeros((B, D), np.float32), np.zeros((B, d), np.float32),
                               jnp.float32(1.0))
  assert float(loss) == 0.0
  assert all(np.all(np.asarray(g) == 0) for g in grads)


# ---------------------------------------------------------------------------
# Bad inputs.


def test_bad_inputs_name_the_argument():
  x = np.zeros((B, D), np.float32)
  z = np.zeros((B, d), np.float32)
  with pytest.raises(ValueError, match="`z` must have the batch shape"):
    topological_autoencoder(x, z[:4])
  with pytest.raises(ValueError, match="`z` must have the batch shape"):
    topological_autoencoder(np.zeros((2, B, D), np.float32), z)
  with pytest.raises(ValueError, match="`x` must be"):
    topological_autoencoder(x[0], z)
  with pytest.raises(ValueError, match="`z` must be"):
    topological_autoencoder(x, z[:, 0])
  with pytest.raises(ValueError, match="`x` must have a floating dtype"):
    topological_autoencoder(x.astype(np.int32), z)
  with pytest.raises(ValueError, match="`z` must have a floating dtype"):
    topological_autoencoder(x, z.astype(np.int32))
  with pytest.raises(ValueError, match="`x_scale`"):
    topological_autoencoder(x, z, x_scale="min")
  with pytest.raises(ValueError, match="`x_scale`"):
    topological_autoencoder(x, z, x_scale=0.0)
  with pytest.raises(ValueError, match="`latent_norm` must be finite and > 0"):
    topological_autoencoder(x, z, latent_norm=0.0)
  with pytest.raises(ValueError, match="`latent_norm` must be a positive real scalar"):
    topological_autoencoder(x, z, latent_norm=np.ones(2, np.float32))
  bad = x.copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match="`x` has NaN"):
    topological_autoencoder(bad, z)
  with pytest.raises(ValueError, match="`z` has NaN"):
    topological_autoencoder(z, bad)
  # The shape errors fire at trace time, under jit too.
  with pytest.raises(ValueError, match="`z` must have the batch shape"):
    jax.jit(topological_autoencoder)(x, z[:4])


def test_nonfinite_under_jit_gives_nan():
  x = np.arange(B * D, dtype=np.float32).reshape(B, D)
  z = np.ones((B, d), np.float32) * np.arange(B, dtype=np.float32)[:, None]
  bad = x.copy()
  bad[1, 1] = np.inf
  f = jax.jit(lambda x, s, t: topological_autoencoder(x, z, latent_norm=s, x_scale=t))
  one = jnp.float32(1.0)
  assert np.isnan(float(f(bad, one, one)))  # inf in x
  assert np.isnan(float(f(x, jnp.float32(-1.0), one)))  # latent_norm < 0
  assert np.isnan(float(f(x, one, jnp.float32(0.0))))  # x_scale 0
  assert float(f(x, one, jnp.float32(2.0))) == float(
      topological_autoencoder(x, z, x_scale=np.float32(2.0)))


def test_mixed_dtypes_are_promoted():
  x = np.random.default_rng(8).normal(size=(B, D)).astype(np.float32)
  z = x[:, :d].astype(jnp.bfloat16)
  loss = topological_autoencoder(x, z)
  assert loss.dtype == jnp.float32
