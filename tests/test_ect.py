"""topojax.ect: exact ECT against brute-force Euler characteristics, smooth ECT
against the DECT formula, batching conventions, images, gradients and errors."""

import itertools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from topojax import metrics
from topojax.ect import (band_width, circle_directions, ect, image_ect, linear_thresholds,
                         multiview_directions, project_to_sphere, uniform_directions)
from topojax.kernels import ect_accumulate as acc


# ----------------------------------------------------------------- oracles


def brute_force_ect(x, simplices, directions, thresholds, tie="closed"):
  """chi of each sublevel complex, by listing its simplices (float64 heights)."""
  cells = [(np.asarray(s), (-1) ** (np.asarray(s).shape[1] - 1)) for s in simplices]
  return brute_force_cells(x, cells, directions, thresholds, tie)


def brute_force_cells(x, cells, directions, thresholds, tie="closed"):
  """Same for any cells given as (vertex index rows, sign); vertices added."""
  x, directions = np.asarray(x, np.float64), np.asarray(directions, np.float64)
  heights = x @ directions.T
  cells = [(np.arange(len(x))[:, None], 1)] + [(np.asarray(i), s) for i, s in cells]
  out = np.zeros((len(directions), len(thresholds)))
  for d, (j, t) in itertools.product(range(len(directions)), enumerate(thresholds)):
    for idx, sign in cells:
      h = heights[idx, d].max(axis=1)
      out[d, j] += sign * np.sum(h <= t if tie == "closed" else h < t)
  return out


def dense_dect(x, simplices, directions, thresholds, scale):
  """The DECT formula in float64: sum_sigma sign * sigmoid(s (t - h))."""
  x, directions = np.asarray(x, np.float64), np.asarray(directions, np.float64)
  heights = x @ directions.T
  out = np.zeros((len(directions), len(thresholds)))
  for idx, sign in [(np.arange(len(x))[:, None], 1)] + [
      (np.asarray(s), (-1) ** (np.asarray(s).shape[1] - 1)) for s in simplices]:
    h = heights[idx].max(axis=1)  # [cells, D]
    z = scale * (np.asarray(thresholds, np.float64)[None, None, :] - h[:, :, None])
    out += sign * (1 / (1 + np.exp(-z))).sum(axis=0)
  return out


def random_complex(rng, num_points, dim, num_edges, num_faces=0):
  x = rng.uniform(-1, 1, (num_points, dim)).astype(np.float32)
  def cells(count, k):
    rows = [rng.choice(num_points, k, replace=False) for _ in range(count)]
    return np.array(rows, np.int32).reshape(count, k)
  return x, cells(num_edges, 2), cells(num_faces, 3)


# ----------------------------------------------------------------- exact


@pytest.mark.parametrize("tie", ["closed", "open"])
def test_exact_equals_brute_force_with_exact_ties(tie):
  # Integer coordinates and axis directions: heights land exactly on thresholds.
  rng = np.random.default_rng(0)
  x = rng.integers(-3, 4, (12, 2)).astype(np.float32)
  edges = np.stack([rng.choice(12, 2, replace=False) for _ in range(20)]).astype(np.int32)
  faces = np.stack([rng.choice(12, 3, replace=False) for _ in range(6)]).astype(np.int32)
  directions = np.array([[1, 0], [0, 1], [-1, 0], [1, 1]], np.float32)
  thresholds = np.arange(-4, 5, dtype=np.float32)
  got = ect(x, edges, faces, directions=directions, thresholds=thresholds, tie=tie)
  np.testing.assert_array_equal(got, brute_force_ect(x, [edges, faces], directions, thresholds, tie))


@hypothesis.settings(deadline=None, max_examples=25)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), num_points=st.integers(1, 15),
                  dim=st.sampled_from([2, 3]), num_edges=st.integers(0, 25),
                  num_faces=st.integers(0, 8))
def test_exact_equals_brute_force_property(seed, num_points, dim, num_edges, num_faces):
  rng = np.random.default_rng(seed)
  if num_points < 3:
    num_edges, num_faces = (num_edges if num_points == 2 else 0), 0
  x, edges, faces = random_complex(rng, num_points, dim, num_edges, num_faces)
  directions = np.asarray(uniform_directions(jax.random.key(seed % 1000), 5, dim))
  thresholds = np.linspace(-1.9, 1.9, 16, dtype=np.float32)
  # Padded to fixed sizes (one compilation per dimension; padding exercised).
  padded = lambda a, n: np.concatenate([a, np.full((n - len(a),) + a.shape[1:], -1, a.dtype)])
  mask = np.arange(15) < num_points
  got = ect(padded(x, 15)[None], padded(edges, 25)[None], padded(faces, 8)[None],
            point_mask=mask[None], directions=directions, thresholds=thresholds)[0]
  np.testing.assert_array_equal(got, brute_force_ect(x, [edges, faces], directions, thresholds))


