"""Tests for `topojax.metrics.hd95` against medpy."""

from __future__ import annotations

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary

from topojax import metrics

from mask_cases import SHAPES_2D, SHAPES_3D
from mask_cases import random_masks as _random_masks


def _check_against_medpy(rng, shape, batch):
  pred, gt = _random_masks(rng, shape, batch), _random_masks(rng, shape, batch)
  pred[0], gt[-1] = True, True  # full masks; random ones may be empty
  ndim = len(shape)
  ours = metrics.hd95(pred, gt, ndim=ndim, empty_value=np.nan)
  assert ours.shape == (pred.shape[0],) and ours.dtype == np.float64
  for b in range(pred.shape[0]):
    if pred[b].any() and gt[b].any():
      assert ours[b] == medpy_binary.hd95(pred[b], gt[b])
    else:
      assert np.isnan(ours[b])


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_hd95_matches_medpy(shape):
  rng = np.random.default_rng(sum(shape))
  _check_against_medpy(rng, shape, 24)


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_hd95_matches_medpy_3d(shape):
  rng = np.random.default_rng(sum(shape))
  _check_against_medpy(rng, shape, 8)


def test_hd95_empty_masks_get_the_diagonal_by_default():
  pred = np.zeros((4, 512, 512), bool)
  gt = np.zeros((4, 512, 512), bool)
  pred[1, 10:20, 10:20] = True
  gt[2, 10:20, 10:20] = True
  pred[3, 100:110, 10:20] = gt[3, 10:20, 10:20] = True
  out = metrics.hd95(pred, gt)
  np.testing.assert_allclose(out[:3], 511 * np.sqrt(2))
  assert round(out[0], 3) == 722.663
  assert out[3] == 90.0
  np.testing.assert_array_equal(metrics.hd95(pred, gt, empty_value=-1.0)[:3], -1.0)
  assert metrics.hd95(np.zeros((1, 1, 7)), np.ones((1, 1, 7)))[0] == 6.0
  assert metrics.hd95(np.zeros((1, 3, 4, 5)), np.ones((1, 3, 4, 5)), ndim=3)[0] == (
      np.sqrt(4 + 9 + 16))
  assert metrics.hd95(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)))[0] == 0.0


def test_hd95_hand_cases_and_symmetry():
  gt = np.zeros((3, 40, 40), bool)
  gt[:, 10:20, 10:20] = True
  pred = gt.copy()
  pred[1] = np.roll(gt[1], 5, axis=1)
  pred[2, 30, 30] = True  # one stray pixel: below the 95th percentile
  out = metrics.hd95(pred, gt)
  assert out[0] == 0.0 and out[1] == 5.0
  assert 0.0 <= out[2] < 1.0
  np.testing.assert_array_equal(metrics.hd95(gt, pred), out)
  for dtype in (np.uint8, np.int64, np.float32):
    np.testing.assert_array_equal(
        metrics.hd95(pred.astype(dtype), gt.astype(dtype)), out)


@pytest.mark.slow
def test_hd95_matches_medpy_thorough():
  rng = np.random.default_rng(13)
  for shape in [(64, 64), (48, 80), (3, 100), (128, 128)]:
    _check_against_medpy(rng, shape, 30)
  for shape in [(12, 12, 12), (4, 20, 16)]:
    _check_against_medpy(rng, shape, 10)
