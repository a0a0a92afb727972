"""Tests for the stateless batch sampler and the Grain input pipeline."""

from __future__ import annotations

import grain
import jax
import numpy as np
import pytest

from topojax.data import batch_dataset
from topojax.data import batches
from topojax.data import brick_walls
from topojax.data import sample_batch
from topojax.train import sharding


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


# Grain input pipeline.


def _random_data(n=7, height=6, width=5, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(size=(n, height, width, 3)), rng.integers(0, 2, (n, height, width))


@pytest.mark.parametrize("n, batch_size", [(7, 3), (5, 8)])
def test_grain_dataset_equals_sample_batch(n, batch_size):
  images, labels = _random_data(n)
  dataset = batch_dataset(images, labels, batch_size=batch_size, seed=4)
  assert isinstance(dataset, grain.MapDataset)
  for step in (0, 1, 2, 5, 11):
    x, y = dataset[step]
    expected = sample_batch(images, labels, step=step, batch_size=batch_size, seed=4,
                            augment=False)
    np.testing.assert_array_equal(x, expected[0])
    np.testing.assert_array_equal(y, expected[1])
    assert x.dtype == np.float32 and y.dtype == np.int32


@pytest.mark.parametrize("shard_count", [2, 4])
def test_shards_concatenate_to_the_global_batch(shard_count):
  images, labels = _random_data()
  full = batch_dataset(images, labels, batch_size=8, seed=1)
  shards = [batch_dataset(images, labels, batch_size=8, seed=1, shard_index=i,
                          shard_count=shard_count) for i in range(shard_count)]
  for step in (0, 3, 9):
    parts = [shard[step] for shard in shards]
    assert parts[0][0].shape == (8 // shard_count, 6, 5, 3)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), full[step][0])
    np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), full[step][1])


def test_steps_are_independent_of_access_order():
  images, labels = _random_data()
  in_order = [batch_dataset(images, labels, batch_size=3, seed=2)[s] for s in range(8)]
  dataset = batch_dataset(images, labels, batch_size=3, seed=2)
  for step in (7, 2, 5, 0, 2):
    np.testing.assert_array_equal(dataset[step][0], in_order[step][0])
  # A resumed run iterates from its restored step and sees the same batches,
  # with or without prefetching.
  for prefetch in (0, 2):
    resumed = list(batches(dataset, start_step=4, num_steps=4, prefetch=prefetch))
    assert len(resumed) == 4
    for step, (x, y) in zip(range(4, 8), resumed):
      np.testing.assert_array_equal(x, in_order[step][0])
      np.testing.assert_array_equal(y, in_order[step][1])


def test_label_dtypes():
  images, labels = _random_data()
  soft = batch_dataset(images, labels * 0.75, batch_size=2, seed=0)[1][1]
  assert soft.dtype == np.float32 and set(np.unique(soft)) <= {0.0, 0.75}
  for hard in (labels.astype(np.int64), labels.astype(np.uint8), labels.astype(bool)):
    y = batch_dataset(images, hard, batch_size=2, seed=0)[1][1]
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, batch_dataset(images, labels, batch_size=2, seed=0)[1][1])


@pytest.mark.parametrize("labels_dtype, kwargs, match", [
    (np.int32, dict(batch_size=6, shard_count=4), "batch_size"),
    (np.int32, dict(shard_index=2, shard_count=2), "shard_index"),
    (np.int32, dict(shard_index=-1), "shard_index"),
    (np.int32, dict(shard_count=0), "shard_count"),
    (np.int32, dict(batch_size=0), "batch_size"),
    (np.int32, dict(seed=-1), "seed"),
    (np.complex64, {}, "labels"),
])
def test_batch_dataset_validation(labels_dtype, kwargs, match):
  kwargs = dict(batch_size=4, seed=0) | kwargs
  with pytest.raises(ValueError, match=match):
    batch_dataset(np.zeros((4, 8, 8, 3)), np.zeros((4, 8, 8), labels_dtype), **kwargs)


@pytest.mark.parametrize("images_shape, labels_shape", [
    ((4, 8, 8), (4, 8, 8)), ((4, 8, 8, 3), (4, 8, 9)), ((0, 8, 8, 3), (0, 8, 8))])
def test_batch_dataset_shape_validation(images_shape, labels_shape):
  with pytest.raises(ValueError, match="images|labels"):
    batch_dataset(np.zeros(images_shape), np.zeros(labels_shape, int), batch_size=2, seed=0)


def test_batches_validation():
  dataset = batch_dataset(*_random_data(), batch_size=2, seed=0)
  with pytest.raises(ValueError, match="dataset"):
    batches([1, 2], 0, 1)
  with pytest.raises(ValueError, match="start_step"):
    batches(dataset, -1, 1)
  with pytest.raises(ValueError, match="num_steps"):
    batches(grain.MapDataset.range(4), 2, 3)
  with pytest.raises(ValueError, match="num_threads"):
    batches(dataset, 0, 1, num_threads=0)


def test_put_local_batch_matches_put_batch():
  mesh = sharding.make_data_mesh()
  assert sharding.process_batch_shard(mesh) == (0, 1)  # one process: local == global
  index, count = sharding.process_batch_shard(mesh)
  dataset = batch_dataset(*_random_data(), batch_size=8, seed=3, shard_index=index,
                          shard_count=count)
  local = dataset[2]
  placed = sharding.put_local_batch(local, mesh)
  reference = sharding.put_batch(local, mesh)
  for got, want in zip(placed, reference):
    assert got.shape == want.shape and got.sharding == want.sharding
    assert len(got.addressable_shards) == jax.device_count()
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  with pytest.raises(ValueError, match="Batch size"):
    sharding.put_local_batch(np.zeros((6, 2)), mesh)