def test_top_threshold_is_the_euler_characteristic_and_empty_complex_parts():
  # A hollow triangle (chi 0), a filled one (chi 1), an isolated point (chi 1).
  x = np.array([[0, 0], [1, 0], [0, 1], [3, 3]], np.float32)
  edges = np.array([[0, 1], [1, 2], [2, 0]], np.int32)
  up = np.array([[0.0, 1.0]], np.float32)
  thresholds = np.array([-1.0, 0.5, 10.0], np.float32)
  np.testing.assert_array_equal(ect(x[:3], edges, directions=up, thresholds=thresholds),
                                [[0, 1, 0]])
  filled = ect(x[:3], edges, np.array([[0, 1, 2]], np.int32), directions=up,
               thresholds=thresholds)
  np.testing.assert_array_equal(filled, [[0, 1, 1]])
  np.testing.assert_array_equal(ect(x, edges, directions=up, thresholds=thresholds), [[0, 1, 1]])
  # Point clouds: a cumulative count of points.
  np.testing.assert_array_equal(ect(x, directions=up, thresholds=thresholds), [[0, 2, 4]])


# ----------------------------------------------------------------- smooth


@pytest.mark.parametrize("scale", [200.0, 5.0])  # narrow and wide bands
def test_smooth_equals_dense_dect_formula(scale):
  rng = np.random.default_rng(1)
  x, edges, faces = random_complex(rng, 40, 3, 80, 30)
  directions = np.asarray(uniform_directions(jax.random.key(1), 16, 3))
  thresholds = np.asarray(linear_thresholds(1.1, 32))
  want = dense_dect(x, [edges, faces], directions, thresholds, scale)
  for impl in ("banded", "dense"):
    got = ect(x, edges, faces, directions=directions, thresholds=thresholds, scale=scale,
              impl=impl)
    np.testing.assert_allclose(got, want, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_smooth_tends_to_exact_with_half_at_ties():
  x = np.array([[0.0, 0.0], [0.0, 1.0]], np.float32)
  edges = np.array([[0, 1]], np.int32)
  up = np.array([[0.0, 1.0]], np.float32)
  got = ect(x, edges, directions=up, thresholds=np.array([-0.5, 0.0, 0.5, 1.0, 1.5], np.float32),
            scale=1e4)
  # t = 1: the top vertex and the edge are both at 1/2 and cancel.
  np.testing.assert_allclose(got, [[0.0, 0.5, 1.0, 1.0, 1.0]], atol=1e-6)


def test_too_narrow_band_is_flagged_with_nan():
  rng = np.random.default_rng(2)
  x, edges, _ = random_complex(rng, 20, 2, 20)
  thresholds = linear_thresholds(1.0, 64)
  needed = band_width(thresholds, 10.0)
  kwargs = dict(directions=circle_directions(8), thresholds=thresholds, scale=10.0)
  assert np.isfinite(np.asarray(ect(x, edges, band_width=needed, **kwargs))).all()
  assert np.isnan(np.asarray(ect(x, edges, band_width=2, **kwargs))).all()


def test_traced_scale_needs_a_static_band_width():
  x = jnp.zeros((3, 2))
  kwargs = dict(directions=circle_directions(4), thresholds=linear_thresholds(1.0, 8))
  with pytest.raises(ValueError, match="band_width"):
    jax.jit(lambda s: ect(x, scale=s, **kwargs))(10.0)
  width = band_width(kwargs["thresholds"], 10.0)
  jitted = jax.jit(lambda s: ect(x, scale=s, band_width=width, **kwargs))(10.0)
  np.testing.assert_allclose(jitted, ect(x, scale=10.0, **kwargs), atol=1e-6)


# ----------------------------------------------------------------- batching


def _padded_batch(rng, sizes, dim=3, max_points=12, max_edges=20):
  xs = np.zeros((len(sizes), max_points, dim), np.float32)
  es = -np.ones((len(sizes), max_edges, 2), np.int32)
  mask = np.zeros((len(sizes), max_points), bool)
  singles = []
  for b, (n, e) in enumerate(sizes):
    x, edges, _ = random_complex(rng, n, dim, e)
    xs[b, :n], es[b, :e], mask[b, :n] = x, edges, True
    xs[b, n:] = np.nan  # padding may hold anything
    singles.append((x, edges))
  return xs, es, mask, singles


@pytest.mark.parametrize("scale", [None, 50.0])
def test_padded_and_ragged_batches_equal_single_complexes(scale):
  rng = np.random.default_rng(3)
  xs, es, mask, singles = _padded_batch(rng, [(12, 20), (5, 4), (1, 0)])
  kwargs = dict(directions=uniform_directions(jax.random.key(3), 6, 3),
                thresholds=linear_thresholds(1.8, 12), scale=scale)
  single = lambda x, e: jax.jit(lambda x, e: ect(x, e, **kwargs))(x, e)  # one compile per shape
  want = np.stack([single(x, e) for x, e in singles])
  np.testing.assert_allclose(ect(xs, es, point_mask=mask, **kwargs), want, atol=1e-5)
  # Ragged: concatenated points with segment ids, edges re-indexed.
  offsets = np.cumsum([0] + [len(x) for x, _ in singles])
  x_cat = np.concatenate([x for x, _ in singles])
  e_cat = np.concatenate([e + o for (_, e), o in zip(singles, offsets)])
  seg = np.repeat(np.arange(3), [len(x) for x, _ in singles]).astype(np.int32)
  ragged = ect(x_cat, e_cat, segment_ids=seg, num_segments=3, **kwargs)
  np.testing.assert_allclose(ragged, want, atol=1e-5)
  jitted = jax.jit(lambda x, e, m: ect(x, e, point_mask=m, **kwargs))(xs, es, mask)
  np.testing.assert_allclose(jitted, want, atol=1e-5)


def test_nan_point_flags_only_its_complex():
  rng = np.random.default_rng(4)
  xs, es, mask, _ = _padded_batch(rng, [(6, 5), (6, 5)], dim=2)
  xs[1, 2, 0] = np.nan
  out = np.asarray(ect(xs, es, point_mask=mask, directions=circle_directions(4),
                       thresholds=linear_thresholds(1.5, 8)))
  assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


def test_out_of_range_index_under_jit_flags_its_complex():
  x = jnp.zeros((2, 3, 2))
  run = jax.jit(lambda e: ect(x, e, directions=circle_directions(2),
                              thresholds=linear_thresholds(1.0, 3)))
  out = run(jnp.array([[[0, 1]], [[0, 7]]], jnp.int32))
  assert np.isfinite(np.asarray(out[0])).all() and np.isnan(np.asarray(out[1])).all()
  # First vertex out of range: offset by the row it would name the next complex's vertex.
  out = run(jnp.array([[[3, 0]], [[0, 1]]], jnp.int32))
  assert np.isnan(np.asarray(out[0])).all() and np.isfinite(np.asarray(out[1])).all()


# ----------------------------------------------------------------- gradients


def _formula(x, edges, directions, thresholds, scale, faces=None):
  """Autodiff oracle: the dense formula in jnp, no custom VJP (`jnp.max`
  shares a cell's gradient equally among tied highest vertices)."""
  h = x @ directions.T
  cells = [(h, 1.0), (h[edges].max(axis=1), -1.0)]
  cells += [] if faces is None else [(h[faces].max(axis=1), 1.0)]
  return sum(sign * jax.nn.sigmoid(scale * (thresholds[None, None, :] - hc[:, :, None])).sum(0)
             for hc, sign in cells)


@pytest.mark.parametrize("impl", ["banded", "dense", "pallas_interpret"])
def test_smooth_gradients_match_autodiff_of_the_formula(impl):
  rng = np.random.default_rng(5)
  x, edges, _ = random_complex(rng, 25, 3, 40)
  directions = uniform_directions(jax.random.key(5), 8, 3)
  thresholds = linear_thresholds(1.2, 16)
  g = jnp.asarray(rng.normal(size=(8, 16)).astype(np.float32))
  ours = jax.grad(lambda x, v, s, t: jnp.sum(g * ect(
      x, edges, directions=v, thresholds=t, scale=s, impl=impl, band_width=16)),
      argnums=(0, 1, 2, 3))(x, directions, 20.0, thresholds)
  want = jax.grad(lambda x, v, s, t: jnp.sum(g * _formula(x, edges, v, t, s)),
                  argnums=(0, 1, 2, 3))(x, directions, 20.0, thresholds)
  for a, b in zip(ours, want):
    np.testing.assert_allclose(a, b, atol=2e-4 * max(1.0, float(jnp.abs(b).max())))


@pytest.mark.parametrize("impl", ["banded", "dense"])
def test_smooth_gradients_at_tied_heights_share_each_cell_equally(impl):
  # Integer coordinates and axis directions: many edges and triangles have two
  # or three highest vertices, where cells are folded onto shared vertices.
  rng = np.random.default_rng(8)
  x = jnp.asarray(rng.integers(-2, 3, (14, 2)).astype(np.float32))
  edges = np.stack([rng.choice(14, 2, replace=False) for _ in range(30)]).astype(np.int32)
  faces = np.stack([rng.choice(14, 3, replace=False) for _ in range(10)]).astype(np.int32)
  directions = jnp.array([[1, 0], [0, 1], [-1, 0], [0, -1], [0.6, 0.8]], jnp.float32)
  thresholds = linear_thresholds(3.0, 20)
  g = jnp.asarray(rng.normal(size=(5, 20)).astype(np.float32))
  loss = lambda f: (lambda x, v: jnp.sum(g * f(x, v)))
  ours = jax.grad(loss(lambda x, v: ect(x, edges, faces, directions=v, thresholds=thresholds,
                                        scale=6.0, impl=impl)), argnums=(0, 1))(x, directions)
  want = jax.grad(loss(lambda x, v: _formula(x, edges, v, thresholds, 6.0, faces)),
                  argnums=(0, 1))(x, directions)
  for a, b in zip(ours, want):
    np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, float(jnp.abs(b).max())))


