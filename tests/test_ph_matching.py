"""Betti matching against a NumPy replica of Betti-Matching-3D.

The replica (`tests/bm_reference.py`) runs the C++'s union-finds one edge at a
time; here every case of a batch is one image pair, so that one compilation
checks many pairs (random, tied, binary, identical, constant). Both engines
are checked against it: XLA's parallel rounds ("device", what GPUs and TPUs
run) and the compiled union-find ("cpu", what "auto" picks on the CPU), and
against each other on many more inputs.
"""

from __future__ import annotations

import cripser
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bm_reference
from topojax.ph import betti_matching

ENGINES = ("device", "cpu")


def _pairs_and_matches(m, i, dim):
  """One image's pairs (birth, death pixels) and matches, as sorted tuples."""
  def pairs(diagram):
    keep = np.asarray(diagram.in_dim(dim)[i])
    return np.asarray(diagram.birth_index[i]), np.asarray(diagram.death_index[i]), keep
  pb, pd, pk = pairs(m.pred)
  gb, gd, gk = pairs(m.target)
  match = np.asarray(m.pred_match[i])
  matches = sorted((pb[s], pd[s], gb[match[s]], gd[match[s]])
                   for s in np.nonzero(pk & (match >= 0))[0])
  return (sorted(zip(pb[pk], pd[pk])), sorted(zip(gb[gk], gd[gk])), matches)


def _reference(p, g, dim, comparison):
  pairs_p, pairs_g, matches = bm_reference.matching(p, g, dim=dim, comparison=comparison)
  return (sorted(pairs_p), sorted(pairs_g),
          sorted(pairs_p[a] + pairs_g[b] for a, b in matches))


