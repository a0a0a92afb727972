"""Tests for `topojax.metrics` Betti numbers, Betti errors and Euler characteristic.

Three independent computations must agree: the device functions
(`topojax.ph.cubical_persistence`), the scipy labelling oracle
(`betti_oracle`) and gudhi (TopoMortar's call). Compiling for a new
`(batch, shape)` costs seconds, so tests share batch sizes and shapes where
they can (e.g. `betti_errors` on `B` pairs reuses the compilation for `2 B`
masks).
"""

from __future__ import annotations

import functools

import gudhi
import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from topojax.metrics import _betti_scipy as betti_oracle
from topojax import metrics

from mask_cases import random_masks as _random_masks

# Odd, non-square and degenerate sizes; a single pixel needs no compilation and
# a leading axis of length 1 is computed transposed, e.g. (1, 7) as (7, 1).
SHAPES_2D = [(1, 1), (1, 7), (7, 1), (2, 2), (13, 9),
             pytest.param((32, 32), marks=pytest.mark.slow)]
SHAPES_3D = [(1, 1, 1), (1, 6, 7), (3, 3, 3), (5, 6, 7),
             pytest.param((9, 9, 9), marks=pytest.mark.slow)]


def _gudhi_betti(mask):
  """TopoMortar's `_compute_betti` for one mask, last entry dropped."""
  complex_ = gudhi.CubicalComplex(top_dimensional_cells=1 - mask.astype(np.float64))
  complex_.compute_persistence()
  return complex_.persistent_betti_numbers(np.inf, -np.inf)[:-1]


def _check_all_agree(masks, ndim):
  """Device == numpy wrapper == scipy oracle == gudhi; χ == oracle's χ."""
  device = metrics.betti_numbers_device(masks, ndim=ndim)
  assert isinstance(device, jax.Array)
  assert device.shape == (masks.shape[0], ndim) and device.dtype == jnp.int32
  ours = metrics.betti_numbers(masks, ndim=ndim)
  assert isinstance(ours, np.ndarray) and ours.dtype == np.int64
  oracle = betti_oracle.betti_numbers(masks)
  gudhi_betti = np.array([_gudhi_betti(m) for m in masks]).reshape(oracle.shape)
  np.testing.assert_array_equal(oracle, gudhi_betti)
  np.testing.assert_array_equal(device, oracle)
  np.testing.assert_array_equal(ours, oracle)
  chi = metrics.euler_characteristic(masks, ndim=ndim)
  assert chi.shape == (masks.shape[0],) and chi.dtype == jnp.int32
  np.testing.assert_array_equal(chi, betti_oracle.euler_characteristic(masks))


def _with_extremes(masks):
  masks[0], masks[-1] = False, True
  return masks


# ---------------------------------------------------------------- random masks


