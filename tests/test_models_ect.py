"""ECTLayer and ECTClassifier: shapes, constraints on learned directions and
scale, jit and gradients; the ECT data sets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from topojax import data
from topojax.ect import ect
from topojax.ect import image_ect
from topojax.models import ECTClassifier
from topojax.models import ECTLayer
from topojax.models import get_model

D, T = 8, 8


def _clouds(getkey, batch=4, n=12, dim=2):
  x = jax.random.uniform(getkey(), (batch, n, dim), minval=-0.7, maxval=0.7)
  mask = jnp.arange(n)[None, :] < jnp.array([n, n - 3, 5, 1])[:batch, None]
  return x, mask


def test_layer_matches_the_core_op_and_normalizes(getkey):
  x, mask = _clouds(getkey)
  layer = ECTLayer(2, num_directions=D, num_thresholds=T, scale=10.0, rngs=nnx.Rngs(0))
  out = layer(x, point_mask=mask)
  assert out.shape == (4, D, T)
  expected = ect(x, point_mask=mask, directions=layer.directions(),
                 thresholds=jnp.linspace(-1.0, 1.0, T), scale=10.0)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  edges = jnp.broadcast_to(jnp.array([[0, 1], [1, 2], [-1, -1]]), (4, 3, 2))
  assert layer(x, edges, point_mask=mask).shape == (4, D, T)

  by_direction = ECTLayer(2, num_directions=D, num_thresholds=T, scale=10.0,
                          normalize="direction_max", rngs=nnx.Rngs(0))(x, point_mask=mask)
  np.testing.assert_allclose(jnp.abs(by_direction).max(-1), 1.0, rtol=1e-5)
  by_image = ECTLayer(2, num_directions=D, num_thresholds=T, scale=10.0,
                      normalize="global_max", rngs=nnx.Rngs(0))(x, point_mask=mask)
  np.testing.assert_allclose(jnp.abs(by_image).max((-2, -1)), 1.0, rtol=1e-5)


def test_image_input_and_fixed_directions(getkey):
  images = jax.random.uniform(getkey(), (3, 6, 6))
  circle = ECTLayer(2, num_directions=D, num_thresholds=T, directions="circle",
                    learn_directions=False, input="image", weighted=True, scale=10.0,
                    rngs=nnx.Rngs(0))
  assert not nnx.state(circle, nnx.Param)  # fixed directions and scale: nothing to learn
  out = circle(images)
  expected = image_ect(images, directions=circle.directions(),
                       thresholds=jnp.linspace(-1.0, 1.0, T), scale=10.0, weighted=True)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  exact = ECTLayer(3, num_directions=D, num_thresholds=T, scale=None, rngs=nnx.Rngs(0))
  assert exact.current_scale() is None
  with pytest.raises(ValueError, match="circle"):
    ECTLayer(3, directions="circle", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="normalize"):
    ECTLayer(2, normalize="l2", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="point clouds"):
    exact(jnp.zeros((2, 5, 2)))


def test_optimizer_keeps_directions_unit_and_scale_above_floor(getkey):
  x, mask = _clouds(getkey)
  model = ECTClassifier(2, 3, num_directions=D, num_thresholds=T, scale=4.0,
                        learn_scale=True, min_scale=1.0, hidden=(16,), rngs=nnx.Rngs(0))
  labels = jnp.array([0, 1, 2, 0])
  # A huge learning rate pushes the raw parameters far; the constraints hold.
  optimizer = nnx.Optimizer(model, optax.sgd(1e3), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    def loss_fn(model):
      logits = model(x, point_mask=mask)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    with jax.numpy_dtype_promotion("standard"):
      optimizer.update(model, grads)
    return loss, grads

  before = model.ect.raw_directions[...]
  for _ in range(3):
    loss, grads = step(model, optimizer)
  assert np.isfinite(float(loss))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["ect"]["raw_directions"][...]).max()) > 0
  assert not np.allclose(model.ect.raw_directions[...], before)
  np.testing.assert_allclose(jnp.linalg.norm(model.ect.directions(), axis=1), 1.0, rtol=1e-5)
  assert float(model.ect.current_scale()) >= 1.0
  assert np.all(np.isfinite(model(x, point_mask=mask)))


def test_scale_gradient_and_floor():
  layer = ECTLayer(2, num_directions=D, num_thresholds=T, scale=8.0, learn_scale=True,
                   rngs=nnx.Rngs(0))
  assert layer.min_scale == 2.0
  np.testing.assert_allclose(layer.current_scale(), 8.0, rtol=1e-5)
  layer.raw_scale[...] = jnp.float32(-50.0)
  np.testing.assert_allclose(layer.current_scale(), 2.0, rtol=1e-5)
  x = jnp.array([[[0.1, 0.2], [0.3, -0.4], [-0.5, 0.0]]])
  grad = nnx.grad(lambda m: m(x).sum())(
      ECTLayer(2, num_directions=D, num_thresholds=T, scale=8.0, learn_scale=True,
               rngs=nnx.Rngs(0)))
  assert np.isfinite(float(grad["raw_scale"][...])) and float(grad["raw_scale"][...]) != 0
  with pytest.raises(ValueError, match="min_scale"):
    ECTLayer(2, scale=8.0, learn_scale=True, min_scale=9.0, rngs=nnx.Rngs(0))


def test_classifier_shapes_and_registry(getkey):
  assert get_model("ect_classifier") is ECTClassifier
  model = ECTClassifier(3, 5, num_directions=D, num_thresholds=T, rngs=nnx.Rngs(0))
  x = jax.random.normal(getkey(), (2, 10, 3))
  assert model(x).shape == (2, 5)
  assert model.features(x).shape == (2, D, T)
  images = ECTClassifier(2, 10, num_directions=D, num_thresholds=T, input="image",
                         weighted=True, rngs=nnx.Rngs(0))
  assert images(jnp.zeros((2, 8, 8))).shape == (2, 10)
  with pytest.raises(ValueError, match="pooling steps"):
    ECTClassifier(2, 3, num_directions=2, num_thresholds=8, rngs=nnx.Rngs(0))


def test_digit_point_clouds_and_graph():
  pytest.importorskip("sklearn")
  points, mask, edges, labels = data.digits_point_clouds(edges=True, center="grid")
  images, image_labels = data.digits_images()
  np.testing.assert_array_equal(labels, image_labels)
  np.testing.assert_array_equal(mask.sum(1), (images > 0).reshape(len(images), -1).sum(1))
  assert np.linalg.norm(points, axis=-1).max() <= 1.0 + 1e-6
  assert np.all(points[~mask] == 0)
  # Every edge joins two present grid neighbours.
  for i in range(5):
    e = edges[i][edges[i, :, 0] >= 0]
    assert mask[i][e].all()
    spacing = 1 / (3.5 * np.sqrt(2))
    np.testing.assert_allclose(np.linalg.norm(points[i, e[:, 0]] - points[i, e[:, 1]], axis=1),
                               spacing, rtol=1e-5)


def test_shapes_are_seeded_masked_and_in_the_unit_ball():
  points, mask, labels = data.shapes_point_clouds(3, num_points=40, min_points=20, seed=2)
  assert points.shape == (12, 40, 3) and points.dtype == np.float32
  assert mask.sum(1).min() >= 20 and np.all(points[~mask] == 0)
  np.testing.assert_allclose(np.linalg.norm(points, axis=-1).max(1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(np.bincount(labels), [3, 3, 3, 3])
  again = data.shapes_point_clouds(3, num_points=40, min_points=20, seed=2)[0]
  np.testing.assert_array_equal(again, points)
  assert not np.array_equal(data.shapes_point_clouds(3, num_points=40, min_points=20,
                                                     seed=3)[0], points)
