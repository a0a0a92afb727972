"""cubical_persistence against cripser (= GUDHI, Z/2): values always, pixels too."""

import cripser
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from topojax.ph import _h0
from topojax.ph import cubical_persistence

# Few shapes, shared by all tests: each (shape, options) compiles once.
SHAPES_2D = [(7, 9), (12, 5)]
SHAPES_3D = [(4, 5, 6)]
SHAPES = SHAPES_2D + SHAPES_3D


def image(kind, shape, seed):
  rng = np.random.default_rng(seed)
  if kind == "noise":
    x = rng.random(shape)
  elif kind == "smooth":
    x = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
  elif kind == "levels":  # many ties and plateaus
    x = rng.integers(0, 4, shape)
  elif kind == "binary":
    x = rng.random(shape) < 0.5
  elif kind == "plateau":  # large flat regions with a few bumps
    x = np.round(ndimage.gaussian_filter(rng.standard_normal(shape), 2) * 3)
  # + 0 turns -0.0 into 0.0: cripser orders -0.0 before 0.0 although they are
  # equal, which can move a tied pixel (never a value).
  return np.asarray(x, np.float32) + np.float32(0)


def ours(f, **kwargs):
  """Finite pairs as sorted tuples (dim, birth, death, birth coords, death coords)."""
  d = cubical_persistence(jnp.asarray(f), **kwargs)
  assert not bool(d.overflow) and not bool(d.nonfinite)
  return ours_from(d, f.shape)


def ours_from(d, shape):
  """`ours` for an already computed diagram of one image."""
  keep = np.asarray(d.finite)
  return sorted((int(k), float(b), float(dd)) + np.unravel_index(bi, shape)
                + np.unravel_index(di, shape)
                for k, b, dd, bi, di in zip(*(np.asarray(a)[keep] for a in (
                    d.dim, d.birth, d.death, d.birth_index, d.death_index))))


def reference(f, construction="V", dims=None, sign=1):
  """cripser's finite pairs in the same layout (superlevel: cripser on -f)."""
  rows = cripser.compute_ph(sign * f.astype(np.float64), filtration=construction,
                            maxdim=f.ndim - 1)
  rows = rows[np.isfinite(rows[:, 2])]
  dims = (0, f.ndim - 1) if dims is None else dims
  k = f.ndim
  return sorted((int(r[0]), sign * r[1], sign * r[2]) + tuple(int(v) for v in r[3:3 + k])
                + tuple(int(v) for v in r[6:6 + k]) for r in rows if int(r[0]) in dims)


def values_only(rows):
  return sorted(r[:3] for r in rows)


def dim0(rows):
  return [r for r in rows if r[0] == 0]


@pytest.mark.parametrize("construction", ["V", "T"])
@pytest.mark.parametrize("kind", ["noise", "smooth"])
@pytest.mark.parametrize("shape", SHAPES)
def test_distinct_values_match_cripser_exactly(construction, kind, shape):
  for seed in range(3):
    f = image(kind, shape, seed)
    assert ours(f, construction=construction) == reference(f, construction)


@pytest.mark.parametrize("construction", ["V", "T"])
@pytest.mark.parametrize("kind", ["levels", "binary", "plateau"])
@pytest.mark.parametrize("shape", SHAPES)
def test_ties_match_cripser_values(construction, kind, shape):
  for seed in range(3):
    f = image(kind, shape, seed)
    mine, theirs = ours(f, construction=construction), reference(f, construction)
    assert values_only(mine) == values_only(theirs)
    for row in mine:  # every pixel is critical with the reported value
      k = len(shape)
      assert f[row[3:3 + k]] == row[1] and f[row[3 + k:]] == row[2]


@pytest.mark.parametrize("kind", ["levels", "binary", "plateau"])
@pytest.mark.parametrize("shape", SHAPES_2D)
def test_ties_match_cripser_pixels_2d_v_dim0(kind, shape):
  for seed in range(3):
    f = image(kind, shape, seed)
    assert dim0(ours(f)) == reference(f, dims=(0,))


