"""TopoLoss against a GUDHI-based NumPy oracle of the original algorithm."""

import functools

import gudhi
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from topojax import losses
from topojax.losses._persistence import _tiles


def _gudhi_pairs(tile: np.ndarray, dim: int):
  """Regular pairs of `dim` of GUDHI's T complex on 1 - tile: (birth, death) pixels.

  With an ndarray, GUDHI's coface indices are flat in Fortran order.
  """
  complex_ = gudhi.CubicalComplex(top_dimensional_cells=1 - tile)
  complex_.persistence(homology_coeff_field=2, min_persistence=0)
  regular = complex_.cofaces_of_persistence_pairs()[0]
  if dim >= len(regular) or len(regular[dim]) == 0:
    return []
  unravel = lambda i: np.unravel_index(i, tile.shape, order="F")
  return [(unravel(b), unravel(d)) for b, d in regular[dim]]


def topoloss_oracle(pred, target, dims=(1,), patch=None, threshold=0.03, perfect=0.99,
                    skip_uniform=False):
  """The original's selection, with the paper's targets in `pred`'s units.

  Returns the per-example losses and their gradient with respect to `pred`.
  """
  pred = np.asarray(pred, np.float64)
  target = np.asarray(target, np.float64)
  batch, spatial = pred.shape[0], pred.shape[1:]
  patch = spatial if patch is None else (patch,) * len(spatial)
  loss, grad = np.zeros(batch), np.zeros_like(pred)
  starts = [range(0, s, p) for s, p in zip(spatial, patch)]
  for b in range(batch):
    for corner in np.array(np.meshgrid(*starts, indexing="ij")).reshape(len(spatial), -1).T:
      window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
      p_tile, g_tile = pred[b][window], target[b][window]
      if skip_uniform and (g_tile.min() == 1 or g_tile.max() == 0):
        continue
      for dim in dims:
        pairs = _gudhi_pairs(p_tile, dim)
        k = len(_gudhi_pairs(g_tile, dim))
        births = np.array([p_tile[bp] for bp, _ in pairs])
        deaths = np.array([p_tile[dp] for _, dp in pairs])
        pers = births - deaths
        for rank, i in enumerate(np.argsort(-pers, kind="stable")):
          (bp, dp), bv, dv = pairs[i], births[i], deaths[i]
          if rank < k and pers[i] <= perfect:
            targets = (1.0, 0.0)
          elif rank >= k and pers[i] > threshold:
            targets = (dv, bv)
          else:
            continue
          for pixel, value, want in ((bp, bv, targets[0]), (dp, dv, targets[1])):
            loss[b] += (value - want) ** 2
            grad[(b,) + tuple(c + o for c, o in zip(corner, pixel))] += 2 * (value - want)
  return loss, grad


def _maps(rng, shape, holes=True):
  """Distinct-valued probabilities and a binary target with components and holes."""
  smooth = scipy.ndimage.gaussian_filter(rng.normal(size=shape), 1.5, axes=range(1, len(shape)))
  target = (smooth > 0).astype(np.float32)
  if holes:
    target[(slice(None),) + tuple(slice(1, -1, 4) for _ in shape[1:])] = 0
  pred = (0.7 * target + 0.3 * rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape))
  return pred.astype(np.float32), target


@functools.partial(jax.jit, static_argnames=("dims", "patch_size"))
def _loss_and_grad(pred, target, *, dims, patch_size):
  per_example, pullback = jax.vjp(
      lambda p: losses.topoloss(p, target, dims=dims, patch_size=patch_size), pred)
  return per_example, pullback(jnp.ones_like(per_example))[0]


@pytest.mark.parametrize("dims, patch", [((1,), None), ((0,), None), ((0, 1), 5)])
def test_matches_gudhi_oracle_2d(dims, patch):
  rng = np.random.default_rng(sum(dims) + (patch or 0))
  pred, target = _maps(rng, (3, 13, 17))
  pred[-1] = target[-1]  # a perfect prediction costs nothing
  per_example, grad = _loss_and_grad(pred, target, dims=dims, patch_size=patch)
  want_loss, want_grad = topoloss_oracle(pred, target, dims=dims, patch=patch)
  np.testing.assert_allclose(np.asarray(per_example), want_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-5, atol=1e-6)
  assert np.all(want_loss[:-1] > 0) and want_loss[-1] == 0