def test_pallas_kernel_in_interpret_mode_equals_banded_forward():
  rng = np.random.default_rng(6)
  xs, es, mask, _ = _padded_batch(rng, [(12, 20), (7, 9), (3, 2)])
  kwargs = dict(directions=uniform_directions(jax.random.key(6), 5, 3),
                thresholds=linear_thresholds(1.8, 10), point_mask=mask)
  for scale in (None, 40.0):
    banded = ect(xs, es, scale=scale, **kwargs)
    kernel = ect(xs, es, scale=scale, impl="pallas_interpret",
                 block_sizes=acc.BlockSizes(cells=16, directions=2), **kwargs)
    np.testing.assert_allclose(kernel, banded, atol=1e-5)


def test_exact_transform_is_differentiable_in_nothing_but_weights():
  x = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  grad = jax.grad(lambda x: ect(x, directions=circle_directions(3),
                                thresholds=linear_thresholds(2.0, 5)).sum())(x)
  np.testing.assert_array_equal(grad, 0.0)


# ----------------------------------------------------------------- images


def _explicit_v_complex(mask):
  """Pixels as vertices (centres), edges between 4-neighbours, squares of full 2x2 blocks."""
  h, w = mask.shape
  index = -np.ones((h, w), int)
  index[mask] = np.arange(mask.sum())
  edges, squares = [], []
  for i, j in np.argwhere(mask):
    if i + 1 < h and mask[i + 1, j]:
      edges.append([index[i, j], index[i + 1, j]])
    if j + 1 < w and mask[i, j + 1]:
      edges.append([index[i, j], index[i, j + 1]])
    if i + 1 < h and j + 1 < w and mask[i:i + 2, j:j + 2].all():
      squares.append(index[i:i + 2, j:j + 2].reshape(-1))
  points = np.argwhere(mask).astype(np.float64) + 0.5
  return points, [(np.array(edges).reshape(-1, 2), -1), (np.array(squares).reshape(-1, 4), 1)]


