"""Tests for the on-device nnU-Net-style augmentation."""

from __future__ import annotations

import colorsys
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from topojax.data import AugmentConfig
from topojax.data import augment_batch

# One non-square shape for every test, so each config compiles once.
BATCH, HEIGHT, WIDTH = 4, 24, 20
PROBABILITIES = [field.name for field in dataclasses.fields(AugmentConfig)
                 if field.name.endswith("_probability")]
SPATIAL = ("rotation_probability", "zoom_probability", "flip_probability")


def _config(always=(), **overrides):
  """All probabilities 0 except those named in `always` (set to 1)."""
  return AugmentConfig(**{name: float(name in always) for name in PROBABILITIES} | overrides)


OFF = _config()
EVERYTHING = _config(PROBABILITIES)
SPATIAL_ONLY = _config(SPATIAL)


def _batch(seed=0):
  """Blocky binary labels and RGB images whose first channel is the label."""
  rng = np.random.default_rng(seed)
  blocks = rng.integers(0, 2, (BATCH, HEIGHT // 4, WIDTH // 4))
  labels = np.kron(blocks, np.ones((4, 4), int)).astype(np.int32)
  images = np.stack([labels, rng.uniform(size=labels.shape), rng.uniform(size=labels.shape)], -1)
  return jnp.asarray(images, jnp.float32), jnp.asarray(labels)


def test_deterministic_per_key(getkey):
  images, labels = _batch()
  key = getkey()
  first = augment_batch(key, images, labels, EVERYTHING)
  again = augment_batch(key, images, labels, EVERYTHING)
  other = augment_batch(getkey(), images, labels, EVERYTHING)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  assert not np.allclose(first[0], other[0])
  # Examples draw independently: identical inputs come out different.
  same = augment_batch(key, jnp.broadcast_to(images[:1], images.shape),
                       jnp.broadcast_to(labels[:1], labels.shape), EVERYTHING)[0]
  assert not np.allclose(same[0], same[1])


@pytest.mark.parametrize("soft", [False, True])
def test_identity_when_all_probabilities_are_zero(getkey, soft):
  images, labels = _batch()
  labels = labels.astype(jnp.float32) * 0.75 if soft else labels
  x, y = augment_batch(getkey(), images, labels, OFF)
  np.testing.assert_array_equal(x, images)
  np.testing.assert_array_equal(y, labels)
  assert y.dtype == labels.dtype


def test_spatial_moves_images_and_labels_together(getkey):
  images, labels = _batch(1)
  changed = 0
  for _ in range(2):
    x, y = augment_batch(getkey(), images, labels, SPATIAL_ONLY)
    # Nearest-resampled labels match the rounded bilinear channel 0 almost
    # everywhere (they differ only where interpolation lands near 0.5).
    agreement = np.mean(np.asarray(y) == np.round(np.asarray(x[..., 0])))
    assert agreement > 0.95, agreement
    assert set(np.unique(y)) <= {0, 1}
    changed += int(np.sum(np.any(np.asarray(y) != np.asarray(labels), axis=(1, 2))))
  assert changed >= 2 * BATCH - 1  # rotation + zoom always on: nearly all move


def test_soft_labels_resample_like_images(getkey):
  images, labels = _batch(1)
  soft = labels.astype(jnp.float32)  # equal to image channel 0
  x, y = augment_batch(getkey(), images, soft, SPATIAL_ONLY)
  assert y.dtype == jnp.float32 and y.shape == labels.shape
  np.testing.assert_allclose(y, x[..., 0], atol=1e-6)
  assert float(y.min()) >= 0 and float(y.max()) <= 1
  assert 0 < float(jnp.mean((y > 0) & (y < 1))) < 0.5  # interpolated edges, not a copy


def test_bounds_and_dtypes_with_everything_on(getkey):
  images, labels = _batch(2)
  for _ in range(2):
    x, y = augment_batch(getkey(), images, labels, EVERYTHING)
    assert x.shape == images.shape and x.dtype == jnp.float32
    assert y.shape == labels.shape and y.dtype == jnp.int32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert set(np.unique(y)) <= {0, 1}


def test_intensity_operations_leave_labels_alone(getkey):
  images, labels = _batch(3)
  intensity = [name for name in PROBABILITIES if name not in SPATIAL]
  x, y = augment_batch(getkey(), images, labels, _config(intensity))
  np.testing.assert_array_equal(y, labels)
  assert not np.allclose(x, images, atol=1e-3)
  assert float(x.min()) >= 0 and float(x.max()) <= 1


def _hues(image):
  """Hue in [0, 1) and saturation of every pixel of an `[H, W, 3]` image."""
  hsv = np.array([colorsys.rgb_to_hsv(*pixel) for pixel in image.reshape(-1, 3)])
  return hsv[:, 0], hsv[:, 1]


def test_hue_jitter_sets_one_hue_per_image(getkey):
  images, labels = _batch(4)
  x, y = augment_batch(getkey(), images, labels, _config(["hue_probability"]))
  assert x.shape == images.shape and y.shape == labels.shape
  np.testing.assert_array_equal(y, labels)
  constant_hues = []
  for k in range(BATCH):
    hue, saturation = _hues(np.asarray(x[k], np.float64))
    colored = hue[saturation > 0.1]
    assert colored.size > 0.5 * hue.size
    # Hue is circular: measure the spread about the circular mean.
    angle = np.angle(np.mean(np.exp(2j * np.pi * colored)))
    spread = np.abs(np.angle(np.exp(2j * np.pi * colored - 1j * angle)))
    assert spread.max() < 0.05
    constant_hues.append(angle)
    assert _hues(np.asarray(images[k], np.float64))[0].std() > 0.1  # input hues varied
  assert np.ptp(constant_hues) > 1e-3  # a different hue per example


def test_jit_and_vmap_match_direct_calls(getkey):
  images, labels = _batch(5)
  stacked_images = jnp.stack([images, images[::-1]])
  stacked_labels = jnp.stack([labels, labels[::-1]])
  key = getkey()

  @jax.jit
  def train_step_augment(key, step, images, labels):
    keys = jax.random.split(jax.random.fold_in(key, step), 2)
    return jax.vmap(augment_batch, in_axes=(0, 0, 0, None))(keys, images, labels, SPATIAL_ONLY)

  x, y = train_step_augment(key, 3, stacked_images, stacked_labels)
  keys = jax.random.split(jax.random.fold_in(key, 3), 2)
  for m in range(2):
    expected = augment_batch(keys[m], stacked_images[m], stacked_labels[m], SPATIAL_ONLY)
    np.testing.assert_allclose(x[m], expected[0], atol=1e-5)
    np.testing.assert_array_equal(y[m], expected[1])


@pytest.mark.parametrize("images_shape, images_dtype, labels_shape, labels_dtype, config, match", [
    ((2, 8, 8), jnp.float32, (2, 8, 8), jnp.int32, OFF, "images"),
    ((2, 8, 8, 3), jnp.int32, (2, 8, 8), jnp.int32, OFF, "images"),
    ((2, 8, 8, 1), jnp.float32, (2, 8, 8), jnp.int32, _config(["hue_probability"]), "images"),
    ((2, 8, 8, 3), jnp.float32, (2, 8, 8, 1), jnp.int32, OFF, "labels"),
    ((2, 8, 8, 3), jnp.float32, (2, 8, 6), jnp.int32, OFF, "labels"),
    ((2, 8, 8, 3), jnp.float32, (2, 8, 8), jnp.complex64, OFF, "labels"),
    ((2, 8, 8, 3), jnp.float32, (2, 8, 8), jnp.int32, "default", "config"),
])
def test_argument_validation(images_shape, images_dtype, labels_shape, labels_dtype, config, match):
  with pytest.raises(ValueError, match=match):
    augment_batch(jax.random.key(0), jnp.zeros(images_shape, images_dtype),
                  jnp.zeros(labels_shape, labels_dtype), config)


def test_key_validation():
  with pytest.raises(ValueError, match="key"):
    augment_batch(jax.random.split(jax.random.key(0), 2), jnp.zeros((2, 8, 8, 3)),
                  jnp.zeros((2, 8, 8), jnp.int32), OFF)


@pytest.mark.parametrize("overrides, match", [
    (dict(rotation_probability=1.5), "rotation_probability"),
    (dict(hue_probability=-0.1), "hue_probability"),
    (dict(zoom_range=(1.4, 0.7)), "zoom_range"),
    (dict(zoom_range=(0.0, 1.0)), "zoom_range"),
    (dict(gamma_range=(0.7,)), "gamma_range"),
    (dict(low_resolution_range=(0.5, 2.0)), "low_resolution_range"),
    (dict(noise_std_range=(-0.1, 0.1)), "noise_std_range"),
    (dict(saturation_shift=-1.0), "saturation_shift"),
    (dict(border_mode="edge"), "border_mode"),
])
def test_config_validation(overrides, match):
  with pytest.raises(ValueError, match=match):
    AugmentConfig(**overrides)
