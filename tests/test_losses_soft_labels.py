"""Soft binary labels (a teacher's foreground probabilities, as in
self-distillation) are accepted by every segmentation loss in the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from topojax.losses import LOSSES
from topojax.losses import cross_entropy
from topojax.losses import dice
from topojax.losses import make_loss

SEGMENTATION_LOSSES = sorted(LOSSES)


def _case(seed=0, shape=(2, 16, 16)):
  rng = np.random.default_rng(seed)
  labels = (rng.random(shape) > 0.6).astype(np.int32)
  logits = rng.normal(size=shape + (2,)).astype(np.float32)
  return jnp.asarray(logits), jnp.asarray(labels)


@pytest.mark.parametrize("name", SEGMENTATION_LOSSES)
def test_zero_one_soft_labels_equal_hard_labels(name):
  logits, labels = _case()
  fn = LOSSES[name]
  np.testing.assert_allclose(fn(logits, labels.astype(jnp.float32)), fn(logits, labels),
                             rtol=1e-5, atol=1e-6)


def test_soft_cross_entropy_and_dice_follow_the_formulas():
  logits, _ = _case(1)
  q = jax.random.uniform(jax.random.key(0), logits.shape[:-1])
  log_p = jax.nn.log_softmax(logits, axis=-1)
  expected_ce = -jnp.mean((1 - q) * log_p[..., 0] + q * log_p[..., 1], axis=(1, 2))
  np.testing.assert_allclose(cross_entropy(logits, q), expected_ce, rtol=1e-5)
  p = jax.nn.softmax(logits, axis=-1)[..., 1]
  inter, total = jnp.sum(p * q, axis=(1, 2)), jnp.sum(p + q, axis=(1, 2))
  expected_dice = 1 - (2 * inter + 1) / (total + 1)
  np.testing.assert_allclose(dice(logits, q, include_background=False), expected_dice,
                             rtol=1e-5)


def test_soft_labels_train_a_weighted_sum_with_finite_gradients():
  logits, _ = _case(2)
  q = jax.random.uniform(jax.random.key(1), logits.shape[:-1])
  loss = make_loss({"cross_entropy": 1.0, "dice": 1.0, "cldice": 0.5, "skeleton_recall": 1.0})
  grads = jax.grad(lambda l: jnp.sum(loss(l, q)))(logits)
  assert bool(jnp.all(jnp.isfinite(grads)))


def test_bad_soft_labels_are_flagged():
  logits, labels = _case(3)
  q = labels.astype(jnp.float32)
  with pytest.raises(ValueError, match=r"Soft `labels` must lie in \[0, 1\]"):
    dice(logits, q.at[0, 0, 0].set(1.5))
  # Under jit the values are unknown: the example becomes NaN instead.
  out = jax.jit(lambda q: LOSSES["skeleton_recall"](logits, q))(q.at[1, 0, 0].set(jnp.nan))
  assert np.isfinite(out[0]) and np.isnan(out[1])
  with pytest.raises(ValueError, match="C = 2"):
    dice(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8)))
  with pytest.raises(ValueError, match="integer dtype .* or a floating"):
    dice(jnp.zeros((1, 8, 8, 2)), jnp.zeros((1, 8, 8), bool))