@pytest.mark.parametrize("construction, shape", [("V", (7, 9)), ("T", (4, 5, 6))])
def test_superlevel_is_sublevel_of_negation(construction, shape):
  f = image("noise", shape, 0)
  assert ours(f, construction=construction, filtration="superlevel") == reference(
      f, construction, sign=-1)


@pytest.mark.parametrize("construction", ["V", "T"])
def test_3d_dimension_one_host_fallback(construction):
  for kind in ("noise", "levels"):
    f = image(kind, (4, 5, 6), 1)
    mine = ours(f, construction=construction, dims=(0, 1, 2))
    theirs = reference(f, construction, dims=(0, 1, 2))
    assert values_only(mine) == values_only(theirs)
    if kind == "noise":
      assert mine == theirs


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    f=st.sampled_from(SHAPES).flatmap(lambda shape: hnp.arrays(
        np.float32, shape, elements=st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0, 3.0]))),
    construction=st.sampled_from(["V", "T"]))
def test_property_values_match_cripser(f, construction):
  assert values_only(ours(f, construction=construction)) == values_only(
      reference(f, construction))


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(f=st.sampled_from(SHAPES_2D).flatmap(lambda shape: hnp.arrays(
    np.float32, shape, elements=st.integers(0, 2).map(float))))
def test_property_2d_v_dim0_pixels_match_cripser(f):
  assert dim0(ours(f)) == reference(f, dims=(0,))


def test_essential_class_and_constant_image():
  f = image("noise", (7, 9), 3)
  d = cubical_persistence(f)
  assert bool(d.essential[0]) and int(d.num_pairs) == len(reference(f)) + 1
  assert int(d.birth_index[0]) == int(np.argmin(f)) and float(d.birth[0]) == f.min()
  assert np.isposinf(float(d.death[0])) and int(d.death_index[0]) == -1
  up = cubical_persistence(f, filtration="superlevel")
  assert float(up.birth[0]) == f.max() and np.isneginf(float(up.death[0]))
  flat = cubical_persistence(jnp.ones((7, 9)))
  assert int(flat.num_pairs) == 1 and int(flat.birth_index[0]) == 0


def test_worst_case_capacity_checkerboard():
  for shape, construction in [((7, 9), "V"), ((7, 9), "T"), ((4, 5, 6), "V")]:
    f = np.indices(shape).sum(0) % 2
    if construction == "T":  # isolated minima on the even sublattice
      f = 1 - np.prod(1 - np.indices(shape) % 2, axis=0)
    f = f.astype(np.float32) + np.random.default_rng(0).random(shape).astype(np.float32) * 0.1
    d = cubical_persistence(f, construction=construction)
    assert not bool(d.overflow)
    assert values_only(ours(f, construction=construction)) == values_only(
        reference(f, construction))


def test_capacity_overflow_is_flagged():
  f = image("noise", (12, 5), 0)
  d = cubical_persistence(f, max_pairs=5)
  assert bool(d.overflow) and d.capacity == 10
  with pytest.raises(ValueError, match="overflowed"):
    d.to_numpy()
  # The kept finite H0 pairs are the first ones in order of death.
  all_h0 = sorted(r for r in reference(f, dims=(0,)))
  deaths = sorted(r[2] for r in all_h0)[:4]
  kept = np.asarray(d.death)[np.asarray(d.finite & (d.dim == 0))]
  np.testing.assert_allclose(np.sort(kept), deaths)


def test_vmap_and_jit_match_single_images():
  fs = np.stack([image("smooth", (7, 9), s) for s in range(3)])
  batched = jax.jit(jax.vmap(cubical_persistence))(jnp.asarray(fs))
  for i, f in enumerate(fs):
    single = cubical_persistence(f)
    for name in ("birth", "death", "birth_index", "death_index", "dim", "valid"):
      np.testing.assert_array_equal(getattr(batched, name)[i], getattr(single, name))
  nested = jax.vmap(jax.vmap(cubical_persistence))(jnp.asarray(fs).reshape(3, 1, 7, 9))
  np.testing.assert_array_equal(nested.death[:, 0], batched.death)


