"""Tests for `topojax.metrics` Dice and clDice, and the shared input validation."""

from __future__ import annotations

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from skimage.morphology import skeletonize

from topojax import metrics

from mask_cases import SHAPES_2D, SHAPES_3D
from mask_cases import random_masks as _random_masks


def _pairs(rng, shape, batch):
  """Random prediction/GT pairs, including empty and full examples."""
  pred, gt = _random_masks(rng, shape, batch), _random_masks(rng, shape, batch)
  pred[0], gt[1] = False, True
  if batch > 3:
    pred[2], gt[3] = gt[2], False  # a perfect prediction; an empty GT
  return pred, gt


def _topomortar_cldice(pred, gt):
  """TopoMortar's `clDiceMetric` for one image, transcribed (NaN on 0/0)."""
  def cl_score(segmentation, skeleton):
    return np.sum(segmentation * skeleton) / np.sum(skeleton)
  with np.errstate(divide="ignore", invalid="ignore"):
    tprec = cl_score(pred, skeletonize(gt))
    tsens = cl_score(gt, skeletonize(pred))
    return 2 * tprec * tsens / (tprec + tsens), tprec, tsens


def _check_cldice_against_topomortar(pred, gt, ndim):
  ours = metrics.cldice(pred, gt, ndim=ndim)
  assert ours.shape == (pred.shape[0],) and ours.dtype == np.float64
  for b in range(pred.shape[0]):
    expected, tprec, tsens = _topomortar_cldice(pred[b], gt[b])
    if not pred[b].any() or not gt[b].any():
      assert np.isnan(ours[b])
    elif tprec == 0 and tsens == 0:  # TopoMortar: 0/0 = NaN; documented 0.0 here
      assert np.isnan(expected) and ours[b] == 0.0
    else:
      np.testing.assert_allclose(ours[b], expected, rtol=1e-12)


# ----------------------------------------------------------------------------- Dice


def _check_dice_against_medpy(pred, gt, ndim):
  ours = metrics.dice(pred, gt, ndim=ndim)
  assert ours.shape == (pred.shape[0],) and ours.dtype == np.float64
  for b in range(pred.shape[0]):
    if pred[b].any() or gt[b].any():  # medpy is 0/0 (NaN, a warning) otherwise
      assert ours[b] == medpy_binary.dc(pred[b], gt[b])
    else:
      assert ours[b] == 1.0


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_dice_matches_medpy(shape):
  rng = np.random.default_rng(sum(shape))
  pred, gt = _pairs(rng, shape, batch=24)
  _check_dice_against_medpy(pred, gt, ndim=2)


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_dice_matches_medpy_3d(shape):
  rng = np.random.default_rng(sum(shape))
  pred, gt = _pairs(rng, shape, batch=8)
  _check_dice_against_medpy(pred, gt, ndim=3)


def test_dice_hand_cases():
  gt = np.zeros((5, 4, 4), bool)
  gt[:, :2] = True
  pred = gt.copy()
  pred[1] = ~gt[1]         # disjoint
  pred[2, :1] = False      # half of gt: 2 * 4 / (4 + 8)
  pred[3] = True           # everything: 2 * 8 / (16 + 8)
  pred[4] = gt[4] = False  # both empty
  np.testing.assert_allclose(metrics.dice(pred, gt), [1.0, 0.0, 2 / 3, 2 / 3, 1.0])
  assert np.isnan(metrics.dice(pred, gt, empty_value=np.nan)[4])
  assert metrics.dice(pred[4:], gt[4:], empty_value=0.0).tolist() == [0.0]


def test_dice_accepts_binary_dtypes():
  rng = np.random.default_rng(0)
  pred, gt = _pairs(rng, (11, 10), batch=6)
  expected = metrics.dice(pred, gt)
  for dtype in (np.int8, np.uint8, np.int32, np.int64, np.float16, np.float32,
                np.float64):
    np.testing.assert_array_equal(
        metrics.dice(pred.astype(dtype), gt.astype(dtype)), expected)
  np.testing.assert_array_equal(metrics.dice(pred.tolist(), gt.tolist()), expected)


# --------------------------------------------------------------------------- clDice


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_cldice_matches_topomortar(shape):
  rng = np.random.default_rng(100 + sum(shape))
  pred, gt = _pairs(rng, shape, batch=24)
  _check_cldice_against_topomortar(pred, gt, ndim=2)


@pytest.mark.parametrize("shape", [(1, 6, 7), (5, 6, 7), (9, 9, 9)])
def test_cldice_matches_topomortar_3d(shape):
  rng = np.random.default_rng(100 + sum(shape))
  pred, gt = _pairs(rng, shape, batch=6)
  _check_cldice_against_topomortar(pred, gt, ndim=3)


