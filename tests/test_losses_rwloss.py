"""Region-wise loss and its rectified map: a NumPy/SciPy oracle, gradients, registry, bad input.

Compilation dominates the run time, so the tests share few shapes: S2 (2D,
batch 2, odd non-square, C = 2 or 3) and S3 (3D, batch 2, C = 2).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from topojax.losses import get_loss
from topojax.losses import make_loss
from topojax.losses import rrw_map
from topojax.losses import rwloss

S2 = (2, 13, 17)
S3 = (2, 5, 6, 7)


# --- the reference, transcribed (jmlipman/RegionWiseLoss README, TopoMortar lib/losses.py) ---


def _rrw_reference(labels, num_classes, ratio=None):
  """`[B, *spatial, C]`: scipy EDT of each one-hot channel, -d / max(d + 1e-15), zeros -> ratio."""
  ratio = [1.0] * num_classes if ratio is None else ratio
  onehot = np.moveaxis(np.eye(num_classes)[labels], -1, 1)  # [B, C, *spatial]
  rrw = np.zeros_like(onehot)
  for b in range(rrw.shape[0]):
    for c in range(rrw.shape[1]):
      rrw[b, c] = ndimage.distance_transform_edt(onehot[b, c])
      rrw[b, c] = -1 * (rrw[b, c] / np.max(rrw[b, c] + 1e-15))
      rrw[b, c][rrw[b, c] == 0] = ratio[c]
  return np.moveaxis(rrw, 1, -1)


def _softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _loss_reference(logits, labels, ratio=None):
  p = _softmax(logits.astype(np.float64))
  rrw = _rrw_reference(labels, logits.shape[-1], ratio)
  return (p * rrw).mean(axis=tuple(range(1, p.ndim)))


def _blob_labels(rng, spatial, num_classes):
  """Smooth random regions of `num_classes` classes (objects several pixels thick)."""
  noise = ndimage.gaussian_filter(rng.normal(size=(num_classes, *spatial)),
                                  (0,) + (1.5,) * len(spatial))
  return np.argmax(noise + np.array([0.2] + [0.0] * (num_classes - 1)).reshape(
      (-1,) + (1,) * len(spatial)), axis=0).astype(np.int32)


def _case(name, seed=0):
  """(logits, labels) of one of the shared shapes, with empty / full masks."""
  rng = np.random.default_rng(seed)
  shape, num_classes = {"2d": (S2, 2), "2d_c3": (S2, 3), "3d": (S3, 2)}[name.split("/")[0]]
  labels = np.stack([_blob_labels(rng, shape[1:], num_classes) for _ in range(shape[0])])
  if name == "2d/empty":
    labels[1] = 0  # no foreground: the foreground class is absent, background fills it
  elif name == "2d/full":
    labels[0] = 1  # foreground everywhere: no boundary (scipy's phantom zero)
  elif name == "2d_c3":
    labels[1][labels[1] == 2] = 1  # class 2 absent from example 1
  elif name == "3d":
    labels[1] = 1
  logits = (3.0 * rng.normal(size=(*shape, num_classes))).astype(np.float32)
  return logits, labels


CASES = ["2d/empty", "2d/full", "2d_c3", "3d"]


@pytest.mark.parametrize("name", CASES)
def test_rrw_map_matches_scipy(name):
  logits, labels = _case(name)
  got = np.asarray(rrw_map(jnp.asarray(labels), logits.shape[-1]))
  np.testing.assert_allclose(got, _rrw_reference(labels, logits.shape[-1]), atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_rwloss_matches_reference(name):
  logits, labels = _case(name)
  got = jax.jit(rwloss)(logits, labels)
  assert got.shape == (labels.shape[0],)
  np.testing.assert_allclose(got, _loss_reference(logits, labels), rtol=1e-5, atol=1e-6)
  # The batch mean is the reference's torch.mean over (batch, class, space).
  np.testing.assert_allclose(jnp.mean(got), _loss_reference(logits, labels).mean(), rtol=1e-5)


def test_map_hand_values_and_edge_cases():
  labels = np.zeros(S2, np.int32)
  labels[0, 4:9, 2:15] = 1  # a 5-row bar: centre row at distance 3
  rrw = np.asarray(rrw_map(jnp.asarray(labels), 2))
  assert rrw.shape == S2 + (2,)
  np.testing.assert_allclose(rrw[0, 4:9, 8, 1], [-1 / 3, -2 / 3, -1, -2 / 3, -1 / 3], rtol=1e-6)
  assert np.all(rrw[0][labels[0] == 0][:, 1] == 1.0)  # outside the class: 1
  assert np.all(rrw[0][labels[0] == 1][:, 0] == 1.0)
  assert rrw[..., 1].min() >= -1.0 and np.isclose(rrw[0, ..., 1].min(), -1.0)
  # An absent class: the map is 1 everywhere (no division by zero).
  assert np.all(rrw[1, ..., 1] == 1.0) and np.all(np.isfinite(rrw))


def test_outside_per_class():
  logits, labels = _case("2d/empty")
  ratio = [0.5, 2.0]
  got = rrw_map(jnp.asarray(labels), 2, outside=jnp.asarray(ratio))
  np.testing.assert_allclose(got, _rrw_reference(labels, 2, ratio), atol=1e-6)
  np.testing.assert_allclose(rwloss(logits, labels, outside=jnp.asarray(ratio)),
                             _loss_reference(logits, labels, ratio), rtol=1e-5, atol=1e-6)


def test_jit_equals_eager_and_vmap():
  logits, labels = _case("2d/empty")
  eager = rwloss(logits, labels)
  np.testing.assert_allclose(jax.jit(rwloss)(logits, labels), eager, rtol=1e-6)
  # vmap over an extra leading axis: two batches of one example each.
  mapped = jax.vmap(rwloss)(logits[:, None], labels[:, None])
  np.testing.assert_allclose(mapped[:, 0], eager, rtol=1e-5, atol=1e-7)


def test_gradient_matches_closed_form():
  """d/dl_ic of mean(p * M) = p_ic (M_ic - sum_k p_ik M_ik) / (N C)."""
  logits, labels = _case("2d/full")
  grad = jax.jit(jax.grad(lambda l: jnp.sum(rwloss(l, labels))))(logits)
  assert np.all(np.isfinite(grad))
  p = _softmax(logits.astype(np.float64))
  rrw = _rrw_reference(labels, 2)
  expected = p * (rrw - (p * rrw).sum(-1, keepdims=True)) / np.prod(logits.shape[1:])
  np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_gradient_direction():
  """More foreground probability inside the object lowers the loss."""
  logits, labels = _case("2d/empty")
  loss = jax.jit(lambda l: jnp.sum(rwloss(l, labels)))
  grad = np.asarray(jax.grad(loss)(logits))
  inside = labels == 1
  assert inside.any()
  assert np.all(grad[..., 1][inside] < 0) and np.all(grad[..., 0][inside] > 0)
  pushed = logits.copy()
  pushed[..., 1][inside] += 1.0
  assert float(loss(pushed)) < float(loss(logits))
  # A perfect prediction scores lower than a wrong one.
  perfect = 20.0 * np.eye(2, dtype=np.float32)[labels]
  assert np.all(np.asarray(rwloss(perfect, labels)) < np.asarray(rwloss(-perfect, labels)))


def test_registry():
  assert get_loss("rwloss") is rwloss
  logits, labels = _case("2d/empty")
  np.testing.assert_allclose(make_loss({"rwloss": 1.0})(logits, labels),
                             rwloss(logits, labels), rtol=1e-6)


def test_bad_input():
  logits, labels = _case("2d/empty")
  with pytest.raises(ValueError, match="integer"):
    rwloss(logits, labels.astype(bool))
  with pytest.raises(ValueError, match="C = 2"):  # soft labels are binary
    rwloss(np.zeros(labels.shape + (3,), np.float32), labels.astype(np.float32))
  with pytest.raises(ValueError, match="floating"):
    rwloss(labels[..., None].repeat(2, -1), labels)
  with pytest.raises(ValueError, match="shape"):
    rwloss(logits, labels[:, :-1])
  with pytest.raises(ValueError, match="C >= 2"):
    rwloss(logits[..., :1], labels)
  bad = labels.copy()
  bad[0, 0, 0] = 2
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    rwloss(logits, bad)
  flagged = jax.jit(rwloss)(logits, bad)  # under jit: NaN for the bad example only
  assert np.isnan(flagged[0]) and np.isfinite(flagged[1])
  with pytest.raises(ValueError, match="outside"):
    rwloss(logits, labels, outside=jnp.ones(3))
  with pytest.raises(ValueError, match="num_classes"):
    rrw_map(labels, 1)
  with pytest.raises(ValueError, match="labels"):
    rrw_map(labels[0], 2)
  with pytest.raises(ValueError, match="labels"):
    rrw_map(labels.astype(np.float32), 2)