def test_gradient_is_one_hot_at_critical_pixels():
  f = jnp.asarray(image("noise", (7, 9), 1))

  def weighted(f):
    d = cubical_persistence(f)
    return jnp.sum(jnp.where(d.finite, 2 * d.death - 3 * d.birth, 0))

  grad = jax.grad(weighted)(f)
  d = cubical_persistence(f)
  expected = np.zeros(f.size)
  finite = np.asarray(d.finite)
  np.add.at(expected, np.asarray(d.death_index)[finite], 2.0)
  np.add.at(expected, np.asarray(d.birth_index)[finite], -3.0)
  np.testing.assert_allclose(np.asarray(grad).ravel(), expected)


def test_bad_input():
  with pytest.raises(ValueError, match="NaN or inf"):
    cubical_persistence(jnp.ones((7, 9)).at[2, 3].set(jnp.nan))
  flagged = jax.jit(cubical_persistence)(jnp.ones((7, 9)).at[0, 0].set(jnp.inf))
  assert bool(flagged.nonfinite)
  assert not bool(jax.jit(cubical_persistence)(jnp.ones((7, 9))).nonfinite)
  with pytest.raises(ValueError, match="`f` must be one 2D image"):
    cubical_persistence(jnp.ones((4,)))
  with pytest.raises(ValueError, match="`filtration`"):
    cubical_persistence(jnp.ones((4, 4)), filtration="lower")
  with pytest.raises(ValueError, match="`construction`"):
    cubical_persistence(jnp.ones((4, 4)), construction="X")
  with pytest.raises(ValueError, match="`dims`"):
    cubical_persistence(jnp.ones((4, 4)), dims=(2,))
  with pytest.raises(ValueError, match="`max_pairs`"):
    cubical_persistence(jnp.ones((4, 4)), max_pairs=0)


def test_integer_and_bool_inputs_are_cast():
  mask = image("binary", (7, 9), 0) > 0
  d = cubical_persistence(mask)
  assert d.birth.dtype == jnp.float32
  assert values_only(ours(mask.astype(np.float32))) == values_only(
      reference(mask.astype(np.float32)))


@pytest.mark.parametrize("shape", [(1, 9), pytest.param((9, 1), marks=pytest.mark.slow),
                                   pytest.param((1, 1), marks=pytest.mark.slow), (3, 1, 5)])
def test_axes_of_length_one_match_gudhi(shape):
  # cripser mishandles axes of length 1; GUDHI is the oracle here.
  import gudhi  # pylint: disable=import-outside-toplevel
  f = image("noise", shape, 0)
  for construction in ("V", "T"):
    cells = {"vertices" if construction == "V" else "top_dimensional_cells": f.astype(np.float64)}
    pairs = gudhi.CubicalComplex(**cells).persistence(homology_coeff_field=2)
    expected = sorted((k, b, d) for k, (b, d) in pairs if d > b and k in (0, len(shape) - 1))
    got = cubical_persistence(f, construction=construction).to_numpy()
    np.testing.assert_allclose(np.array(sorted(map(tuple, got)), np.float64).reshape(-1, 3),
                               np.array(expected, np.float64).reshape(-1, 3))


def smooth_map(shape, seed, sigma=2.0):
  """A probability-like map: smoothed noise through a sigmoid (plateaus at 0 and 1)."""
  z = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
  return (1 / (1 + np.exp(-3 * (z - z.mean()) / z.std()))).astype(np.float32)


@pytest.mark.parametrize("shape,construction", [
    ((72, 64), "V"), pytest.param((16, 16, 16), "T", marks=pytest.mark.slow)])
