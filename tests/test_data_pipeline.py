"""Tests for the stateless batch sampler."""

from __future__ import annotations

import numpy as np
import pytest

from topojax.data import brick_walls
from topojax.data import sample_batch


def _indexed(n, height=6, width=6):
  """Images whose value encodes the example index, and matching labels."""
  images = np.broadcast_to((np.arange(n) / n)[:, None, None, None], (n, height, width, 3))
  labels = np.broadcast_to(np.arange(n)[:, None, None], (n, height, width))
  return np.array(images), np.array(labels)


def test_shapes_and_dtypes():
  images, labels = brick_walls(5, seed=0)
  for augment in (True, False):
    x, y = sample_batch(images, labels, step=2, batch_size=3, seed=0, augment=augment)
    assert x.shape == (3, 64, 64, 3) and x.dtype == np.float32
    assert y.shape == (3, 64, 64) and y.dtype == np.int32
    assert x.min() >= 0 and x.max() <= 1


def test_pure_function_of_step_and_seed():
  images, labels = brick_walls(7, seed=1)
  batches = [sample_batch(images, labels, step=s, batch_size=3, seed=2) for s in range(6)]
  # Resuming at step 4 (no state carried over) reproduces the batch exactly.
  x, y = sample_batch(images, labels, step=4, batch_size=3, seed=2)
  np.testing.assert_array_equal(x, batches[4][0])
  np.testing.assert_array_equal(y, batches[4][1])
  assert not np.array_equal(batches[0][0], batches[1][0])
  other = sample_batch(images, labels, step=4, batch_size=3, seed=3)
  assert not np.array_equal(other[0], x)


@pytest.mark.parametrize("n, batch_size", [(8, 4), (7, 3), (3, 5)])
def test_each_epoch_visits_every_example_once(n, batch_size):
  images, labels = _indexed(n)
  steps = -(-3 * n // batch_size)
  seen = np.concatenate([
      sample_batch(images, labels, step=s, batch_size=batch_size, seed=0, augment=False)[1][:, 0, 0]
      for s in range(steps)])
  for epoch in range(3):
    np.testing.assert_array_equal(np.sort(seen[epoch * n:(epoch + 1) * n]), np.arange(n))
  # Images and labels stay paired, and epochs are shuffled differently.
  x, y = sample_batch(images, labels, step=1, batch_size=batch_size, seed=0, augment=False)
  np.testing.assert_allclose(x[:, 0, 0, 0], y[:, 0, 0] / n, rtol=1e-6)
  if n >= 7:
    assert not np.array_equal(seen[:n], seen[n:2 * n])


@pytest.mark.parametrize("height, width", [(16, 16), (12, 20)])
def test_augmentation_keeps_images_and_labels_aligned(height, width):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, (4, height, width))
  images = np.stack([0.25 + 0.5 * labels,
                     rng.uniform(size=labels.shape),
                     rng.uniform(size=labels.shape)], -1)
  changed = 0
  for step in range(16):
    x, y = sample_batch(images, labels, step=step, batch_size=2, seed=0)
    plain_x, plain_y = sample_batch(images, labels, step=step, batch_size=2, seed=0, augment=False)
    assert x.shape == (2, height, width, 3)
    for k in range(2):
      # Brightness/contrast are increasing affine maps, so channel 0 still
      # separates the label classes exactly.
      assert x[k, ..., 0][y[k] == 1].min() > x[k, ..., 0][y[k] == 0].max()
      assert y[k].sum() == plain_y[k].sum()
      changed += not np.array_equal(y[k], plain_y[k])
      assert not np.allclose(x[k], plain_x[k])
  assert changed >= 16


def test_augmentation_clips_to_unit_range():
  images, labels = np.ones((2, 8, 8, 3)), np.zeros((2, 8, 8), np.int32)
  for step in range(8):
    x, _ = sample_batch(images, labels, step=step, batch_size=2, seed=0)
    assert x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("images_shape, labels_shape, kwargs, match", [
    ((4, 8, 8), (4, 8, 8), {}, "images"),
    ((4, 8, 8, 3), (4, 8, 8, 1), {}, "labels"),
    ((4, 8, 8, 3), (3, 8, 8), {}, "labels"),
    ((4, 8, 8, 3), (4, 8, 9), {}, "labels"),
    ((0, 8, 8, 3), (0, 8, 8), {}, "images"),
    ((4, 8, 8, 3), (4, 8, 8), dict(batch_size=0), "batch_size"),
    ((4, 8, 8, 3), (4, 8, 8), dict(step=-1), "step"),
    ((4, 8, 8, 3), (4, 8, 8), dict(seed=-1), "seed"),
])
def test_argument_validation(images_shape, labels_shape, kwargs, match):
  kwargs = dict(step=0, batch_size=2, seed=0) | kwargs
  with pytest.raises(ValueError, match=match):
    sample_batch(np.zeros(images_shape), np.zeros(labels_shape, np.int32), **kwargs)


def test_float_labels_are_rejected():
  with pytest.raises(ValueError, match="labels"):
    sample_batch(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4)), step=0, batch_size=1, seed=0)
