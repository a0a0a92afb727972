"""Tests for the synthetic brick-wall generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from topojax.data import BrickWallConfig
from topojax.data import brick_walls

_EIGHT = np.ones((3, 3), bool)


def _betti(label):
  """(β0, β1) of a 2D mask: foreground 8-connected, background 4-connected."""
  _, b0 = ndimage.label(label, structure=_EIGHT)
  background, count = ndimage.label(label == 0)
  border = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
  touching = np.setdiff1d(np.unique(border), [0])
  return b0, count - touching.size


def test_shapes_dtypes_and_ranges():
  images, labels = brick_walls(3, seed=0)
  assert images.shape == (3, 64, 64, 3) and images.dtype == np.float32
  assert labels.shape == (3, 64, 64) and labels.dtype == np.int32
  assert images.min() >= 0 and images.max() <= 1
  assert set(np.unique(labels)) == {0, 1}


def test_deterministic_per_seed_and_index():
  images, labels = brick_walls(4, seed=7)
  again_images, again_labels = brick_walls(4, seed=7)
  np.testing.assert_array_equal(images, again_images)
  np.testing.assert_array_equal(labels, again_labels)
  other_images, other_labels = brick_walls(4, seed=8)
  assert not np.array_equal(images, other_images)
  assert not np.array_equal(labels, other_labels)
  # Wall i does not depend on how many walls are generated.
  longer_images, longer_labels = brick_walls(6, seed=7)
  np.testing.assert_array_equal(longer_images[:4], images)
  np.testing.assert_array_equal(longer_labels[:4], labels)
  # Walls within one call differ.
  assert not np.array_equal(labels[0], labels[1])


def test_appearance_changes_keep_the_layout():
  config = BrickWallConfig()
  _, labels = brick_walls(3, seed=1, config=config)
  recoloured = dataclasses.replace(config, brick_color_low=(0.2, 0.2, 0.2),
                                   brick_color_high=(0.3, 0.3, 0.3), noise_sigma=0.1)
  images, same_labels = brick_walls(3, seed=1, config=recoloured)
  np.testing.assert_array_equal(labels, same_labels)
  assert images[labels == 0].mean() < 0.35


def test_mortar_is_one_component_with_many_holes():
  _, labels = brick_walls(150, seed=3)
  bettis = np.array([_betti(label) for label in labels])
  assert (bettis[:, 0] == 1).all()
  assert bettis[:, 1].min() >= 6
  assert bettis[:, 1].mean() >= 12
  # TopoMortar's labels are ~30 % mortar.
  assert 0.2 < labels.mean() < 0.45


def test_mortar_contrasts_with_bricks():
  images, labels = brick_walls(20, seed=4)
  brightness = images.mean(-1)
  mortar = [b[l == 1].mean() for b, l in zip(brightness, labels)]
  bricks = [b[l == 0].mean() for b, l in zip(brightness, labels)]
  assert np.mean(np.greater(mortar, bricks)) >= 0.9


@pytest.mark.parametrize("height, width", [(48, 80), (65, 33), (17, 9)])
def test_non_square_and_odd_sizes(height, width):
  config = BrickWallConfig(height=height, width=width)
  images, labels = brick_walls(10, seed=5, config=config)
  assert images.shape == (10, height, width, 3)
  assert labels.shape == (10, height, width)
  for label in labels:
    assert _betti(label)[0] == 1
  if min(height, width) >= 32:
    assert min(_betti(label)[1] for label in labels) >= 1


def test_resized_scales_lengths_and_keeps_topology():
  config = BrickWallConfig().resized(256, 128)
  assert (config.height, config.width) == (256, 128)
  assert config.brick_width == tuple(2 * w for w in BrickWallConfig().brick_width)
  assert config.blur_sigma == BrickWallConfig().blur_sigma
  assert BrickWallConfig().resized(16, 16).mortar_thickness[0] == 1
  images, labels = brick_walls(2, seed=6, config=config)
  assert images.shape == (2, 256, 128, 3)
  for label in labels:
    b0, b1 = _betti(label)
    assert b0 == 1 and b1 >= 6


@pytest.mark.parametrize("field, value", [
    ("height", 0),
    ("width", 2.5),
    ("brick_height", (7.0, 4.0)),
    ("brick_height", (0.5, 4.0)),
    ("brick_width", (1.5, 3.0)),
    ("mortar_thickness", (0.5, 2.0)),
    ("mortar_thickness", (1.0,)),
    ("max_angle", 45.0),
    ("max_angle", -1.0),
    ("joint_jitter", 0.3),
    ("noise_sigma", -0.1),
    ("edge_shading", 1.0),
    ("texture_scale", 0.0),
    ("brick_color_low", (0.5, 0.5)),
    ("mortar_color_high", (1.5, 0.5, 0.5)),
    ("brick_color_low", (0.9, 0.9, 0.9)),
])
def test_config_validation(field, value):
  with pytest.raises(ValueError, match=field):
    BrickWallConfig(**{field: value})


@pytest.mark.parametrize("kwargs, match", [
    (dict(num=0, seed=0), "num"),
    (dict(num=2.0, seed=0), "num"),
    (dict(num=1, seed=-1), "seed"),
    (dict(num=1, seed=0, config=dict(height=8)), "config"),
])
def test_argument_validation(kwargs, match):
  num = kwargs.pop("num")
  with pytest.raises(ValueError, match=match):
    brick_walls(num, **kwargs)
