"""Tests for `topojax.metrics.betti_numbers` / `betti_errors` against gudhi."""

from __future__ import annotations

import gudhi
import numpy as np
import pytest

from topojax import metrics
from topojax.metrics import _betti

from mask_cases import SHAPES_2D, SHAPES_3D
from mask_cases import random_masks as _random_masks


def _gudhi_betti(mask):
  """TopoMortar's `_compute_betti` for one mask, last entry dropped."""
  complex_ = gudhi.CubicalComplex(top_dimensional_cells=1 - mask.astype(np.float64))
  complex_.compute_persistence()
  return complex_.persistent_betti_numbers(np.inf, -np.inf)[:-1]


def _check_against_gudhi(masks, ndim):
  ours = metrics.betti_numbers(masks, ndim=ndim)
  assert ours.shape == (masks.shape[0], ndim) and ours.dtype == np.int64
  expected = np.array([_gudhi_betti(m) for m in masks]).reshape(ours.shape)
  np.testing.assert_array_equal(ours, expected)


def _with_extremes(masks):
  masks[0], masks[-1] = False, True
  return masks


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_betti_numbers_match_gudhi(shape):
  rng = np.random.default_rng(sum(shape))
  _check_against_gudhi(_with_extremes(_random_masks(rng, shape, 40)), ndim=2)


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_betti_numbers_match_gudhi_3d(shape):
  rng = np.random.default_rng(sum(shape))
  _check_against_gudhi(_with_extremes(_random_masks(rng, shape, 16)), ndim=3)


def _ring(size=5):
  mask = np.zeros((size, size), bool)
  mask[1:-1, 1:-1] = True
  mask[2:-2, 2:-2] = False
  return mask


def test_betti_numbers_hand_cases():
  diagonal = np.zeros((4, 4), bool)
  diagonal[1, 1] = diagonal[2, 2] = True
  ring_missing_corner = _ring()
  ring_missing_corner[1, 1] = False
  ring_at_border = np.ones((3, 3), bool)
  ring_at_border[1, 1] = False
  open_ring = _ring()
  open_ring[2, 3] = False  # the hole reaches the outside 4-connectedly
  checkerboard = (np.indices((6, 6)).sum(axis=0) % 2).astype(bool)
  side_by_side = np.concatenate([_ring()[:, :-1], _ring()[:, 1:]], axis=1)
  touching_rings = np.zeros((6, 6), bool)
  touching_rings[:3, :3] = touching_rings[3:, 3:] = True
  touching_rings[1, 1] = touching_rings[4, 4] = False
  cases = [
      (diagonal, (1, 0)),
      (ring_missing_corner, (1, 1)),
      (_ring(), (1, 1)),
      (np.zeros((5, 5), bool), (1, 0)),
      (np.zeros((1, 1), bool), (1, 0)),
      (np.ones((5, 5), bool), (1, 0)),
      (np.ones((1, 7), bool), (1, 0)),
      (ring_at_border, (1, 1)),
      (open_ring, (1, 0)),
      # 8-connected foreground; each interior background pixel is a 4-hole.
      (checkerboard, (1, 8)),
      (~checkerboard, (1, 8)),
      (np.concatenate([_ring(), _ring()], axis=1), (2, 2)),
      (side_by_side, (1, 2)),  # two rings sharing a wall
      (touching_rings, (1, 2)),  # rings meeting at a corner, diagonally
  ]
  for mask, expected in cases:
    assert tuple(metrics.betti_numbers(mask[None])[0]) == expected, mask.astype(int)
    assert tuple(_gudhi_betti(mask)) == expected, mask.astype(int)


