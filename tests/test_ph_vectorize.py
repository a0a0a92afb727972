"""Tests for `topojax.ph` vectorizations against gudhi.representations."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gudhi import representations as gr
from hypothesis import given, settings
from hypothesis import strategies as st

from topojax import ph

CAPACITY = 12  # every random diagram is padded to this: one compilation per function
SETTINGS = settings(max_examples=25, deadline=None)

# Bars on a 1/4 grid (exact in float32), so comparisons at levels on a 1/8 grid
# hit the ties b == t and d == t that the half-open convention decides.
_bar = st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(0, 24),
                 st.booleans())


@st.composite
def pair_arrays(draw, *, min_size=0, essential=True):
  """`(n, 3)` float64 rows `[dim, birth, death]`; death = inf for some H0 bars."""
  bars = draw(st.lists(_bar, min_size=min_size, max_size=CAPACITY - 2))
  rows = [[k, b / 4, np.inf if (inf and essential and k == 0) else (b + length) / 4]
          for k, b, length, inf in bars]
  return np.array(rows, np.float64).reshape(-1, 3)


def _diagram(rows, capacity=CAPACITY, dtype=jnp.float32):
  return ph.diagram_from_pairs(rows, capacity=capacity, dtype=dtype)


def _gudhi_input(rows, dim, *, finite=True):
  """The `(n, 2)` [birth, death] array of `dim` that gudhi expects."""
  sel = rows[rows[:, 0] == dim][:, 1:]
  return sel[np.isfinite(sel[:, 1])] if finite else sel


def _garbage_padding(diagram, extra, seed=0):
  """`diagram` with `extra` invalid slots holding junk (inf, NaN-free values, dims)."""
  rng = np.random.default_rng(seed)
  junk = dict(
      birth=rng.normal(size=extra).astype(np.float32),
      death=np.where(rng.random(extra) < 0.3, np.inf, rng.normal(size=extra) + 3).astype(
          np.float32),
      birth_index=rng.integers(0, 9, extra).astype(np.int32),
      death_index=rng.integers(0, 9, extra).astype(np.int32),
      dim=rng.integers(0, 3, extra).astype(np.int32),
      valid=np.zeros(extra, bool))
  fields = {name: jnp.concatenate([getattr(diagram, name),
                                   jnp.asarray(value, getattr(diagram, name).dtype)])
            for name, value in junk.items()}
  return dataclasses.replace(diagram, **fields)


LEVELS = np.arange(-1.0, 17.0, 0.125)  # 1/8 grid: exact in float32


# ---------------------------------------------------------------------------
# Agreement with gudhi.


@SETTINGS
@given(pair_arrays(), st.integers(0, 2))
def test_betti_curve_matches_gudhi(rows, dim):
  ours = ph.betti_curve(_diagram(rows), LEVELS, dim=dim)
  assert ours.shape == LEVELS.shape and ours.dtype == jnp.int32
  expected = gr.BettiCurve(predefined_grid=LEVELS).fit_transform(
      [_gudhi_input(rows, dim, finite=False)])[0]
  np.testing.assert_array_equal(ours, expected)


@SETTINGS
@given(pair_arrays(), st.integers(1, 4))
def test_landscape_matches_gudhi(rows, num_landscapes):
  levels = np.linspace(-0.3, 16.3, 50)
  ours = ph.persistence_landscape(_diagram(rows), levels, dim=0,
                                  num_landscapes=num_landscapes)
  assert ours.shape == (num_landscapes, 50)
  gudhi = gr.Landscape(num_landscapes=num_landscapes, resolution=50,
                       sample_range=[-0.3, 16.3]).fit_transform([_gudhi_input(rows, 0)])[0]
  np.testing.assert_allclose(np.sqrt(2) * np.asarray(ours).reshape(-1), gudhi,
                             rtol=1e-5, atol=1e-5)


@SETTINGS
@given(pair_arrays(min_size=1, essential=False), st.sampled_from([0.5, 1.0, 2.0]))
def test_silhouette_matches_gudhi(rows, p):
  rows[:, 0] = 1
  rows[0, 2] = rows[0, 1] + 1.0  # at least one bar of positive length
  levels = np.linspace(-0.3, 16.3, 40)
  ours = ph.persistence_silhouette(_diagram(rows), levels, dim=1, p=p)
  gudhi = gr.Silhouette(weight=lambda x: abs(x[1] - x[0]) ** p, resolution=40,
                        sample_range=[-0.3, 16.3]).fit_transform([_gudhi_input(rows, 1)])[0]
  np.testing.assert_allclose(np.sqrt(2) * np.asarray(ours), gudhi, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(pair_arrays(), st.sampled_from([0.3, 1.0]), st.sampled_from(["linear", "constant"]))
def test_persistence_image_sample_matches_gudhi(rows, sigma, weight):
  (b0, b1), (l0, l1), (rb, rl) = (-1.0, 11.0), (0.0, 6.0), (12, 8)
  ours = ph.persistence_image(_diagram(rows), dim=0, birth_range=(b0, b1),
                              persistence_range=(l0, l1), resolution=(rb, rl), sigma=sigma,
                              weight=weight, method="sample")
  assert ours.shape == (rl, rb)
  db, dl = (b1 - b0) / rb, (l1 - l0) / rl
  gudhi_weight = (lambda x: x[1]) if weight == "linear" else (lambda x: 1.0)
  gudhi = gr.PersistenceImage(
      bandwidth=sigma, weight=gudhi_weight, resolution=[rb, rl],
      im_range=[b0 + db / 2, b1 - db / 2, l0 + dl / 2, l1 - dl / 2],
  ).fit_transform([_gudhi_input(rows, 0)])[0]
  np.testing.assert_allclose(np.asarray(ours).reshape(-1), gudhi, rtol=1e-4, atol=1e-6)


@SETTINGS
@given(pair_arrays(min_size=1))
def test_entropy_matches_gudhi(rows):
  rows = rows[rows[:, 2] > rows[:, 1]]  # gudhi gives NaN for zero-length bars
  rows[:, 0] = 0
  ours = ph.persistence_entropy(_diagram(rows), dim=0)
  finite = _gudhi_input(rows, 0)
  if len(finite) == 0:
    assert float(ours) == 0.0
    return
  gudhi = gr.Entropy(mode="scalar").fit_transform([finite])[0, 0]
  np.testing.assert_allclose(float(ours), gudhi, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(pair_arrays(), st.sampled_from([0.5, 1.0, 2.0]))
def test_total_persistence_closed_form(rows, p):
  ours = ph.total_persistence(_diagram(rows), dim=None, p=p)
  finite = rows[np.isfinite(rows[:, 2])]
  np.testing.assert_allclose(float(ours), np.sum(np.abs(finite[:, 2] - finite[:, 1]) ** p),
                             rtol=1e-5)


@SETTINGS
@given(pair_arrays(), st.sampled_from([-0.5, 0.0, 1.25, 3.0, 7.5]))
def test_betti_numbers_at_is_the_betti_curve_per_dimension(rows, level):
  d = _diagram(rows)
  ours = ph.betti_numbers_at(d, level, max_dim=3)
  assert ours.shape == (4,) and ours.dtype == jnp.int32
  expected = [int(ph.betti_curve(d, np.array([level]), dim=k)[0]) for k in range(4)]
  assert ours.tolist() == expected
  assert ours.tolist()[3] == 0


def test_betti_curve_half_open_and_superlevel():
  sub = _diagram([[0, 0.0, np.inf], [0, 1.0, 2.0], [1, 1.0, 1.0]], capacity=4)
  assert ph.betti_curve(sub, [0.0, 1.0, 2.0], dim=0).tolist() == [1, 2, 1]
  assert ph.betti_curve(sub, [1.0], dim=1).tolist() == [0]  # zero-length: never alive
  assert ph.betti_curve(sub, [1.0], dim=None).tolist() == [2]
  # Superlevel: alive on d < t <= b; the negated diagram at negated levels agrees.
  sup = _diagram([[0, 5.0, -np.inf], [0, 4.0, 2.0], [1, 3.0, 1.0]], capacity=4)
  levels = np.arange(0.0, 6.0, 0.5)
  neg = _diagram([[0, -5.0, np.inf], [0, -4.0, -2.0], [1, -3.0, -1.0]], capacity=4)
  for k in (0, 1):
    curve = ph.betti_curve(sup, levels, dim=k)
    np.testing.assert_array_equal(curve, ph.betti_curve(neg, -levels, dim=k))
  assert ph.betti_curve(sup, [2.0, 4.0, 5.0, 5.5], dim=0).tolist() == [1, 2, 1, 0]
  assert ph.betti_numbers_at(sup, 2.5, max_dim=1).tolist() == [2, 1]


def test_superlevel_bars_mirror_sublevel_ones():
  sup = _diagram([[1, 4.0, 1.0], [1, 3.0, 2.5], [0, 5.0, -np.inf]], capacity=5)
  neg = _diagram([[1, -4.0, -1.0], [1, -3.0, -2.5], [0, -5.0, np.inf]], capacity=5)
  levels = np.linspace(0.0, 5.0, 21)
  np.testing.assert_allclose(
      ph.persistence_landscape(sup, levels, dim=1, num_landscapes=2),
      ph.persistence_landscape(neg, -levels, dim=1, num_landscapes=2))
  np.testing.assert_allclose(ph.persistence_silhouette(sup, levels, dim=1, p=2.0),
                             ph.persistence_silhouette(neg, -levels, dim=1, p=2.0))
  assert float(ph.total_persistence(sup, dim=None)) == 3.5
  assert float(ph.total_persistence(neg, dim=None)) == 3.5


def test_persistence_image_integrate():
  rows = np.array([[1, 1.0, 3.0], [1, 2.0, 2.5], [1, 0.5, np.inf], [0, 4.0, 5.0]])
  d = _diagram(rows)
  kwargs = dict(dim=1, birth_range=(-5.0, 8.0), persistence_range=(-5.0, 8.0))
  # A box far wider than sigma holds all the mass: the sum of the weights.
  coarse = ph.persistence_image(d, resolution=(13, 13), sigma=0.2, **kwargs)
  np.testing.assert_allclose(float(jnp.sum(coarse)), 2.0 + 0.5, rtol=1e-5)
  ramp = ph.persistence_image(d, resolution=(13, 13), sigma=0.2, weight="ramp", **kwargs)
  np.testing.assert_allclose(float(jnp.sum(ramp)), (2.0 + 0.5) / 8.0, rtol=1e-5)
  custom = ph.persistence_image(d, resolution=(13, 13), sigma=0.2,
                                weight=lambda b, pers: b * pers, **kwargs)
  np.testing.assert_allclose(float(jnp.sum(custom)), 1.0 * 2.0 + 2.0 * 0.5, rtol=1e-5)
  # Small pixels: integral ≈ density at the centre times the pixel area (midpoint
  # rule, relative error ~ (pixel / sigma)^2 / 24 of the peak).
  fine = dict(resolution=(130, 65), sigma=0.5, **kwargs)
  integ = ph.persistence_image(d, **fine)
  sample = ph.persistence_image(d, method="sample", **fine)
  area = (13.0 / 130) * (13.0 / 65)
  np.testing.assert_allclose(integ, sample * area, atol=1e-2 * float(jnp.max(integ)))
  assert integ.shape == (65, 130)
  # An int resolution is used on both axes.
  assert ph.persistence_image(d, resolution=7, sigma=0.2, **kwargs).shape == (7, 7)


# ---------------------------------------------------------------------------
# Padding, batching, jit, flags.


def _all_outputs(d):
  image_kw = dict(birth_range=(-1.0, 11.0), persistence_range=(0.0, 6.0), resolution=(6, 5),
                  sigma=0.5)
  return {
      "betti_curve": ph.betti_curve(d, LEVELS, dim=0),
      "betti_numbers_at": ph.betti_numbers_at(d, 2.0, max_dim=2),
      "total_persistence": ph.total_persistence(d, dim=1, p=2.0),
      "entropy": ph.persistence_entropy(d, dim=None),
      "landscape": ph.persistence_landscape(d, LEVELS, dim=0, num_landscapes=3),
      "silhouette": ph.persistence_silhouette(d, LEVELS, dim=0),
      "image": ph.persistence_image(d, dim=0, **image_kw),
      "image_sample": ph.persistence_image(d, dim=0, method="sample", **image_kw),
  }


@settings(max_examples=10, deadline=None)
@given(pair_arrays())
def test_padding_invariance(rows):
  d = _diagram(rows)
  ref, padded = _all_outputs(d), _all_outputs(_garbage_padding(d, 5))
  for name in ref:
    np.testing.assert_array_equal(padded[name], ref[name], err_msg=name)


def test_batch_axes_vmap_and_jit():
  rng = np.random.default_rng(0)
  singles = []
  for n in (0, 3, 7, 10):
    births = rng.uniform(0, 5, n)
    rows = np.stack([rng.integers(0, 2, n), births, births + rng.uniform(0, 3, n)], 1)
    if n:
      rows[0, 2] = np.inf
    singles.append(_diagram(rows.reshape(-1, 3)))
  batch = jax.tree.map(lambda *x: jnp.stack(x).reshape(2, 2, *x[0].shape), *singles)
  per_single = [_all_outputs(d) for d in singles]
  batched = _all_outputs(batch)
  vmapped = jax.vmap(jax.vmap(_all_outputs))(batch)
  jitted = jax.jit(_all_outputs)(batch)
  for name in batched:
    expected = np.stack([out[name] for out in per_single]).reshape(
        2, 2, *per_single[0][name].shape)
    assert batched[name].shape == expected.shape, name
    np.testing.assert_allclose(batched[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(vmapped[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(jitted[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)


def test_empty_diagram_gives_zeros():
  outputs = _all_outputs(_diagram(np.zeros((0, 3))))
  for name, value in outputs.items():
    assert np.all(np.asarray(value) == 0), name


def test_nonfinite_flag_gives_nan():
  d = dataclasses.replace(_diagram([[0, 0.0, 1.0], [0, 0.5, np.inf]]),
                          nonfinite=jnp.ones((), bool))
  outputs = _all_outputs(d)
  for name in ("total_persistence", "entropy", "landscape", "silhouette", "image"):
    assert np.all(np.isnan(outputs[name])), name


def test_diagram_from_pairs_round_trip_and_errors():
  rows = np.array([[0, 0.0, np.inf], [1, 1.0, 2.0], [0, 0.5, 0.75]])
  d = ph.diagram_from_pairs(rows, capacity=6)
  assert d.capacity == 6 and int(d.num_pairs) == 3
  np.testing.assert_array_equal(d.to_numpy(), rows[np.lexsort((rows[:, 2], rows[:, 1],
                                                               rows[:, 0]))])
  assert ph.diagram_from_pairs([]).capacity == 0
  with pytest.raises(ValueError, match="capacity"):
    ph.diagram_from_pairs(rows, capacity=2)
  with pytest.raises(ValueError, match=r"\(n, 3\)"):
    ph.diagram_from_pairs(np.zeros((2, 2)))
  with pytest.raises(ValueError, match="dim"):
    ph.diagram_from_pairs([[0.5, 0.0, 1.0]])
  with pytest.raises(ValueError, match="births must be finite"):
    ph.diagram_from_pairs([[0, np.inf, 1.0]])


# ---------------------------------------------------------------------------
# Gradients (float64, central finite differences).


def _fd_check(fn, birth, death, eps=1e-6, rtol=1e-5, atol=1e-8):
  grad_b, grad_d = jax.grad(fn, argnums=(0, 1))(birth, death)
  assert np.all(np.isfinite(grad_b)) and np.all(np.isfinite(grad_d))
  for arr, grad, argnum in ((birth, grad_b, 0), (death, grad_d, 1)):
    for i in range(arr.shape[0]):
      if not np.isfinite(arr[i]):
        continue
      up, down = arr.at[i].add(eps), arr.at[i].add(-eps)
      args_up = (up, death) if argnum == 0 else (birth, up)
      args_down = (down, death) if argnum == 0 else (birth, down)
      fd = (fn(*args_up) - fn(*args_down)) / (2 * eps)
      np.testing.assert_allclose(grad[i], fd, rtol=rtol, atol=atol,
                                 err_msg=f"argnum {argnum}, slot {i}")


def test_gradients_match_finite_differences():
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    births = rng.uniform(0, 4, 6)
    rows = np.stack([np.array([0, 0, 0, 1, 1, 0]), births, births + rng.uniform(0.3, 3, 6)], 1)
    rows[5, 2] = np.inf  # essential: excluded, but its gradient must stay finite
    base = _garbage_padding(ph.diagram_from_pairs(rows, capacity=8, dtype=jnp.float64), 3)
    levels = jnp.asarray(rng.uniform(-0.5, 7.5, 40))
    image_kw = dict(birth_range=(-1.0, 6.0), persistence_range=(0.0, 4.0), resolution=(7, 5),
                    sigma=0.4)

    def make(out_fn):
      probe = out_fn(base)
      weights = jnp.asarray(rng.normal(size=probe.shape))
      def fn(birth, death):
        d = dataclasses.replace(base, birth=birth, death=death)
        return jnp.sum(out_fn(d) * weights)
      return fn

    fns = {
        "total_persistence": lambda d: ph.total_persistence(d, dim=0, p=1.5),
        "entropy": lambda d: ph.persistence_entropy(d, dim=None),
        "landscape": lambda d: ph.persistence_landscape(d, levels, dim=0, num_landscapes=3),
        "silhouette": lambda d: ph.persistence_silhouette(d, levels, dim=None, p=2.0),
        "image": lambda d: ph.persistence_image(d, dim=None, **image_kw),
        "image_sample": lambda d: ph.persistence_image(d, dim=0, method="sample",
                                                       weight="ramp", **image_kw),
    }
    for name, out_fn in fns.items():
      try:
        _fd_check(make(out_fn), base.birth, base.death)
      except AssertionError as e:
        raise AssertionError(name) from e

    # Closed form: d/dd |d - b|^p = p |d - b|^(p-1), minus that for the birth.
    grad_b, grad_d = jax.grad(
        lambda b, e: ph.total_persistence(dataclasses.replace(base, birth=b, death=e),
                                          dim=0, p=1.5), argnums=(0, 1))(base.birth, base.death)
    expected = np.where(np.isfinite(rows[:, 2]) & (rows[:, 0] == 0),
                        1.5 * np.abs(rows[:, 2] - rows[:, 1]) ** 0.5, 0.0)
    np.testing.assert_allclose(grad_d[:6], expected, rtol=1e-10)
    np.testing.assert_allclose(grad_b[:6], -expected, rtol=1e-10)
    assert np.all(grad_b[6:] == 0) and np.all(grad_d[6:] == 0)


def test_gradient_at_zero_length_bars_is_finite():
  d = _diagram([[0, 1.0, 1.0], [0, 2.0, 2.0]])
  for fn in (lambda b: ph.total_persistence(dataclasses.replace(d, birth=b), dim=0, p=0.5),
             lambda b: ph.persistence_entropy(dataclasses.replace(d, birth=b), dim=0),
             lambda b: jnp.sum(ph.persistence_silhouette(dataclasses.replace(d, birth=b),
                                                         LEVELS, dim=0, p=0.5))):
    assert np.all(np.isfinite(jax.grad(fn)(d.birth)))


def test_sigma_is_differentiable():
  d = _diagram([[0, 1.0, 2.0]])
  kw = dict(dim=0, birth_range=(0.0, 2.0), persistence_range=(0.0, 2.0), resolution=4)
  fn = lambda s: jnp.sum(ph.persistence_image(d, sigma=s, **kw)[1:3, 1:3])
  eps = 1e-2
  fd = (fn(jnp.float32(0.3 + eps)) - fn(jnp.float32(0.3 - eps))) / (2 * eps)
  np.testing.assert_allclose(jax.grad(fn)(jnp.float32(0.3)), fd, rtol=1e-2)


# ---------------------------------------------------------------------------
# Argument checks.


def test_argument_errors():
  d = _diagram([[0, 0.0, 1.0]])
  image_kw = dict(dim=0, birth_range=(0.0, 1.0), persistence_range=(0.0, 1.0), resolution=4,
                  sigma=0.1)
  with pytest.raises(TypeError, match="`diagram`"):
    ph.betti_curve(np.zeros((3, 2)), LEVELS, dim=0)
  with pytest.raises(ValueError, match="`levels`"):
    ph.betti_curve(d, np.zeros((2, 3)), dim=0)
  with pytest.raises(ValueError, match="`dim`"):
    ph.betti_curve(d, LEVELS, dim=-1)
  with pytest.raises(ValueError, match="`dim`"):
    ph.total_persistence(d, dim=1.0)
  with pytest.raises(ValueError, match="`p`"):
    ph.total_persistence(d, dim=0, p=0.0)
  with pytest.raises(ValueError, match="`level`"):
    ph.betti_numbers_at(d, np.zeros(2), max_dim=1)
  with pytest.raises(ValueError, match="`max_dim`"):
    ph.betti_numbers_at(d, 0.0, max_dim=-1)
  with pytest.raises(ValueError, match="`num_landscapes`"):
    ph.persistence_landscape(d, LEVELS, dim=0, num_landscapes=0)
  with pytest.raises(ValueError, match="`diagram.birth`"):
    ph.total_persistence(dataclasses.replace(d, birth=d.birth.astype(jnp.int32)), dim=0)
  with pytest.raises(ValueError, match="`diagram.death`"):
    ph.total_persistence(dataclasses.replace(d, death=d.death[:0]), dim=0)
  for key, value, match in [("birth_range", (1.0, 0.0), "`birth_range`"),
                            ("persistence_range", (0.0,), "`persistence_range`"),
                            ("resolution", (4, 0), "`resolution`"),
                            ("resolution", (4, 4, 4), "`resolution`"),
                            ("sigma", 0.0, "`sigma`"),
                            ("sigma", np.ones(2), "`sigma`"),
                            ("weight", "quadratic", "`weight`"),
                            ("method", "riemann", "`method`")]:
    with pytest.raises(ValueError, match=match):
      ph.persistence_image(d, **{**image_kw, key: value})