def test_batches_large_enough_for_compact_capacities_match_cripser(shape, construction):
  # Batches of >= 2^14 pixels first try small compact capacities (see
  # topojax/ph/_h0.py): smoothed maps fit the smallest, i.i.d. noise the next,
  # and a batch with a noise image moves every image to the larger one.
  smooth = [smooth_map(shape, seed) for seed in range(4)]
  noise = [image("noise", shape, seed) for seed in range(4)]
  levels = [image("levels", shape, seed) for seed in range(4)]
  batched = jax.jit(jax.vmap(lambda f: cubical_persistence(f, construction=construction)))
  for batch, exact_pixels in [(smooth, True), (noise, True), (smooth[:3] + noise[:1], True),
                              (levels, False)]:
    d = batched(jnp.asarray(np.stack(batch)))
    assert not np.any(np.asarray(d.overflow))
    for i, f in enumerate(batch):
      got = ours_from(jax.tree.map(lambda a: a[i], d), f.shape)
      want = reference(f, construction)
      assert (got if exact_pixels else values_only(got)) == (
          want if exact_pixels else values_only(want))


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(mask=hnp.arrays(bool, (3, 97)))
def test_stream_compaction_equals_nonzero(mask):
  got = np.asarray(_compact(jnp.asarray(mask)))
  for row, out in zip(mask, got):
    want = np.nonzero(row)[0]
    np.testing.assert_array_equal(out[:len(want)], want)
    assert np.all(out[len(want):] == -1)


@jax.jit
def _compact(mask):
  return _h0._compact(_h0._pack(mask), 100)  # capacity past the row length


def staircase(num_pits, seed):
  """A row of pits, each deeper than the last, behind ever higher saddles.

  Every pit dies at the saddle after it, but only once all pits before it
  have merged: the parallel elder rounds decide one pit per round here, so
  the sequential tail does the work.
  """
  rng = np.random.default_rng(seed)
  f = 100 + rng.permutation(3 * (2 * num_pits + 1)).reshape(3, -1).astype(np.float32) / 100
  f[1, 0::2] = -np.arange(num_pits + 1)
  f[1, 1::2] = 10 + np.arange(num_pits)
  return f


@pytest.mark.parametrize("construction", ["V", "T"])
def test_chain_of_ever_older_minima_matches_cripser(construction):
  f = staircase(40, 0)
  assert ours(f, construction=construction) == reference(f, construction)


@pytest.fixture
def fresh_traces():
  """Recompiles cubical_persistence (for module constants patched by a test)."""
  from topojax.ph import _cubical  # pylint: disable=import-outside-toplevel
  _cubical._pairing.cache_clear()
  jax.clear_caches()
  yield
  _cubical._pairing.cache_clear()
  jax.clear_caches()


# The elder rule does not depend on the connectivity: one construction per
# case but the first keeps the suite fast.
@pytest.mark.parametrize("constants, construction", [
    ({"_MIN_ROUND_PROGRESS": 10**9}, "V"),  # one parallel round, then all sequential
    pytest.param({"_MIN_ROUND_PROGRESS": 10**9}, "T", marks=pytest.mark.slow),
    ({"_MIN_ROUND_PROGRESS": 0}, "V"),  # parallel rounds to the end
    ({"_NODE_SHRINK": 4, "_MIN_NODE_WIDTH": 8}, "T"),  # several shrinking steps
])
def test_every_split_between_parallel_and_sequential_elder_rule_matches_cripser(
    constants, construction, monkeypatch, fresh_traces):  # pylint: disable=redefined-outer-name,unused-argument
  for name, value in constants.items():
    monkeypatch.setattr(_h0, name, value)
  batch = [image(kind, (24, 21), seed) for kind in ("noise", "levels") for seed in range(2)]
  batch.append(np.tile(staircase(10, 1), (8, 1)))
  d = jax.vmap(lambda f: cubical_persistence(f, construction=construction))(
      jnp.asarray(np.stack(batch)))
  for i, f in enumerate(batch):
    got = ours_from(jax.tree.map(lambda a: a[i], d), f.shape)
    want = reference(f, construction)
    exact = i < 2  # pixels on ties may differ (module docstring); values never
    assert (got if exact else values_only(got)) == (want if exact else values_only(want))
