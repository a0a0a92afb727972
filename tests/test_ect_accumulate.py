"""topojax.kernels.ect_accumulate: every path (banded, Pallas in interpret
mode, dense) against autodiff of `accumulate_reference`, forward and all
gradients, with per-cell `[M]` and per-direction `[M, D]` weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from topojax.kernels import ect_accumulate as acc

NUM_SEGMENTS = 3


def _inputs(seed, weight_shape, uniform):
  rng = np.random.default_rng(seed)
  num_cells, num_dirs, num_thresholds = 37, 5, 11
  heights = rng.uniform(-1.2, 1.2, (num_cells, num_dirs)).astype(np.float32)
  heights[:4] = np.round(heights[:4] * 4) / 4  # some heights on thresholds
  weights = rng.normal(size=(num_cells,) + weight_shape[1:]).astype(np.float32)
  # Segment ids include dropped ones (negative and past the end).
  segments = rng.integers(-1, NUM_SEGMENTS + 1, num_cells).astype(np.int32)
  thresholds = np.linspace(-1.0, 1.0, num_thresholds, dtype=np.float32)
  if not uniform:
    thresholds = np.sort(rng.uniform(-1.0, 1.0, num_thresholds)).astype(np.float32)
  g = rng.normal(size=(NUM_SEGMENTS, num_dirs, num_thresholds)).astype(np.float32)
  return tuple(map(jnp.asarray, (heights, weights, segments, thresholds, g)))


def _accumulate(impl, width, uniform):
  def run(heights, weights, segments, thresholds, scale):
    curves, _ = acc.accumulate(heights, weights, segments, thresholds, scale, NUM_SEGMENTS,
                               "closed", width, impl, acc.BlockSizes(cells=8, directions=2),
                               uniform)
    return curves
  return run


def _reference(heights, weights, segments, thresholds, scale):
  return acc.accumulate_reference(heights, weights, segments, thresholds, scale,
                                  num_segments=NUM_SEGMENTS)


@pytest.mark.parametrize("impl", ["banded", "pallas_interpret", "dense"])
@pytest.mark.parametrize("weight_shape", [(37,), (37, 5)], ids=["per_cell", "per_direction"])
@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "sorted"])
def test_smooth_forward_and_gradients_equal_autodiff_of_the_reference(impl, weight_shape,
                                                                      uniform):
  heights, weights, segments, thresholds, g = _inputs(0, weight_shape, uniform)
  scale = jnp.float32(12.0)
  width = acc.required_band_width(np.asarray(thresholds), 12.0)
  ours = _accumulate(impl, width, uniform and impl == "banded")
  np.testing.assert_allclose(ours(heights, weights, segments, thresholds, scale),
                             _reference(heights, weights, segments, thresholds, scale),
                             atol=1e-5)
  loss = lambda f: (lambda h, w, t, s: jnp.sum(g * f(h, w, segments, t, s)))
  got = jax.grad(loss(ours), argnums=(0, 1, 2, 3))(heights, weights, thresholds, scale)
  want = jax.grad(loss(_reference), argnums=(0, 1, 2, 3))(heights, weights, thresholds, scale)
  for name, a, b in zip(("heights", "weights", "thresholds", "scale"), got, want):
    assert a.shape == b.shape, name
    np.testing.assert_allclose(a, b, atol=2e-4 * max(1.0, float(jnp.abs(b).max())),
                               err_msg=name)


@pytest.mark.parametrize("impl", ["banded", "pallas_interpret", "dense"])
@pytest.mark.parametrize("weight_shape", [(37,), (37, 5)], ids=["per_cell", "per_direction"])
def test_exact_step_is_linear_in_the_weights_only(impl, weight_shape):
  heights, weights, segments, thresholds, g = _inputs(1, weight_shape, True)
  ours = _accumulate(impl, 0, impl == "banded")
  # Real-valued weights: equal up to summation order (integers add exactly).
  np.testing.assert_allclose(ours(heights, weights, segments, thresholds, None),
                             _reference(heights, weights, segments, thresholds, None), atol=1e-5)
  ints = jnp.round(3 * weights)
  np.testing.assert_array_equal(ours(heights, ints, segments, thresholds, None),
                                _reference(heights, ints, segments, thresholds, None))
  loss = lambda f: (lambda h, w: jnp.sum(g * f(h, w, segments, thresholds, None)))
  dh, dw = jax.grad(loss(ours), argnums=(0, 1))(heights, weights)
  _, want = jax.grad(loss(_reference), argnums=(0, 1))(heights, weights)
  np.testing.assert_array_equal(dh, 0.0)
  np.testing.assert_allclose(dw, want, atol=1e-5)
