"""soft_skeleton: equal to clDice/MONAI's soft_skel, and well-behaved under jit/vmap/grad."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from topojax.kernels import soft_skeleton as kernel
from topojax.skeleton import soft_dilate, soft_erode, soft_open, soft_skeleton, soft_skeleton_reference

torch = pytest.importorskip("torch")
monai_cldice = pytest.importorskip("monai.losses.cldice")


def _monai(x, num_iter):
  """MONAI's soft_skel on a channels-first copy `[B, C, *spatial]`."""
  return monai_cldice.soft_skel(torch.from_numpy(np.ascontiguousarray(x)), num_iter).numpy()


def _random_input(rng, shape, kind):
  if kind == "binary":  # plateaus and exact ties everywhere
    return (rng.random(shape) > 0.5).astype(np.float32)
  if kind == "quantised":  # few distinct levels: ties between unequal neighbours
    return (rng.integers(0, 4, shape) / 3).astype(np.float32)
  return rng.random(shape).astype(np.float32)


@pytest.mark.parametrize("kind", ["uniform", "binary", "quantised"])
@pytest.mark.parametrize("shape,ndim", [
    ((2, 1, 32, 32), 2), ((1, 3, 17, 9), 2), ((1, 1, 1, 7), 2), ((1, 1, 1, 1), 2),
    ((2, 1, 8, 9, 10), 3), ((1, 2, 5, 1, 6), 3),
])
@pytest.mark.parametrize("num_iter", [0, 1, 3, 10])
def test_matches_monai(shape, ndim, num_iter, kind):
  x = _random_input(np.random.default_rng(num_iter), shape, kind)
  expected = _monai(x, num_iter)
  np.testing.assert_allclose(soft_skeleton(x, num_iter=num_iter, ndim=ndim), expected, atol=1e-6)
  np.testing.assert_allclose(soft_skeleton_reference(x, num_iter=num_iter, ndim=ndim), expected, atol=1e-6)


