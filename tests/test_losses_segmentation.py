"""Segmentation losses: formulas, MONAI/torch oracles, jit/vmap/grad, bounds and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from topojax import losses
from topojax.skeleton import soft_skeleton_reference

torch = pytest.importorskip("torch")
monai_losses = pytest.importorskip("monai.losses")


def _example(seed, shape=(3, 20, 24), num_classes=2, scale=3.0):
  rng = np.random.default_rng(seed)
  logits = (scale * rng.normal(size=(*shape, num_classes))).astype(np.float32)
  labels = rng.integers(0, num_classes, shape).astype(np.int32)
  return logits, labels


def _channels_first(logits, labels):
  return (torch.from_numpy(np.moveaxis(logits, -1, 1).copy()),
          torch.from_numpy(labels[:, None].astype(np.int64)))


def _softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _numpy_cldice(logits, labels, num_iter, smooth):
  """The issue's formula, with the skeleton from the reduce_window reference."""
  num_classes = logits.shape[-1]
  probs = np.moveaxis(_softmax(logits.astype(np.float64)), -1, 1)[:, 1:]
  onehot = np.moveaxis(np.eye(num_classes)[labels], -1, 1)[:, 1:]
  ndim = labels.ndim - 1
  skel = lambda x: np.asarray(soft_skeleton_reference(x.astype(np.float32), num_iter=num_iter, ndim=ndim), np.float64)
  sp, sg = skel(probs), skel(onehot)
  axes = tuple(range(1, probs.ndim))
  tprec = ((sp * onehot).sum(axes) + smooth) / (sp.sum(axes) + smooth)
  tsens = ((sg * probs).sum(axes) + smooth) / (sg.sum(axes) + smooth)
  return 1 - 2 * tprec * tsens / (tprec + tsens)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("seed", range(3))
def test_cross_entropy_matches_torch(seed):
  logits, labels = _example(seed, num_classes=3)
  t_logits, t_labels = _channels_first(logits, labels)
  expected = torch.nn.functional.cross_entropy(t_logits, t_labels[:, 0], reduction="none").mean((1, 2)).numpy()
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), expected, rtol=1e-5)


def test_cross_entropy_class_weights_topomortar_convention():
  logits, labels = _example(0, num_classes=3)
  weights = np.array([0.2, 1.0, 3.0], np.float32)
  p = _softmax(logits.astype(np.float64))
  nll = -np.log(np.take_along_axis(p, labels[..., None], -1))[..., 0]
  expected = (weights[labels] * nll).mean((1, 2))  # plain mean, not normalised by the weights
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, class_weights=weights), expected, rtol=1e-5)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("num_classes,shape", [(2, (3, 20, 24)), (4, (2, 7, 9)), (3, (2, 5, 6, 7))])
def test_dice_matches_monai(include_background, num_classes, shape):
  logits, labels = _example(1, shape, num_classes)
  monai_dice = monai_losses.DiceLoss(include_background=include_background, softmax=True, to_onehot_y=True,
                                     reduction="none", smooth_nr=1.0, smooth_dr=1.0)
  expected = monai_dice(*_channels_first(logits, labels)).numpy().reshape(shape[0], -1).mean(1)
  ours = losses.dice(logits, labels, include_background=include_background)
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,num_classes,num_iter", [
    ((3, 20, 24), 2, 3), ((2, 16, 16), 3, 10), ((2, 9, 10, 11), 2, 3), ((1, 1, 9), 2, 0)])
