"""Parity of the exact `topojax.ect.ect` with MunchLab's `ect` package (1.3.0).

`ect` computes closed sublevel sets (h <= t, our `tie="closed"`), lower-star
heights and (-1)^k signs, exactly, as int32 `[directions, thresholds]`.
Conventions that would otherwise make the two disagree:

* its default thresholds are `linspace(-r, r, T)` with r the distance from the
  *bounding-box centre*, while heights are taken about the origin: we pass
  explicit thresholds (or centre the coordinates on the bounding box first);
* an `ECT` object caches its thresholds and directions from the first complex:
  a fresh `ECT` per complex;
* `Directions.uniform` is random for dim > 2: explicit vectors everywhere;
* explicit thresholds must be evenly spaced (then it bisects, h <= t exactly).

Coordinates are float32 numbers and thresholds dyadic (exact in both); where a
vertex height lies within 1e-5 of a threshold, float32 vs float64 rounding of
the height may flip the comparison, so those few entries are skipped; exact
ties are tested on small complexes with integer heights.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

ect_pkg = pytest.importorskip("ect")

from topojax.ect import ect as topo_ect  # noqa: E402


def munch_ect(points, cells, directions, thresholds=None, num_thresh=None, radius=None):
  """`ect.ECT` of one complex: nodes 0..N-1, `cells` a list of vertex tuples."""
  complex_ = ect_pkg.EmbeddedComplex()
  for i, p in enumerate(np.asarray(points, np.float64)):
    complex_.add_node(i, p)
  for cell in cells:
    if len(cell) == 2:
      complex_.add_edge(int(cell[0]), int(cell[1]))
    else:
      complex_.add_cell([int(c) for c in cell], dim=len(cell) - 1)
  dirs = ect_pkg.Directions.from_vectors(np.asarray(directions, np.float64))
  if thresholds is not None:
    calc = ect_pkg.ECT(directions=dirs, thresholds=np.asarray(thresholds, np.float64))
    return np.asarray(calc.calculate(complex_)), None
  complex_.center_coordinates("bounding_box")
  calc = ect_pkg.ECT(directions=dirs, num_thresh=num_thresh, bound_radius=radius)
  result = calc.calculate(complex_)
  return np.asarray(result), (complex_.coord_matrix, np.asarray(result.thresholds))


def ours(points, cells, directions, thresholds):
  by_size = {}
  for c in cells:
    by_size.setdefault(len(c), []).append(c)
  simplices = [np.asarray(by_size[k], np.int32) for k in sorted(by_size)]
  out = _ect_closed(np.asarray(points, np.float32), np.asarray(directions, np.float32),
                    np.asarray(thresholds, np.float32), *simplices)
  return np.asarray(out)


# Jitted: one compilation per shape is cheaper than eager op-by-op dispatch.
_ect_closed = jax.jit(lambda x, v, t, *simplices: topo_ect(x, *simplices, directions=v,
                                                          thresholds=t, tie="closed"))


def random_graph(rng, n, e, dim):
  x = rng.uniform(-1, 1, (n, dim)).astype(np.float32)
  a = rng.integers(0, n, 3 * e)
  b = rng.integers(0, n, 3 * e)
  pairs = np.unique(np.sort(np.stack([a, b], 1)[a != b], axis=1), axis=0)  # nx dedupes
  pairs = pairs[rng.permutation(len(pairs))[:e]]
  return x, [tuple(p) for p in pairs]


def random_directions(rng, num, dim):
  v = rng.standard_normal((num, dim))
  return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def dyadic_thresholds(x, directions, num):
  """`num` thresholds k * 2^-j covering the heights: exact in float32 and float64,
  so evenly spaced for both packages (`ect` requires spacing equal to 1e-12)."""
  h = x.astype(np.float64) @ directions.astype(np.float64).T
  step = 2.0 ** np.ceil(np.log2(2.05 * np.abs(h).max() / (num - 1)))
  return (np.arange(num) - (num - 1) / 2) * step


def assert_equal_away_from_ties(got, expected, x, directions, thresholds, eps=1e-5):
  """Equal wherever no vertex height is within `eps` of the threshold (float32 vs
  float64 heights may round across it there); such entries must be rare."""
  h = x.astype(np.float64) @ directions.astype(np.float64).T  # [N, D]
  near = (np.abs(h[:, :, None] - thresholds[None, None, :]) < eps).any(axis=0)  # [D, T]
  assert near.mean() < 0.01
  np.testing.assert_array_equal(np.where(near, 0, got), np.where(near, 0, expected))


@pytest.mark.parametrize("dim,n,e,num_dirs,num_thresh,seed", [
    (2, 30, 60, 16, 25, 0),
    (2, 200, 500, 32, 64, 1),
    (3, 50, 120, 24, 33, 2),
    (3, 300, 900, 48, 64, 3),
    (4, 40, 100, 8, 17, 4),
])
def test_random_graphs_match_munchlab(dim, n, e, num_dirs, num_thresh, seed):
  rng = np.random.default_rng(seed)
  x, edges = random_graph(rng, n, e, dim)
  v = random_directions(rng, num_dirs, dim)
  t = dyadic_thresholds(x, v, num_thresh)
  expected, _ = munch_ect(x, edges, v, thresholds=t)
  got = ours(x, edges, v, t)
  assert expected.shape == got.shape == (num_dirs, num_thresh)
  assert np.abs(expected).max() > 0
  assert_equal_away_from_ties(got, expected, x, v, t)


def test_random_complex_with_triangles_and_tetrahedra():
  rng = np.random.default_rng(5)
  x = rng.uniform(-1, 1, (25, 3)).astype(np.float32)
  tets = [tuple(sorted(rng.choice(25, 4, replace=False))) for _ in range(6)]
  cells = set()
  for tet in tets:  # the full closure: a simplicial complex with chi along every direction
    for k in (2, 3):
      cells.update(tuple(c[i] for i in idx) for c in [tet]
                   for idx in itertools.combinations(range(4), k))
    cells.add(tet)
  cells = sorted(cells, key=lambda c: (len(c), c))
  v = random_directions(rng, 20, 3)
  t = dyadic_thresholds(x, v, 31)
  expected, _ = munch_ect(x, cells, v, thresholds=t)
  got = ours(x, cells, v, t)
  assert_equal_away_from_ties(got, expected, x, v, t)


def test_default_thresholds_after_bounding_box_centring():
  """ECT(num_thresh=T) after `center_coordinates("bounding_box")`: the package's own
  thresholds linspace(-r, r, T) (uniform path: ceil of the bin index)."""
  rng = np.random.default_rng(6)
  x, edges = random_graph(rng, 80, 200, 3)
  x = x + np.float32(3.0)  # off-centre on purpose
  v = random_directions(rng, 16, 3)
  expected, (centred, t) = munch_ect(x, edges, v, num_thresh=40)
  assert t[0] == -t[-1]
  got = ours(centred.astype(np.float32), edges, v, t)
  assert_equal_away_from_ties(got, expected, centred, v, t)


# Small fixed complexes with exact ties (integer heights hit thresholds exactly).
SQUARE = (np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32),
          [(0, 1), (1, 2), (2, 3), (3, 0)])
FILLED_SQUARE = (SQUARE[0], SQUARE[1] + [(0, 2), (0, 1, 2), (0, 2, 3)])
TETRAHEDRON = (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32),
               [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3),
                (0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)])
PATH_AND_POINT = (np.array([[-2, 0], [-1, 0], [0, 0], [1, 0], [2, 1]], np.float32),
                  [(0, 1), (1, 2), (2, 3)])


@pytest.mark.parametrize("complex_,expected_chi", [
    (SQUARE, 0), (FILLED_SQUARE, 1), (TETRAHEDRON, 2), (PATH_AND_POINT, 2)],
    ids=["square", "filled_square", "hollow_tetrahedron", "path_and_point"])
def test_fixed_complexes_with_ties(complex_, expected_chi):
  x, cells = complex_
  dim = x.shape[1]
  axes = np.concatenate([np.eye(dim), -np.eye(dim)]).astype(np.float32)
  diag = np.ones((1, dim), np.float32) / np.float32(np.sqrt(dim))
  v = np.concatenate([axes, diag])
  t = np.arange(-3.0, 3.5, 0.5)  # hits every integer height exactly
  expected, _ = munch_ect(x, cells, v, thresholds=t)
  got = ours(x, cells, v, t)
  np.testing.assert_array_equal(got[:2 * dim], expected[:2 * dim])  # exact ties
  np.testing.assert_array_equal(got[-1], expected[-1])
  assert (got[:, -1] == expected_chi).all()  # everything is in at t = 3
