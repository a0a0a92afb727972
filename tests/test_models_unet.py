"""UNet: shapes, dtypes, jit, gradients and input validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from topojax.models import UNet
from topojax.models import get_model


def _model(features=(4, 8, 16), in_channels=3, num_classes=2):
  """Initialised under `jit`, as the trainer does (eager init dispatches op by op)."""
  return nnx.jit(lambda: UNet(in_channels, num_classes, features=features, rngs=nnx.Rngs(0)))()


def _apply(model, images):
  """The model under `jax.jit` (eager op-by-op dispatch is slow on CPU)."""
  graphdef, state = nnx.split(model)
  return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))(state, images)


@pytest.fixture(scope="module")
def model():
  """Three levels: H and W must be multiples of 4."""
  return _model()


@pytest.fixture(scope="module")
def flat_model():
  """One level, no pooling: any H and W."""
  return _model(features=(4,), in_channels=1, num_classes=3)


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 16, 32), (2, 32, 8)])
def test_output_shape_and_dtype(model, shape, getkey):
  logits = _apply(model, jax.random.uniform(getkey(), shape + (3,)))
  assert logits.shape == shape + (2,)
  assert logits.dtype == jnp.float32


def test_one_level_takes_any_size(flat_model, getkey):
  logits = _apply(flat_model, jax.random.uniform(getkey(), (2, 5, 7, 1)))
  assert logits.shape == (2, 5, 7, 3)


def test_jit_matches_eager(flat_model, getkey):
  images = jax.random.uniform(getkey(), (2, 6, 6, 1))
  np.testing.assert_allclose(_apply(flat_model, images), flat_model(images),
                             rtol=1e-5, atol=1e-5)


def test_grads_are_finite_and_reach_every_param(model, getkey):
  images = jax.random.uniform(getkey(), (2, 16, 16, 3))

  @nnx.jit
  def grad_fn(model):
    loss = lambda model: jnp.mean(jax.nn.log_softmax(model(images))[..., 1])
    return nnx.grad(loss)(model)

  grads = grad_fn(model)
  leaves = jax.tree.leaves(grads)
  assert len(leaves) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


@pytest.mark.parametrize("shape", [(1, 14, 16, 3), (1, 16, 18, 3)])
def test_spatial_size_not_divisible_raises(model, shape):
  with pytest.raises(ValueError, match=r"divisible by 2\*\*2 = 4, got H, W"):
    _apply(model, jnp.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 16, 16, 1), (16, 16, 3)])
def test_wrong_channels_or_rank_raises(model, shape):
  with pytest.raises(ValueError, match="channels-last"):
    _apply(model, jnp.zeros(shape))


def test_bad_constructor_arguments_raise():
  with pytest.raises(ValueError, match="features"):
    UNet(3, 2, features=(), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="positive"):
    UNet(3, 0, features=(4,), rngs=nnx.Rngs(0))


def test_registry():
  assert get_model("unet") is UNet
  with pytest.raises(ValueError, match="Unknown model"):
    get_model("resnet")