def test_image_ect_v_construction_equals_the_explicit_complex():
  rng = np.random.default_rng(7)
  mask = rng.random((7, 9)) < 0.6
  directions = np.asarray(uniform_directions(jax.random.key(7), 6, 2))
  thresholds = np.linspace(-1, 1, 21).astype(np.float32)
  points, cells = _explicit_v_complex(mask)
  points = (points - np.array([3.5, 4.5])) / (0.5 * np.hypot(7, 9))
  want = brute_force_cells(points, cells, directions, thresholds)
  got = image_ect(mask, directions=directions, thresholds=thresholds, construction="V")
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("ndim,shape", [(2, (5, 6, 11)), (3, (3, 5, 4, 6))])
def test_image_ect_t_construction_ends_at_the_euler_characteristic(ndim, shape):
  rng = np.random.default_rng(ndim)
  masks = rng.random(shape) < 0.5
  masks[0] = False
  masks[1] = True
  directions = uniform_directions(jax.random.key(ndim), 4, ndim)
  curves = image_ect(masks, ndim=ndim, directions=directions,
                     thresholds=linear_thresholds(1.0, 6))
  chi = metrics.euler_characteristic(masks, ndim=ndim)
  np.testing.assert_array_equal(curves[:, :, -1], np.repeat(np.asarray(chi)[:, None], 4, 1))
  # Below every height nothing is counted.
  below = image_ect(masks, ndim=ndim, directions=directions, thresholds=jnp.array([-1.01]))
  np.testing.assert_array_equal(below, 0.0)