def test_cldice_hand_cases():
  gt = np.zeros((5, 9, 12), bool)
  gt[:, 3:6, 1:11] = True  # a thick bar
  pred = gt.copy()
  pred[1] = False          # empty prediction
  gt[2] = False            # empty GT
  pred[3] = gt[3] = False  # both empty
  pred[4] = ~gt[4]         # the complement: disjoint skeletons
  score = metrics.cldice(pred, gt)
  assert score[0] == 1.0
  assert np.isnan(score[1:4]).all()
  assert score[4] == 0.0


def test_cldice_broken_bar_is_penalised_more_than_a_thin_one():
  gt = np.zeros((2, 9, 30), bool)
  gt[:, 3:6, 2:28] = True
  pred = gt.copy()
  pred[0, 3, :] = False        # thinner, still connected
  pred[1, :, 14:16] = False    # cut in two
  score = metrics.cldice(pred, gt)
  assert 0.95 < score[0] and 0.8 < score[1] < score[0]


@pytest.mark.slow
def test_cldice_and_dice_thorough():
  rng = np.random.default_rng(7)
  for shape in [(64, 64), (48, 80), (3, 100), (128, 128)]:
    pred, gt = _pairs(rng, shape, batch=40)
    _check_cldice_against_topomortar(pred, gt, ndim=2)
    _check_dice_against_medpy(pred, gt, ndim=2)


# ------------------------------------------------------------- validation (all metrics)

PAIR_METRICS = [metrics.dice, metrics.cldice, metrics.betti_errors, metrics.hd95]


def _call(fn, x, y=None, **kwargs):
  if fn is metrics.betti_numbers:
    return fn(x, **kwargs)
  return fn(x, x if y is None else y, **kwargs)


ALL_METRICS = PAIR_METRICS + [metrics.betti_numbers]


@pytest.mark.parametrize("fn", ALL_METRICS, ids=lambda f: f.__name__)
def test_rejects_missing_batch_axis(fn):
  with pytest.raises(ValueError, match=r"batch axis.*required.*\(4, 5\)"):
    _call(fn, np.zeros((4, 5), bool))
  with pytest.raises(ValueError, match=r"\[B, D, H, W\]"):
    _call(fn, np.zeros((2, 4, 5), bool), ndim=3)
  with pytest.raises(ValueError, match=r"\[B, H, W\]"):
    _call(fn, np.zeros((1, 2, 4, 5), bool))


@pytest.mark.parametrize("fn", ALL_METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [2, -1, 0.5, np.nan], ids=str)
def test_rejects_non_binary_values(fn, bad):
  x = np.zeros((2, 4, 5), np.float64 if isinstance(bad, float) else np.int64)
  x[1, 2, 3] = bad
  name = "mask" if fn is metrics.betti_numbers else "pred"
  with pytest.raises(ValueError, match=rf"`{name}` must be a binary mask"):
    _call(fn, x, np.zeros((2, 4, 5), bool))
  if fn is not metrics.betti_numbers:
    with pytest.raises(ValueError, match=r"`gt` must be a binary mask"):
      fn(np.zeros((2, 4, 5), bool), x)


@pytest.mark.parametrize("fn", ALL_METRICS, ids=lambda f: f.__name__)
def test_rejects_non_numeric_dtypes(fn):
  for x in (np.zeros((1, 3, 3), np.complex64), np.full((1, 3, 3), "0")):
    with pytest.raises(ValueError, match="dtype"):
      _call(fn, x)


@pytest.mark.parametrize("fn", PAIR_METRICS, ids=lambda f: f.__name__)
def test_rejects_mismatched_shapes(fn):
  with pytest.raises(ValueError, match=r"`pred` and `gt` must have the same shape"):
    fn(np.zeros((2, 4, 5), bool), np.zeros((2, 5, 4), bool))
  with pytest.raises(ValueError, match=r"same shape"):
    fn(np.zeros((2, 4, 5), bool), np.zeros((3, 4, 5), bool))


@pytest.mark.parametrize("fn", ALL_METRICS, ids=lambda f: f.__name__)
def test_rejects_bad_ndim_and_empty_axes(fn):
  with pytest.raises(ValueError, match="`ndim` must be 2 or 3"):
    _call(fn, np.zeros((2, 4, 5), bool), ndim=1)
  with pytest.raises(ValueError, match="empty spatial axis"):
    _call(fn, np.zeros((2, 0, 5), bool))


@pytest.mark.parametrize("fn", ALL_METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_batch(fn, ndim):
  out = _call(fn, np.zeros((0,) + (4,) * ndim, bool), ndim=ndim)
  assert out.shape[0] == 0
