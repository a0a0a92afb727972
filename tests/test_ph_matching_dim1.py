"""3D dimension-1 Betti matching (the host matrix reduction).

No installable oracle computes Betti-Matching-3D's dimension-1 matching, so:
the reduction's own pairs equal cripser's; the same induced-matching code run
on dimension 0 (edges over pixels) equals the NumPy replica of
Betti-Matching-3D pixel for pixel, ties included; and hand-built tunnels are
matched or not as the geometry says.
"""

from __future__ import annotations

import cripser
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bm_reference
from topojax.ph import _matching_dim1 as dim1
from topojax.ph import betti_matching


def _volumes(shape, seed):
  rng = np.random.default_rng(seed)
  noise = rng.random(shape)
  return [noise, np.round(rng.random(shape) * 3) / 3, (rng.random(shape) > 0.5) * 1.0]


@pytest.mark.parametrize("shape", [(1, 5, 6), (3, 4, 5), (5, 6, 7), (8, 7, 9)])
def test_own_pairs_equal_cripser(shape):
  for x in _volumes(shape, seed=sum(shape)):
    pairs, _, matches = dim1.matching_dim1(x, x, "union")
    ours = sorted((x.flat[b], x.flat[d]) for b, d in pairs)
    rows = cripser.compute_ph(x, maxdim=2)
    rows = rows[rows[:, 0] == 1]
    assert ours == sorted((b, d) for b, d in rows[:, 1:3] if b != d)
    # A volume against itself: every pair matched to itself.
    np.testing.assert_array_equal(matches, np.stack([np.arange(len(pairs))] * 2, axis=1))


def _dimension0_levels(x):
  """`induced_matching`'s input for dimension 0: edges over pixels."""
  ndim, n = x.ndim, x.size
  pixel = np.arange(n).reshape(x.shape)
  faces, index, value = [], [], []
  for k in range(ndim):
    near = pixel.take(np.arange(x.shape[k] - 1), axis=k).reshape(-1)
    far = pixel.take(np.arange(1, x.shape[k]), axis=k).reshape(-1)
    faces.append(np.stack([near, far], axis=1))
    index.append(near * ndim + k)
    value.append(np.maximum(x.flat[near], x.flat[far]))
  faces, index, value = (np.concatenate(a) for a in (faces, index, value))
  column_order = np.lexsort((index, value))
  return faces, dim1.Level(column_order, dim1._ranks(value, index), value,
                           dim1._ranks(x.reshape(-1), np.arange(n)), x.reshape(-1))


def _parent_voxel(x, pixels):
  values = x.flat[pixels]
  return int(min(p for p, v in zip(pixels, values) if v == values.max()))


@pytest.mark.parametrize("shape", [(6, 7), (3, 4, 5)])
@pytest.mark.parametrize("comparison", ["union", "intersection"])
def test_induced_matching_equals_betti_matching_3d_in_dimension_0(shape, comparison):
  rng = np.random.default_rng(len(shape))
  cases = [(rng.random(shape), rng.random(shape)),
           (np.round(rng.random(shape) * 3) / 3, np.round(rng.random(shape) * 2) / 2),
           (rng.random(shape), (rng.random(shape) > 0.5) * 1.0)]
  for p, g in cases:
    c = np.minimum(p, g) if comparison == "union" else np.maximum(p, g)
    built = [_dimension0_levels(x) for x in (p, g, c)]
    faces = built[0][0]
    own_p, own_g, matches = dim1.induced_matching(faces, tuple(b[1] for b in built),
                                                  comparison)
    pairs = lambda x, own: {e: (v, _parent_voxel(x, faces[e])) for e, v in own.items()}
    pairs_p, pairs_g = pairs(p, own_p), pairs(g, own_g)
    ref_p, ref_g, ref_matches = bm_reference.matching(p, g, dim=0, comparison=comparison)
    assert sorted(pairs_p.values()) == sorted(ref_p)
    assert sorted(pairs_g.values()) == sorted(ref_g)
    assert sorted(pairs_p[a] + pairs_g[b] for a, b in matches.items()) == sorted(
        ref_p[a] + ref_g[b] for a, b in ref_matches)


def _ring(shape, center, radius=2):
  """A square tunnel of low voxels (0) in a high volume (1), in the plane z = center[0]."""
  x = np.ones(shape, np.float32)
  z, y0, x0 = center
  x[z, y0 - radius:y0 + radius + 1, x0 - radius] = 0
  x[z, y0 - radius:y0 + radius + 1, x0 + radius] = 0
  x[z, y0 - radius, x0 - radius:x0 + radius + 1] = 0
  x[z, y0 + radius, x0 - radius:x0 + radius + 1] = 0
  return x


@pytest.mark.parametrize("comparison", ["union", "intersection"])
def test_tunnels_match_where_they_overlap(comparison):
  shape = (5, 12, 12)
  here, shifted, elsewhere = (_ring(shape, (2, 4, 4)), _ring(shape, (2, 4, 5)),
                              _ring(shape, (2, 8, 8)))
  pred = np.stack([here, here, here, here])
  target = np.stack([here, shifted, elsewhere, np.ones(shape, np.float32)])
  m = betti_matching(pred, target, filtration="sublevel", comparison=comparison, dims=(1,))
  assert np.asarray(m.pred.valid.sum(1)).tolist() == [1, 1, 1, 1]
  assert np.asarray(m.target.valid.sum(1)).tolist() == [1, 1, 1, 0]
  # Identical tunnels are matched. Shifted by one, the union still loops
  # through both, while the intersection keeps only two parallel walls (no
  # loop). Disjoint tunnels and a missing one are never matched.
  expected = [1, 1, 0, 0] if comparison == "union" else [1, 0, 0, 0]
  assert np.asarray(m.num_matched).tolist() == expected


def test_dims_0_1_2_together_and_gradient():
  pred = jnp.asarray(np.random.default_rng(0).random((2, 4, 5, 6)), jnp.float32)
  target = jnp.asarray(np.random.default_rng(1).random((2, 4, 5, 6)) > 0.5, jnp.float32)
  every = betti_matching(pred, target, dims=(0, 1, 2))
  for dim in (0, 1, 2):
    alone = betti_matching(pred, target, dims=(dim,))
    np.testing.assert_array_equal(
        np.sort(np.asarray(every.pred.persistence)[np.asarray(every.pred.in_dim(dim))]),
        np.sort(np.asarray(alone.pred.persistence)[np.asarray(alone.pred.in_dim(dim))]))
  grad = jax.jit(jax.grad(lambda p: jnp.sum(
      betti_matching(p, target, dims=(1,)).pred.persistence,
      where=betti_matching(p, target, dims=(1,)).pred.valid)))(pred)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