def test_betti_numbers_hand_cases_3d():
  shell = np.ones((3, 3, 3), bool)
  shell[1, 1, 1] = False
  torus = np.zeros((3, 3, 3), bool)
  torus[1] = True
  torus[1, 1, 1] = False
  diagonal = np.zeros((3, 3, 3), bool)
  diagonal[0, 0, 0] = diagonal[1, 1, 1] = True
  two_tunnels = np.zeros((3, 3, 5), bool)
  two_tunnels[1] = True
  two_tunnels[1, 1, 1] = two_tunnels[1, 1, 3] = False
  edge_loop = np.zeros((3, 3, 2), bool)  # a diamond of voxels joined along edges
  edge_loop[0, 1, 0] = edge_loop[1, 0, 0] = edge_loop[1, 2, 0] = True
  edge_loop[2, 1, 0] = True
  cases = [
      (np.zeros((3, 3, 3), bool), (1, 0, 0)),
      (np.ones((3, 3, 3), bool), (1, 0, 0)),
      (shell, (1, 0, 1)),
      (np.pad(shell, 1), (1, 0, 1)),
      (torus, (1, 1, 0)),
      (np.pad(torus, 1), (1, 1, 0)),
      (diagonal, (1, 0, 0)),
      (two_tunnels, (1, 2, 0)),
      (np.stack([shell, np.zeros_like(shell), torus]).reshape(9, 3, 3), (2, 1, 1)),
      (edge_loop, (1, 1, 0)),
  ]
  for mask, expected in cases:
    assert tuple(metrics.betti_numbers(mask[None], ndim=3)[0]) == expected, mask
    assert tuple(_gudhi_betti(mask)) == expected, mask


def test_betti_numbers_accept_binary_dtypes_and_batch_independently():
  rng = np.random.default_rng(3)
  masks = _random_masks(rng, (11, 12), 12)
  expected = np.concatenate([metrics.betti_numbers(m[None]) for m in masks])
  np.testing.assert_array_equal(metrics.betti_numbers(masks), expected)
  np.testing.assert_array_equal(metrics.betti_numbers(masks[::-1]), expected[::-1])
  for dtype in (np.uint8, np.int32, np.float32):
    np.testing.assert_array_equal(metrics.betti_numbers(masks.astype(dtype)), expected)


def test_euler_characteristic_matches_betti_numbers_in_2d():
  rng = np.random.default_rng(4)
  masks = _with_extremes(_random_masks(rng, (17, 14), 40))
  betti = metrics.betti_numbers(masks)
  betti[~masks.any(axis=(1, 2)), 0] = 0  # χ of the empty set is 0
  np.testing.assert_array_equal(
      _betti._euler_characteristic(masks), betti[:, 0] - betti[:, 1])


@pytest.mark.parametrize("ndim", [2, 3])
def test_betti_errors_match_gudhi(ndim):
  rng = np.random.default_rng(5 + ndim)
  shape = (19, 23) if ndim == 2 else (6, 7, 5)
  pred = _with_extremes(_random_masks(rng, shape, 20))
  gt = _random_masks(rng, shape, 20)
  gt[1] = False
  errors = metrics.betti_errors(pred, gt, ndim=ndim)
  assert errors.shape == (20, ndim) and errors.dtype == np.int64
  expected = [np.abs(np.subtract(_gudhi_betti(g), _gudhi_betti(p)))
              for p, g in zip(pred, gt)]
  np.testing.assert_array_equal(errors, expected)
  np.testing.assert_array_equal(metrics.betti_errors(gt, pred, ndim=ndim), errors)
  assert not metrics.betti_errors(gt, gt, ndim=ndim).any()


@pytest.mark.slow
def test_betti_numbers_match_gudhi_thorough():
  rng = np.random.default_rng(11)
  for shape in [(64, 64), (50, 70), (2, 90), (128, 128)]:
    _check_against_gudhi(_with_extremes(_random_masks(rng, shape, 30)), ndim=2)
  for shape in [(12, 12, 12), (4, 20, 16), (16, 16, 16)]:
    _check_against_gudhi(_with_extremes(_random_masks(rng, shape, 12)), ndim=3)