def test_matches_gudhi_oracle_3d():
  rng = np.random.default_rng(3)
  pred, target = _maps(rng, (2, 5, 6, 7))
  got = jax.jit(lambda p: losses.topoloss(p, target, dims=(0, 2)))(pred)
  want, _ = topoloss_oracle(pred, target, dims=(0, 2))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_skip_uniform_patches_as_the_pytorch_original():
  rng = np.random.default_rng(4)
  pred, target = _maps(rng, (2, 12, 12))
  target[:, :6, :6] = 0  # one empty patch
  got = losses.topoloss(pred, target, dims=(0, 1), patch_size=6, skip_uniform_patches=True)
  want, _ = topoloss_oracle(pred, target, dims=(0, 1), patch=6, skip_uniform=True)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
  assert np.all(want < topoloss_oracle(pred, target, dims=(0, 1), patch=6)[0])


def test_hand_worked_ring():
  """A ring of probability 0.9 closed by one pixel of 0.3 around a 0.05 hole."""
  target = np.zeros((1, 7, 7), np.float32)
  target[0, 2:5, 2:5] = 1
  target[0, 3, 3] = 0
  pred = 0.9 * target + 0.05
  pred[0, 2, 3] = 0.3
  # The hole is born at 0.3 and dies at 0.05: pushed to (1, 0).
  np.testing.assert_allclose(np.asarray(losses.topoloss(pred, target)), [0.49 + 0.0025],
                             rtol=1e-6)
  # Without the hole in the target the hole is removed: 2 (0.3 - 0.05)^2.
  filled = np.where(target > 0, 1, 0).astype(np.float32)
  filled[0, 3, 3] = 1
  np.testing.assert_allclose(np.asarray(losses.topoloss(pred, filled)), [2 * 0.25 ** 2],
                             rtol=1e-6)
  # A faint hole (persistence 0.02 < 0.03) is left alone.
  faint = pred.copy()
  faint[0, 2, 3] = 0.07
  np.testing.assert_allclose(np.asarray(losses.topoloss(faint, filled)), [0.0])
  # Plateaus everywhere: finite gradients; vmap over examples equals the batch.
  batch = np.concatenate([pred, faint])
  grad = jax.grad(lambda p: losses.topoloss(p, target.repeat(2, 0)).sum())(batch)
  assert np.all(np.isfinite(np.asarray(grad)))
  mapped = jax.vmap(lambda p, t: losses.topoloss(p[None], t[None])[0])(batch, target.repeat(2, 0))
  np.testing.assert_allclose(np.asarray(mapped), np.asarray(losses.topoloss(batch, target.repeat(2, 0))))


def test_tiles_cover_every_pixel_once():
  x = jnp.arange(2 * 7 * 10, dtype=jnp.float32).reshape(2, 7, 10)
  tiles = _tiles(x, (3, 4), jnp.array([-1.0, -2.0]))
  assert tiles.shape == (2, 9, 3, 4)
  np.testing.assert_array_equal(np.asarray(tiles[:, 4]), np.asarray(x[:, 3:6, 4:8]))
  np.testing.assert_array_equal(np.asarray(tiles[1, 8]), [[138, 139, -2, -2]] + [[-2] * 4] * 2)
  values = np.sort(np.asarray(tiles).reshape(2, -1))[:, -70:]
  np.testing.assert_array_equal(values, np.asarray(x).reshape(2, -1))


def test_registry_and_bad_inputs():
  assert losses.get_loss("topoloss").__name__ == "topoloss"
  good = jnp.zeros((1, 8, 8))
  with pytest.raises(ValueError, match="same shape"):
    losses.topoloss(good, jnp.zeros((1, 8, 9)))
  with pytest.raises(ValueError, match="`dims`"):
    losses.topoloss(good, good, dims=(2,))
  with pytest.raises(ValueError, match="`patch_size`"):
    losses.topoloss(good, good, patch_size=1)
  with pytest.raises(ValueError, match="`pred` must be floating"):
    losses.topoloss(jnp.zeros((1, 8, 8), jnp.int32), good)
  with pytest.raises(ValueError, match="NaN"):
    losses.topoloss(good.at[0, 0, 0].set(jnp.nan), good)


def test_nan_under_jit_scheduled_bf16_logits_and_numpy_patch_size():
  pred = jnp.full((2, 8, 8), 0.5).at[0, 3, 3].set(jnp.nan)
  got = jax.jit(lambda p: losses.topoloss(p, jnp.zeros((2, 8, 8)), patch_size=np.int64(4)))(pred)
  assert np.isnan(got[0]) and got[1] == 0
  late = losses.make_loss({"topoloss": 1.0}, schedules={"topoloss": {"name": "step",
                                                                     "start_fraction": 0.5}},
                          total_steps=10)
  logits = jnp.zeros((2, 8, 8, 2), jnp.bfloat16)
  labels = jnp.zeros((2, 8, 8), jnp.int32)
  assert jax.jit(late)(logits, labels, step=0).dtype == jnp.float32