@pytest.mark.parametrize("smooth", [1.0, 1e-3])
def test_cldice_matches_formula(shape, num_classes, num_iter, smooth):
  logits, labels = _example(2, shape, num_classes)
  expected = _numpy_cldice(logits, labels, num_iter, smooth)
  np.testing.assert_allclose(losses.cldice(logits, labels, num_iter=num_iter, smooth=smooth), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,num_iter", [((3, 20, 24), 3), ((2, 8, 9, 10), 10)])
def test_dice_cldice_matches_monai(shape, num_iter):
  """MONAI 1.6's SoftDiceclDiceLoss per example; its harmonic-mean epsilon made negligible."""
  logits, labels = _example(3, shape)
  args = dict(include_background=False, softmax=True, reduction="none")
  t_logits, t_labels = _channels_first(logits, labels)
  t_onehot = torch.nn.functional.one_hot(t_labels[:, 0], 2).movedim(-1, 1).float()
  cl = monai_losses.SoftclDiceLoss(iter_=num_iter, smooth=1e-30, **args)(t_logits, t_onehot).numpy()
  dc = monai_losses.DiceLoss(smooth_nr=1.0, smooth_dr=1.0, **args)(t_logits, t_onehot).numpy().reshape(-1)
  alpha = 0.3
  expected = (1 - alpha) * dc + alpha * cl
  ours = losses.dice_cldice(logits, labels, alpha=alpha, num_iter=num_iter)
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_cedice_is_sum_of_terms():
  logits, labels = _example(4)
  w = np.array([1.0, 2.0], np.float32)
  np.testing.assert_allclose(
      losses.cedice(logits, labels, class_weights=w, include_background=False),
      losses.cross_entropy(logits, labels, class_weights=w) + losses.dice(logits, labels, include_background=False),
      rtol=1e-6)


def test_make_loss_weighted_sum_and_errors():
  logits, labels = _example(5)
  loss = losses.make_loss({"dice": 0.5, "cldice": 0.5}, {"cldice": {"num_iter": 5}})
  expected = 0.5 * losses.dice(logits, labels) + 0.5 * losses.cldice(logits, labels, num_iter=5)
  np.testing.assert_allclose(loss(logits, labels), expected, rtol=1e-6)
  with pytest.raises(ValueError, match="Unknown loss 'focal'"):
    losses.make_loss({"focal": 1.0})
  with pytest.raises(ValueError, match="without a weight"):
    losses.make_loss({"dice": 1.0}, {"cldice": {}})
  with pytest.raises(ValueError, match="at least one"):
    losses.make_loss({})


# ---------------------------------------------------------------- bounds and edge cases

ALL_LOSSES = {
    "cross_entropy": losses.cross_entropy,
    "dice": losses.dice,
    "dice_no_bg": lambda l, y: losses.dice(l, y, include_background=False),
    "cldice": losses.cldice,
    "dice_cldice": losses.dice_cldice,
    "cedice": losses.cedice,
}


def _tubes(shape=(2, 24, 24)):
  labels = np.zeros(shape, np.int32)
  labels[:, 5:8, :] = 1
  labels[:, :, 14:16] = 1
  return labels


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_perfect_prediction_is_near_zero_and_worst_is_high(name):
  fn = ALL_LOSSES[name]
  labels = _tubes()
  perfect = 30.0 * jax.nn.one_hot(labels, 2)
  worst = 30.0 * jax.nn.one_hot(1 - labels, 2)
  assert np.all(np.asarray(fn(perfect, labels)) < 1e-3)
  assert np.all(np.asarray(fn(worst, labels)) > 0.9)


@pytest.mark.parametrize("name", [n for n in ALL_LOSSES if n not in ("cross_entropy", "cedice")])
def test_bounded_in_unit_interval(name):
  fn = ALL_LOSSES[name]
  for seed in range(3):
    logits, labels = _example(seed, scale=10.0)
    value = np.asarray(fn(logits, labels))
    assert np.all((value >= 0) & (value <= 1)), value


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_empty_and_full_labels_are_finite(name):
  fn = ALL_LOSSES[name]
  logits, _ = _example(6, shape=(2, 9, 11))
  for labels in (np.zeros((2, 9, 11), np.int32), np.ones((2, 9, 11), np.int32)):
    value = np.asarray(fn(logits, labels))
    assert value.shape == (2,) and np.all(np.isfinite(value))
  saturated = np.where(np.arange(2)[None, None, None] == 0, -np.inf, 0.0) * np.ones((2, 9, 11, 2))
  assert np.all(np.isfinite(np.asarray(ALL_LOSSES[name](saturated.astype(np.float32), np.ones((2, 9, 11), np.int32)))))


# ---------------------------------------------------------------- transformations


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_jit_vmap_and_per_example(name):
  fn = ALL_LOSSES[name]
  logits, labels = _example(7, shape=(3, 12, 10))
  eager = fn(logits, labels)
  np.testing.assert_allclose(jax.jit(fn)(logits, labels), eager, rtol=1e-6)
  single = jax.vmap(lambda l, y: fn(l[None], y[None])[0])(logits, labels)
  np.testing.assert_allclose(single, eager, rtol=1e-6)
  np.testing.assert_allclose(fn(logits[1:2], labels[1:2]), eager[1:2], rtol=1e-6)


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_grad_finite_and_nonzero(name):
  fn = ALL_LOSSES[name]
  logits, labels = _example(8, shape=(2, 16, 16))
  grads = jax.grad(lambda l: jnp.sum(fn(l, labels)))(jnp.asarray(logits))
  assert bool(jnp.all(jnp.isfinite(grads)))
  assert float(jnp.abs(grads).max()) > 0.0


@pytest.mark.parametrize("name", ["cross_entropy", "dice", "cedice"])
def test_check_grads_smooth_losses(name):
  logits, labels = _example(9, shape=(1, 5, 6), scale=1.0)
  check_grads(lambda l: ALL_LOSSES[name](l, labels), (jnp.asarray(logits, jnp.float32),), order=1,
              modes=["rev"], atol=2e-2, rtol=2e-2)


def test_cldice_grad_matches_reference_composition():
  logits, labels = _example(10, shape=(2, 14, 12))
  grads = jax.grad(lambda l: jnp.sum(losses.cldice(l, labels)))(jnp.asarray(logits))

  def reference(l):
    p = jnp.moveaxis(jax.nn.softmax(l, -1)[..., 1:], -1, 1)
    g = jnp.moveaxis(jax.nn.one_hot(labels, 2)[..., 1:], -1, 1)
    sp, sg = soft_skeleton_reference(p, num_iter=3), soft_skeleton_reference(g, num_iter=3)
    tprec = ((sp * g).sum((1, 2, 3)) + 1) / (sp.sum((1, 2, 3)) + 1)
    tsens = ((sg * p).sum((1, 2, 3)) + 1) / (sg.sum((1, 2, 3)) + 1)
    return jnp.sum(1 - 2 * tprec * tsens / (tprec + tsens))
  np.testing.assert_allclose(grads, jax.grad(reference)(jnp.asarray(logits)), atol=1e-6)


def test_low_precision_logits_compute_in_float32():
  logits, labels = _example(11)
  value = losses.dice_cldice(jnp.asarray(logits, jnp.bfloat16), labels)
  assert value.dtype == jnp.float32
  np.testing.assert_allclose(value, losses.dice_cldice(logits, labels), atol=2e-2)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", list(ALL_LOSSES))
@pytest.mark.parametrize("logits,labels,match", [
    (np.zeros((2, 8, 8), np.float32), np.zeros((2, 8), np.int32), "channels-last"),
    (np.zeros((2, 8, 8, 2), np.float32), np.zeros((2, 8, 9), np.int32), "labels` must have shape"),
    (np.zeros((2, 8, 8, 2), np.int32), np.zeros((2, 8, 8), np.int32), "logits` must have a floating dtype"),
    (np.zeros((2, 8, 8, 2), np.float32), np.zeros((2, 8, 8), bool), "labels` must have an integer dtype"),
    (np.zeros((2, 8, 8, 1), np.float32), np.zeros((2, 8, 8), np.int32), "C >= 2"),
    (np.zeros((2, 8, 8, 2), np.float32), np.full((2, 8, 8), 2, np.int32), r"must lie in \[0, 1\]"),
    (np.zeros((2, 8, 8, 2), np.float32), np.full((2, 8, 8), -1, np.int32), r"must lie in \[0, 1\]"),
])
def test_bad_input_raises(name, logits, labels, match):
  with pytest.raises(ValueError, match=match):
    ALL_LOSSES[name](logits, labels)


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_out_of_range_labels_under_jit_flag_nan_per_example(name):
  logits, labels = _example(12)
  labels[1, 0, 0] = 5
  value = np.asarray(jax.jit(ALL_LOSSES[name])(logits, labels))
  assert np.isnan(value[1]) and np.all(np.isfinite(value[[0, 2]]))


def test_bad_hyperparameters_raise():
  logits, labels = _example(13)
  with pytest.raises(ValueError, match="class_weights"):
    losses.cross_entropy(logits, labels, class_weights=np.ones(3, np.float32))
  with pytest.raises(ValueError, match="num_iter"):
    losses.cldice(logits, labels, num_iter=-1)
  with pytest.raises(TypeError):
    losses.dice(logits, labels, True)  # hyperparameters are keyword-only