@hypothesis.settings(deadline=None, max_examples=40)
@hypothesis.given(
    ndim=st.sampled_from([2, 3]),
    sizes=st.lists(st.integers(1, 12), min_size=3, max_size=3),
    num_iter=st.integers(0, 6),
    kind=st.sampled_from(["uniform", "binary", "quantised"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_monai_property(ndim, sizes, num_iter, kind, seed):
  shape = (2, 1, *sizes[:ndim])
  x = _random_input(np.random.default_rng(seed), shape, kind)
  np.testing.assert_allclose(soft_skeleton(x, num_iter=num_iter, ndim=ndim), _monai(x, num_iter), atol=1e-6)


def test_morphology_operators_match_torch_pools():
  x = np.random.default_rng(0).random((2, 1, 11, 13)).astype(np.float32)
  t = torch.from_numpy(x)
  np.testing.assert_array_equal(soft_erode(x), monai_cldice.soft_erode(t).numpy())
  np.testing.assert_array_equal(soft_dilate(x), monai_cldice.soft_dilate(t).numpy())
  np.testing.assert_array_equal(soft_open(x), monai_cldice.soft_open(t).numpy())
  x3 = np.random.default_rng(1).random((1, 1, 5, 6, 7)).astype(np.float32)
  np.testing.assert_array_equal(soft_erode(x3, ndim=3), monai_cldice.soft_erode(torch.from_numpy(x3)).numpy())


def test_border_is_not_eroded():
  full = jnp.ones((5, 6))
  np.testing.assert_array_equal(soft_erode(full), full)
  # A full image has an empty skeleton: every opening restores it exactly.
  np.testing.assert_array_equal(soft_skeleton(full, num_iter=4), jnp.zeros((5, 6)))


def test_hand_computed_bar_and_empty():
  bar = jnp.zeros((7, 9)).at[2:5, 1:8].set(1.0)
  skel = soft_skeleton(bar, num_iter=3)
  expected = np.zeros((7, 9))
  expected[3, 2:7] = 1.0
  np.testing.assert_array_equal(skel, expected)
  np.testing.assert_array_equal(soft_skeleton(jnp.zeros((4, 4, 4)), ndim=3), 0.0)


def test_leading_axes_batch_and_vmap():
  x = jax.random.uniform(jax.random.key(0), (2, 3, 16, 12))
  batched = soft_skeleton(x, num_iter=3)
  per_image = jax.vmap(jax.vmap(lambda im: soft_skeleton(im, num_iter=3)))(x)
  np.testing.assert_allclose(batched, per_image, atol=1e-7)
  np.testing.assert_allclose(batched[1, 2], soft_skeleton(x[1, 2], num_iter=3), atol=1e-7)


def test_values_in_unit_interval():
  x = jax.random.uniform(jax.random.key(1), (4, 24, 24))
  skel = soft_skeleton(x, num_iter=10)
  assert float(skel.min()) >= 0.0 and float(skel.max()) <= 1.0


@pytest.mark.parametrize("ndim,shape", [(2, (2, 12, 10)), (3, (1, 6, 7, 5))])
def test_grad_matches_reference_on_continuous_input(ndim, shape):
  x = jax.random.uniform(jax.random.key(2), shape)
  w = jax.random.normal(jax.random.key(3), shape)
  f = lambda fn: jax.grad(lambda v: jnp.sum(w * fn(v, num_iter=3, ndim=ndim)))(x)
  g_fast, g_ref = f(soft_skeleton), f(soft_skeleton_reference)
  assert bool(jnp.all(jnp.isfinite(g_fast)))
  assert float(jnp.abs(g_fast).max()) > 0.0
  np.testing.assert_allclose(g_fast, g_ref, atol=1e-5)


def test_bfloat16_and_float64_dtypes_preserved():
  x = jnp.ones((6, 6), jnp.bfloat16)
  assert soft_skeleton(x, num_iter=2).dtype == jnp.bfloat16


@pytest.mark.parametrize("call,match", [
    (lambda: soft_skeleton(jnp.ones((4, 4)), ndim=4), "ndim"),
    (lambda: soft_skeleton(jnp.ones((4,)), ndim=2), "at least 2 axes"),
    (lambda: soft_skeleton(jnp.ones((4, 0))), "empty spatial axis"),
    (lambda: soft_skeleton(jnp.ones((4, 4), jnp.int32)), "floating"),
    (lambda: soft_skeleton(jnp.ones((4, 4)), num_iter=-1), "num_iter"),
    (lambda: soft_skeleton(jnp.ones((4, 4)), num_iter=2.0), "num_iter"),
])
def test_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_grad_under_vmap_matches_batched_grad():
  x = jax.random.uniform(jax.random.key(4), (3, 10, 9))
  batched = jax.grad(lambda v: jnp.sum(soft_skeleton(v, num_iter=4) ** 2))(x)
  per_image = jax.vmap(jax.grad(lambda v: jnp.sum(soft_skeleton(v, num_iter=4) ** 2)))(x)
  np.testing.assert_allclose(per_image, batched, atol=1e-6)


@pytest.mark.parametrize("ndim,shape,block", [
    (2, (3, 1, 13, 10), 2),  # three images in blocks of two: the last block is padded
    (3, (2, 6, 5, 7), 1),
])
def test_pallas_kernels_in_interpret_mode_equal_the_xla_path(ndim, shape, block):
  x = _random_input(np.random.default_rng(ndim), shape, "quantised")  # ties exercise the routing
  w = jax.random.normal(jax.random.key(5), shape)
  blocks = kernel.BlockSizes(batch=block)

  def value_and_grad(impl):
    f = lambda v: jnp.sum(w * soft_skeleton(v, num_iter=3, ndim=ndim, impl=impl, block_sizes=blocks))
    return soft_skeleton(x, num_iter=3, ndim=ndim, impl=impl, block_sizes=blocks), jax.grad(f)(x)

  skel_kernel, grad_kernel = value_and_grad("pallas_interpret")
  skel_xla, grad_xla = value_and_grad("xla")
  np.testing.assert_array_equal(skel_kernel, skel_xla)
  np.testing.assert_array_equal(skel_kernel, soft_skeleton_reference(x, num_iter=3, ndim=ndim))
  np.testing.assert_allclose(grad_kernel, grad_xla, atol=1e-6)
  assert float(jnp.abs(grad_kernel).max()) > 0.0


def test_pallas_kernels_directly_against_the_reference():
  x = jax.random.uniform(jax.random.key(6), (2, 11, 9))
  g = jax.random.normal(jax.random.key(7), x.shape)
  skel = kernel.soft_skeleton_pallas(x, 4, 2, interpret=True)
  np.testing.assert_allclose(skel, kernel.soft_skeleton_reference(x, 4, 2), atol=1e-7)
  _, vjp = jax.vjp(lambda v: kernel.soft_skeleton_reference(v, 4, 2), x)
  np.testing.assert_allclose(kernel.soft_skeleton_grad_pallas(x, g, 4, 2, interpret=True),
                             vjp(g)[0], atol=1e-5)  # continuous input: no ties to split


def test_unknown_impl_raises():
  with pytest.raises(ValueError, match="impl"):
    soft_skeleton(jnp.ones((4, 4)), impl="cuda")