def _cases(shape, seed):
  """Image pairs that exercise the conventions: noise, ties, binary targets,
  identical and constant images."""
  rng = np.random.default_rng(seed)
  noise = lambda: rng.random(shape).astype(np.float32)
  p, g = noise(), noise()
  cases = [
      (noise(), noise()),
      (np.round(noise() * 3) / 3, np.round(noise() * 4) / 4),  # plateaus and ties
      (noise(), (noise() > 0.5).astype(np.float32)),  # probability vs label
      ((noise() > 0.4).astype(np.float32), (noise() > 0.6).astype(np.float32)),
      (p, p),  # identical: everything matched
      (noise(), np.zeros(shape, np.float32)),  # constant target: no pairs
      (np.ones(shape, np.float32), np.ones(shape, np.float32)),
      (g, np.float32(0.5) * g + np.float32(0.25)),  # same order, other values
  ]
  return [np.stack(x).astype(np.float32) for x in zip(*cases)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("comparison", ["union", "intersection"])
def test_2d_matching_equals_betti_matching_3d(comparison, engine):
  pred, target = _cases((9, 11), seed=0)
  m = betti_matching(pred, target, filtration="sublevel", comparison=comparison, engine=engine)
  assert not np.any(m.pred.overflow) and not np.any(m.target.overflow)
  for i in range(len(pred)):
    for dim in (0, 1):
      assert _pairs_and_matches(m, i, dim) == _reference(pred[i], target[i], dim, comparison), (
          i, dim)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("comparison", [
    "union", pytest.param("intersection", marks=pytest.mark.slow)])
def test_3d_matching_equals_betti_matching_3d(comparison, engine):
  pred, target = _cases((4, 5, 6), seed=1)
  m = betti_matching(pred, target, filtration="sublevel", comparison=comparison, engine=engine)
  for i in range(len(pred)):
    for dim in (0, 2):
      assert _pairs_and_matches(m, i, dim) == _reference(pred[i], target[i], dim, comparison), (
          i, dim)


def test_pairs_are_the_persistence_of_each_image():
  """Values agree with cripser (V construction) for both inputs."""
  pred, target = _cases((9, 11), seed=0)
  m = betti_matching(pred, target, filtration="sublevel")
  for diagram, images in ((m.pred, pred), (m.target, target)):
    for i, image in enumerate(images):
      rows = cripser.compute_ph(image.astype(np.float64), maxdim=1)
      rows = rows[rows[:, 2] < 1e300]
      expected = sorted(map(tuple, rows[:, :3].tolist()))
      valid = np.asarray(diagram.valid[i])
      ours = sorted(zip(np.asarray(diagram.dim[i])[valid].astype(float).tolist(),
                        np.asarray(diagram.birth[i])[valid].astype(np.float64).tolist(),
                        np.asarray(diagram.death[i])[valid].astype(np.float64).tolist()))
      np.testing.assert_allclose(np.array(ours).reshape(-1, 3),
                                 np.array(expected).reshape(-1, 3), rtol=1e-6)


def test_identical_images_match_every_pair():
  pred, _ = _cases((9, 11), seed=0)
  m = betti_matching(pred, pred, filtration="sublevel")
  assert not np.any(m.pred_unmatched) and not np.any(m.target_unmatched)
  assert np.array_equal(m.num_matched, m.pred.num_pairs)
  slots = np.arange(m.pred.capacity)[None, :]
  match = np.asarray(m.pred_match)
  assert np.all(np.where(np.asarray(m.pred.valid), match == slots, match == -1))


def test_superlevel_is_sublevel_of_the_negated_maps():
  pred, target = _cases((9, 11), seed=0)
  up = betti_matching(pred, target, filtration="superlevel")
  down = betti_matching(-pred, -target, filtration="sublevel")
  for field in ("birth_index", "death_index", "valid"):
    assert np.array_equal(getattr(up.pred, field), getattr(down.pred, field))
  assert np.array_equal(up.pred_match, down.pred_match)
  np.testing.assert_array_equal(up.pred.birth, -down.pred.birth)


def test_hand_worked_blobs_and_ring():
  """Superlevel, foreground = 1: a missed blob and a missed hole stay unmatched."""
  two_blobs = np.zeros((1, 6, 9), np.float32)
  two_blobs[0, 1:5, 1:4] = 1
  two_blobs[0, 1:5, 5:8] = 1
  one_blob = two_blobs.copy()
  one_blob[0, 1:5, 5:8] = 0
  m = betti_matching(one_blob, two_blobs, dims=(0,))
  # Target: a finite H0 bar (the second blob, born 1 at (1, 5), dies 0);
  # prediction: none (its one component is essential).
  assert int(m.target.num_pairs[0]) == 1 and int(m.pred.num_pairs[0]) == 0
  assert int(m.target.birth_index[0, 0]) == 1 * 9 + 5
  assert int(m.target_unmatched.sum()) == 1

  ring = np.ones((1, 5, 5), np.float32)
  ring[0, 2, 2] = 0
  m = betti_matching(ring, ring * 0 + 1, dims=(1,))
  assert int(m.pred.num_pairs[0]) == 1 and int(m.target.num_pairs[0]) == 0
  assert int(m.pred_unmatched.sum()) == 1
  # The hole is born when the ring closes (value 1) and dies at its centre (0).
  assert float(m.pred.birth[0, 0]) == 1 and float(m.pred.death[0, 0]) == 0
  assert int(m.pred.death_index[0, 0]) == 12


def test_the_same_hole_in_both_images_is_matched_where_it_overlaps():
  def ring(center):
    x = np.ones((9, 9), np.float32)
    x[center[0] - 1:center[0] + 2, center[1] - 1:center[1] + 2] = 0
    return x
  near = betti_matching(ring((4, 4))[None], ring((4, 5))[None], dims=(1,))
  far = betti_matching(ring((2, 2))[None], ring((6, 6))[None], dims=(1,))
  assert int(near.num_matched[0]) == 1
  assert int(far.num_matched[0]) == 0 and int(far.pred_unmatched.sum()) == 1


def test_gradient_reaches_only_critical_pixels():
  pred, target = _cases((9, 11), seed=0)
  pred, target = jnp.asarray(pred[:2]), jnp.asarray(target[:2])

  def matched_births(p):
    m = betti_matching(p, target, filtration="sublevel")
    return jnp.sum(jnp.where(m.pred_match >= 0, m.pred.birth, 0))

  grad = np.asarray(jax.jit(jax.grad(matched_births))(pred))
  m = betti_matching(pred, target, filtration="sublevel")
  expected = np.zeros(pred.shape, np.float32).reshape(2, -1)
  for i in range(2):
    for s in np.nonzero(np.asarray(m.pred_match[i]) >= 0)[0]:
      expected[i, int(m.pred.birth_index[i, s])] += 1
  np.testing.assert_array_equal(grad.reshape(2, -1), expected)


@pytest.mark.parametrize("kwargs, message", [
    ({"pred": np.zeros((2, 4, 4), np.float32), "target": np.zeros((2, 4, 5), np.float32)},
     "same shape"),
    ({"pred": np.zeros((4, 4), np.float32), "target": np.zeros((4, 4), np.float32)}, "batch"),
    ({"pred": np.zeros((2, 4, 4), np.int32), "target": np.zeros((2, 4, 4), np.int32)},
     "floating"),
    ({"pred": np.zeros((2, 4, 4), np.float32), "target": np.zeros((2, 4, 4), np.float32),
      "dims": (2,)}, "dims"),
    ({"pred": np.zeros((2, 3, 4, 4), np.float32), "target": np.zeros((2, 3, 4, 4), np.float32),
      "dims": (3,)}, "dims"),
    ({"pred": np.full((2, 4, 4), np.nan, np.float32), "target": np.zeros((2, 4, 4), np.float32)},
     "NaN"),
    ({"pred": np.zeros((2, 4, 4), np.float32), "target": np.zeros((2, 4, 4), np.float32),
      "comparison": "min"}, "comparison"),
    ({"pred": np.zeros((2, 4, 4), np.float32), "target": np.zeros((2, 4, 4), np.float32),
      "engine": "gpu"}, "engine"),
])
def test_bad_input_is_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    betti_matching(**kwargs)


def _smoothed_pairs(batch, size, seed):
  """Smoothed probability maps against binary labels (the loss's inputs)."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  smooth = lambda sigma: ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
  pred = np.stack([1 / (1 + np.exp(-3 * smooth(2) / 0.1)) for _ in range(batch)])
  target = np.stack([smooth(4) > 0 for _ in range(batch)])
  return pred.astype(np.float32), target.astype(np.float32)


@pytest.mark.parametrize("engine", [pytest.param("device", marks=pytest.mark.slow), "cpu"])
@pytest.mark.parametrize("comparison", ["union"])  # intersection: the small cases above
def test_large_images_take_the_reduced_capacity_tiers(comparison, engine):
  """Large enough for the device engine's capacity tiers and for its rounds
  to move to smaller arrays (the small cases above use one worst-case
  capacity); for the CPU engine, a case with long plateaus of a label."""
  pred, target = _smoothed_pairs(2, 96, seed=2)
  m = betti_matching(pred, target, filtration="superlevel", comparison=comparison,
                     engine=engine)
  for i in range(len(pred)):
    for dim in (0, 1):
      assert _pairs_and_matches(m, i, dim) == _reference(-pred[i], -target[i], dim, comparison), (
          i, dim)


def _assert_same(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def _random_cases(shape, seed, batch=12):
  """Noise, few levels (plateaus and ties), binary targets, identical pairs."""
  rng = np.random.default_rng(seed)
  pred = rng.random((batch,) + shape).astype(np.float32)
  target = rng.random((batch,) + shape).astype(np.float32)
  for i in range(batch):
    levels = (0, 2, 3, 7)[i % 4]
    if levels:
      pred[i] = np.round(pred[i] * levels) / levels
    if i % 3 == 1:
      target[i] = target[i] > 0.5
  target[-1] = pred[-1]
  return pred, target


@pytest.mark.parametrize("shape, comparison", [
    pytest.param((2, 9), "union", marks=pytest.mark.slow), ((13, 10), "union"),
    pytest.param((13, 10), "intersection", marks=pytest.mark.slow), ((7, 3), "intersection"),
    ((2, 2, 2), "intersection"), ((3, 4, 5), "union"),
    pytest.param((5, 2, 3), "intersection", marks=pytest.mark.slow)])
def test_the_engines_agree(shape, comparison):
  """Equal pairs, pixels, slots and matching, on odd and non-square sizes."""
  pred, target = _random_cases(shape, seed=len(shape) * 100 + shape[0])
  kwargs = dict(comparison=comparison, filtration="sublevel", dims=(0, len(shape) - 1))
  _assert_same(betti_matching(pred, target, engine="device", **kwargs),
               betti_matching(pred, target, engine="cpu", **kwargs))


def test_the_cpu_engine_under_vmap_and_on_smoothed_maps():
  pred, target = _smoothed_pairs(4, 40, seed=3)
  device = betti_matching(pred, target, engine="device")
  _assert_same(device, betti_matching(pred, target, engine="cpu"))
  batched = jax.vmap(lambda p, t: betti_matching(p, t, engine="cpu"))(
      pred.reshape(2, 2, 40, 40), target.reshape(2, 2, 40, 40))
  _assert_same(device, jax.tree.map(lambda a: a.reshape((4,) + a.shape[2:]), batched))