@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
def test_betti_numbers_match_oracle_and_gudhi(shape):
  rng = np.random.default_rng(sum(shape))
  masks = _with_extremes(_random_masks(rng, shape, 40))
  masks[1] = False
  masks[1, shape[0] // 2, shape[1] // 2] = True  # a single pixel
  _check_all_agree(masks, ndim=2)


@pytest.mark.parametrize("shape", SHAPES_3D, ids=str)
def test_betti_numbers_match_oracle_and_gudhi_3d(shape):
  rng = np.random.default_rng(sum(shape))
  masks = _with_extremes(_random_masks(rng, shape, 16))
  masks[1] = False
  masks[1, 0, 0, 0] = True  # a single voxel, in a corner
  _check_all_agree(masks, ndim=3)


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
@hypothesis.given(hnp.arrays(np.bool_, (8, 5, 6)))
def test_betti_numbers_match_oracle_and_gudhi_hypothesis(masks):
  _check_all_agree(masks, ndim=2)


@hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
@hypothesis.given(hnp.arrays(np.bool_, (16, 3, 3, 3)))  # the compilation for (3, 3, 3)
def test_betti_numbers_match_oracle_and_gudhi_hypothesis_3d(masks):
  _check_all_agree(masks, ndim=3)


# ---------------------------------------------------------------- hand cases


def _ring(size=5):
  mask = np.zeros((size, size), bool)
  mask[1:-1, 1:-1] = True
  mask[2:-2, 2:-2] = False
  return mask


def _on_canvas(masks, shape):
  """Each mask in the corner of a background canvas: one batch, one compilation.

  Background pixels added around a mask leave the union of closed foreground
  cells, hence its Betti numbers and χ, unchanged (gudhi checks each case at its
  own shape, and the random tests cover native shapes).
  """
  canvas = np.zeros((len(masks),) + shape, bool)
  for canvas_i, mask in zip(canvas, masks):
    canvas_i[tuple(slice(0, n) for n in mask.shape)] = mask
  return canvas


def test_betti_numbers_hand_cases():
  diagonal = np.zeros((4, 4), bool)
  diagonal[1, 1] = diagonal[2, 2] = True
  anti_diagonal = np.zeros((3, 3), bool)
  anti_diagonal[0, 2] = anti_diagonal[1, 1] = anti_diagonal[2, 0] = True
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
  diamond = np.zeros((3, 3), bool)  # four pixels meeting at corners around a hole
  diamond[0, 1] = diamond[1, 0] = diamond[1, 2] = diamond[2, 1] = True
  cases = [
      (diagonal, (1, 0)),
      (anti_diagonal, (1, 0)),
      (ring_missing_corner, (1, 1)),
      (_ring(), (1, 1)),
      (np.zeros((5, 5), bool), (1, 0)),
      (np.zeros((1, 1), bool), (1, 0)),
      (np.ones((1, 1), bool), (1, 0)),
      (np.ones((5, 5), bool), (1, 0)),
      (np.ones((1, 7), bool), (1, 0)),
      (np.array([[1, 0, 1, 1, 0, 1]], bool), (3, 0)),
      (np.array([[1], [0], [1]], bool), (2, 0)),
      (ring_at_border, (1, 1)),
      (open_ring, (1, 0)),
      (diamond, (1, 1)),
      # 8-connected foreground; each interior background pixel is a 4-hole.
      (checkerboard, (1, 8)),
      (~checkerboard, (1, 8)),
      (np.concatenate([_ring(), _ring()], axis=1), (2, 2)),
      (side_by_side, (1, 2)),  # two rings sharing a wall
      (touching_rings, (1, 2)),  # rings meeting at a corner, diagonally
  ]
  for mask, expected in cases:
    assert tuple(_gudhi_betti(mask)) == expected, mask.astype(int)
    assert tuple(betti_oracle.betti_numbers(mask[None])[0]) == expected, mask.astype(int)
  masks = _on_canvas([mask for mask, _ in cases], (6, 10))
  expected = np.array([e for _, e in cases])
  np.testing.assert_array_equal(metrics.betti_numbers_device(masks), expected)
  np.testing.assert_array_equal(metrics.betti_numbers(masks), expected)
  expected[[4, 5], 0] = 0  # the empty masks: χ = 0
  np.testing.assert_array_equal(metrics.euler_characteristic(masks),
                                expected[:, 0] - expected[:, 1])


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
  corner_loop = np.zeros((2, 2, 2), bool)  # voxels meeting at vertices only
  corner_loop[0, 0, 0] = corner_loop[1, 1, 1] = True
  stacked = np.stack([shell, np.zeros_like(shell), torus]).reshape(9, 3, 3)
  cases = [
      (np.zeros((3, 3, 3), bool), (1, 0, 0)),
      (np.zeros((1, 1, 1), bool), (1, 0, 0)),
      (np.ones((1, 1, 1), bool), (1, 0, 0)),
      (np.ones((3, 3, 3), bool), (1, 0, 0)),
      (np.ones((1, 1, 5), bool), (1, 0, 0)),
      (shell, (1, 0, 1)),
      (np.pad(shell, 1), (1, 0, 1)),
      (torus, (1, 1, 0)),
      (np.pad(torus, 1), (1, 1, 0)),
      (np.moveaxis(torus, 0, 2), (1, 1, 0)),
      (diagonal, (1, 0, 0)),
      (corner_loop, (1, 0, 0)),
      (two_tunnels, (1, 2, 0)),
      (stacked, (2, 1, 1)),
      (edge_loop, (1, 1, 0)),
  ]
  for mask, expected in cases:
    assert tuple(_gudhi_betti(mask)) == expected, mask
    assert tuple(betti_oracle.betti_numbers(mask[None])[0]) == expected, mask
  masks = _on_canvas([mask for mask, _ in cases], (9, 5, 5))
  expected = np.array([e for _, e in cases])
  np.testing.assert_array_equal(metrics.betti_numbers_device(masks, ndim=3), expected)
  np.testing.assert_array_equal(metrics.betti_numbers(masks, ndim=3), expected)
  expected[[0, 1], 0] = 0  # the empty masks: χ = 0
  np.testing.assert_array_equal(metrics.euler_characteristic(masks, ndim=3),
                                expected[:, 0] - expected[:, 1] + expected[:, 2])


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("ndim", [2, 3])
def test_betti_errors_match_gudhi(ndim):
  rng = np.random.default_rng(5 + ndim)
  # Batch sizes and shapes of the random tests above (half: pred and gt are
  # computed as one batch of 2 B).
  batch, shape = (20, (13, 9)) if ndim == 2 else (8, (5, 6, 7))
  pred = _with_extremes(_random_masks(rng, shape, batch))
  gt = _random_masks(rng, shape, batch)
  gt[1] = False
  expected = [np.abs(np.subtract(_gudhi_betti(g), _gudhi_betti(p)))
              for p, g in zip(pred, gt)]
  device = metrics.betti_errors_device(pred, gt, ndim=ndim)
  assert device.shape == (batch, ndim) and device.dtype == jnp.int32
  np.testing.assert_array_equal(device, expected)
  errors = metrics.betti_errors(pred, gt, ndim=ndim)
  assert errors.shape == (batch, ndim) and errors.dtype == np.int64
  np.testing.assert_array_equal(errors, expected)
  np.testing.assert_array_equal(metrics.betti_errors(gt, pred, ndim=ndim), errors)
  assert not metrics.betti_errors(gt, gt, ndim=ndim).any()
  assert not metrics.betti_errors_device(pred, pred, ndim=ndim).any()


# ---------------------------------------------------------------- jit, vmap, dtypes


def test_jit_and_vmap():
  rng = np.random.default_rng(13 + 9)  # the masks of the (13, 9) random test
  masks = _with_extremes(_random_masks(rng, (13, 9), 40))
  expected = betti_oracle.betti_numbers(masks)
  per_example = jax.jit(jax.vmap(lambda m: metrics.betti_numbers_device(m[None])[0]))
  np.testing.assert_array_equal(per_example(masks), expected)
  # A vmap axis over whole batches; under jit any nonzero value is foreground.
  batches = jnp.asarray(masks, jnp.float32).reshape(4, 10, 13, 9) * 0.5
  nested = jax.vmap(jax.jit(metrics.betti_numbers_device))(batches)
  np.testing.assert_array_equal(nested, expected.reshape(4, 10, 2))
  chi = jax.jit(jax.vmap(metrics.euler_characteristic))(batches)
  np.testing.assert_array_equal(chi.reshape(-1), betti_oracle.euler_characteristic(masks))


def test_accept_binary_dtypes_and_batch_independently():
  rng = np.random.default_rng(13 + 9)
  masks = _with_extremes(_random_masks(rng, (13, 9), 40))
  expected = betti_oracle.betti_numbers(masks)
  np.testing.assert_array_equal(metrics.betti_numbers_device(masks[::-1]), expected[::-1])
  np.testing.assert_array_equal(metrics.betti_numbers_device(masks[:1]), expected[:1])
  for dtype in (np.uint8, np.int32, np.float32, np.float64):
    np.testing.assert_array_equal(metrics.betti_numbers(masks.astype(dtype)), expected)
    np.testing.assert_array_equal(metrics.betti_numbers_device(masks.astype(dtype)),
                                  expected)
  for dtype in (jnp.bool_, jnp.int8, jnp.uint8, jnp.int32, jnp.bfloat16, jnp.float32):
    np.testing.assert_array_equal(
        metrics.betti_numbers_device(jnp.asarray(masks, dtype)), expected)
  np.testing.assert_array_equal(metrics.betti_numbers_device(masks.tolist()), expected)


@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_batch(ndim):
  masks = np.zeros((0,) + (4,) * ndim, bool)
  assert metrics.betti_numbers_device(masks, ndim=ndim).shape == (0, ndim)
  assert metrics.betti_numbers(masks, ndim=ndim).shape == (0, ndim)
  assert metrics.betti_errors_device(masks, masks, ndim=ndim).shape == (0, ndim)
  assert metrics.euler_characteristic(masks, ndim=ndim).shape == (0,)


# ---------------------------------------------------------------- validation

DEVICE_FNS = {
    "betti_numbers_device": metrics.betti_numbers_device,
    "euler_characteristic": metrics.euler_characteristic,
    "betti_errors_device": lambda x, **kw: metrics.betti_errors_device(x, x, **kw),
}


def _name(fn_name):
  return "pred" if fn_name == "betti_errors_device" else "mask"


@pytest.mark.parametrize("fn_name", DEVICE_FNS)
@pytest.mark.parametrize("as_jax", [False, True], ids=["numpy", "jax"])
def test_rejects_bad_rank(fn_name, as_jax):
  fn = DEVICE_FNS[fn_name]
  wrap = jnp.asarray if as_jax else np.asarray
  name = _name(fn_name)
  with pytest.raises(ValueError, match=rf"`{name}`.*batch axis.*required.*\(4, 5\)"):
    fn(wrap(np.zeros((4, 5), bool)))
  with pytest.raises(ValueError, match=rf"`{name}` must have shape \[B, D, H, W\]"):
    fn(wrap(np.zeros((2, 4, 5), bool)), ndim=3)
  with pytest.raises(ValueError, match=r"\[B, H, W\]"):
    jax.jit(fn)(wrap(np.zeros((1, 2, 4, 5), bool)))
  with pytest.raises(ValueError, match=rf"`{name}` has an empty spatial axis"):
    fn(wrap(np.zeros((1, 0, 5), bool)))
  with pytest.raises(ValueError, match=r"`ndim` must be 2 or 3"):
    fn(wrap(np.zeros((1, 4, 5), bool)), ndim=1)


@pytest.mark.parametrize("fn_name", DEVICE_FNS)
def test_rejects_bad_dtypes(fn_name):
  fn = DEVICE_FNS[fn_name]
  name = _name(fn_name)
  for x in (np.zeros((1, 3, 3), np.complex64), jnp.zeros((1, 3, 3), jnp.complex64),
            np.full((1, 3, 3), "0")):
    with pytest.raises(ValueError, match=rf"`{name}` must be a binary mask.*dtype"):
      fn(x)
  with pytest.raises(ValueError, match=rf"`{name}` must be a binary mask.*dtype"):
    jax.jit(fn)(jnp.zeros((1, 3, 3), jnp.complex64))


@pytest.mark.parametrize("fn_name", DEVICE_FNS)
@pytest.mark.parametrize("bad", [2, -1, 0.5, np.nan], ids=str)
@pytest.mark.parametrize("as_jax", [False, True], ids=["numpy", "jax"])
def test_rejects_non_binary_values_when_eager(fn_name, bad, as_jax):
  x = np.zeros((2, 4, 5), np.float32 if isinstance(bad, float) else np.int32)
  x[1, 2, 3] = bad
  x = jnp.asarray(x) if as_jax else x
  with pytest.raises(ValueError, match=rf"`{_name(fn_name)}` must be a binary mask "
                     r"with values exactly 0 or 1"):
    DEVICE_FNS[fn_name](x)


def test_betti_errors_device_rejects_bad_pairs():
  with pytest.raises(ValueError, match=r"`gt` must be a binary mask"):
    metrics.betti_errors_device(jnp.zeros((1, 3, 3), bool), jnp.full((1, 3, 3), 3))
  with pytest.raises(ValueError, match=r"`pred` and `gt` must have the same shape"):
    metrics.betti_errors_device(jnp.zeros((2, 4, 5), bool), jnp.zeros((2, 5, 4), bool))
  with pytest.raises(ValueError, match=r"same shape"):
    jax.jit(metrics.betti_errors_device)(np.zeros((2, 4, 5), bool),
                                         np.zeros((3, 4, 5), bool))


# ---------------------------------------------------------------- thorough


@pytest.mark.slow
def test_betti_numbers_match_oracle_and_gudhi_thorough():
  rng = np.random.default_rng(11)
  # Each new shape costs a 12-16 s compilation: a few large odd ones, many masks.
  for shape in [(1, 33), (97, 65)]:
    _check_all_agree(_with_extremes(_random_masks(rng, shape, 24)), ndim=2)
  _check_all_agree(_with_extremes(_random_masks(rng, (13, 16, 15), 8)), ndim=3)


@pytest.mark.slow
def test_jit_and_vmap_errors_and_3d():
  rng = np.random.default_rng(13 + 9)
  masks = _with_extremes(_random_masks(rng, (13, 9), 40))
  expected = betti_oracle.betti_numbers(masks)
  errors = jax.jit(metrics.betti_errors_device)(masks[:20], masks[20:])
  np.testing.assert_array_equal(errors, np.abs(expected[20:] - expected[:20]))

  masks = _with_extremes(_random_masks(rng, (5, 6, 7), 16))
  expected = betti_oracle.betti_numbers(masks)
  betti_3d = functools.partial(metrics.betti_numbers_device, ndim=3)
  per_example = jax.jit(jax.vmap(lambda m: betti_3d(m[None])[0]))
  np.testing.assert_array_equal(per_example(masks), expected)
  nested = jax.vmap(betti_3d)(jnp.asarray(masks).reshape(4, 4, 5, 6, 7))
  np.testing.assert_array_equal(nested, expected.reshape(4, 4, 3))