def test_weighted_image_ect_is_linear_and_differentiable_in_pixel_values():
  rng = np.random.default_rng(8)
  image = jnp.asarray(rng.random((2, 6, 7)).astype(np.float32))
  kwargs = dict(directions=circle_directions(5), thresholds=linear_thresholds(1.0, 9),
                weighted=True)
  ones = image_ect(jnp.ones_like(image), **kwargs)
  binary = image_ect(jnp.ones_like(image), **{**kwargs, "weighted": False})
  np.testing.assert_allclose(ones, binary, atol=1e-6)  # weight 1 everywhere: plain ECT
  np.testing.assert_allclose(image_ect(2 * image, **kwargs), 2 * image_ect(image, **kwargs),
                             atol=1e-5)
  grad = jax.grad(lambda im: image_ect(im, scale=30.0, **kwargs).sum())(image)
  assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).max()) > 0


# ----------------------------------------------------------------- directions


def test_direction_helpers():
  v = uniform_directions(jax.random.key(0), 7, 4)
  np.testing.assert_allclose(jnp.linalg.norm(v, axis=1), 1.0, atol=1e-6)
  c = circle_directions(8)
  np.testing.assert_allclose(c[2], [0.0, 1.0], atol=1e-6)
  np.testing.assert_allclose(circle_directions(5, endpoint=True)[-1], c[0], atol=1e-6)
  m = multiview_directions(6, 3)
  assert m.shape == (18, 3)
  np.testing.assert_allclose(jnp.linalg.norm(m, axis=1), 1.0, atol=1e-6)
  np.testing.assert_array_equal(m[:6, 2], 0.0)  # first circle: axes (0, 1)
  np.testing.assert_allclose(jnp.linalg.norm(project_to_sphere(jnp.ones((2, 3)) * 5), axis=1), 1, atol=1e-6)
  np.testing.assert_allclose(linear_thresholds(1.1, 3), [-1.1, 0.0, 1.1], atol=1e-7)


# ----------------------------------------------------------------- errors


_ARGS = dict(directions=circle_directions(3), thresholds=linear_thresholds(1.0, 4))


@pytest.mark.parametrize("call,match", [
    (lambda: ect(jnp.zeros((3, 2)), jnp.zeros((1, 2)), **_ARGS), "integer vertex indices"),
    (lambda: ect(jnp.zeros((3, 2)), jnp.array([[0, 3]]), **_ARGS), "out of range"),
    (lambda: ect(jnp.zeros((0, 2)), **_ARGS), "no points"),
    (lambda: ect(jnp.zeros((3,)), **_ARGS), "num_points, dim"),
    (lambda: ect(jnp.zeros((3, 2), jnp.int32), **_ARGS), "floating"),
    (lambda: ect(jnp.zeros((3, 3)), **_ARGS), "directions"),
    (lambda: ect(jnp.zeros((3, 2)), directions=circle_directions(3),
                 thresholds=jnp.array([1.0, 0.0])), "sorted"),
    (lambda: ect(jnp.zeros((3, 2)), directions=circle_directions(3),
                 thresholds=jnp.zeros((0,))), "non-empty"),
    (lambda: ect(jnp.zeros((3, 2)), jnp.array([[0]]), **_ARGS), "k \\+ 1 >= 2"),
    (lambda: ect(jnp.zeros((3, 2)), scale=-1.0, **_ARGS), "scale"),
    (lambda: ect(jnp.zeros((3, 2)), tie="left", **_ARGS), "tie"),
    (lambda: ect(jnp.zeros((3, 2)), impl="cuda", **_ARGS), "impl"),
    (lambda: ect(jnp.zeros((3, 2)), segment_ids=jnp.zeros(3, jnp.int32), **_ARGS),
     "num_segments"),
    (lambda: ect(jnp.zeros((2, 3, 2)), jnp.zeros((3, 1, 2), jnp.int32), **_ARGS), "leading axes"),
    (lambda: ect(jnp.zeros((2, 3, 2)), point_mask=jnp.ones((3,), bool), **_ARGS), "point_mask"),
    (lambda: image_ect(jnp.ones((4, 4)), construction="X", **_ARGS), "construction"),
    (lambda: image_ect(jnp.ones((4, 4), jnp.int32), weighted=True, **_ARGS), "floating"),
])
def test_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call()
