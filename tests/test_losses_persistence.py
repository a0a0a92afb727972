"""Persistence losses: formulas against hand-worked and replica values, the
registry adapters, and weight schedules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bm_reference
from topojax import losses
from topojax import metrics
from topojax import ph


def _maps(seed, shape=(3, 9, 11)):
  rng = np.random.default_rng(seed)
  pred = rng.random(shape).astype(np.float32)
  target = (rng.random(shape) > 0.5).astype(np.float32)
  return pred, target


def _expected_loss(p, g, filtration, comparison):
  """The published formula on the replica's pairs and matching."""
  sign = 1 if filtration == "sublevel" else -1
  total = 0.0
  for dim in (0, p.ndim - 1):
    pairs_p, pairs_g, matches = bm_reference.matching(sign * p, sign * g, dim=dim,
                                                      comparison=comparison)
    value = lambda image, pair: (image.flat[pair[0]], image.flat[pair[1]])
    matched_p = {a for a, _ in matches}
    matched_g = {b for _, b in matches}
    for a, b in matches:
      (bp, dp), (bg, dg) = value(p, pairs_p[a]), value(g, pairs_g[b])
      total += 2 * ((bp - bg) ** 2 + (dp - dg) ** 2)
    total += sum((lambda b, d: (b - d) ** 2)(*value(p, q))
                 for i, q in enumerate(pairs_p) if i not in matched_p)
    total += sum((lambda b, d: (b - d) ** 2)(*value(g, q))
                 for i, q in enumerate(pairs_g) if i not in matched_g)
  return total


@pytest.mark.parametrize("filtration", ["sublevel", "superlevel"])
def test_betti_matching_loss_is_the_published_formula(filtration):
  pred, target = _maps(0)
  loss = losses.betti_matching(pred, target, filtration=filtration)
  expected = [_expected_loss(p.astype(np.float64), g.astype(np.float64), filtration, "union")
              for p, g in zip(pred, target)]
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_betti_matching_loss_and_error_vanish_on_identical_maps():
  pred, _ = _maps(1)
  np.testing.assert_array_equal(losses.betti_matching(pred, pred), 0)
  np.testing.assert_array_equal(metrics.betti_matching_error(pred, pred), 0)


def test_betti_matching_gradient_is_finite_and_jits():
  pred, target = _maps(0)
  grad = jax.jit(jax.grad(lambda p: jnp.sum(losses.betti_matching(p, target))))(pred)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  # Unmatched target pairs add a constant only.
  drop = jax.grad(lambda p: jnp.sum(losses.betti_matching(
      p, target, include_unmatched_target=False)))(pred)
  np.testing.assert_allclose(grad, drop, atol=1e-6)


def test_betti_matching_error_counts_unmatched_bars():
  pred, target = _maps(2)
  m = ph.betti_matching(pred, target)
  expected = np.sum(m.pred_unmatched, 1) + np.sum(m.target_unmatched, 1)
  np.testing.assert_array_equal(metrics.betti_matching_error(pred, target), expected)


def test_registry_runs_betti_matching_on_logits_and_labels():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(2, 8, 10, 2)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, 2, size=(2, 8, 10)).astype(np.int32))
  fn = losses.get_loss("betti_matching")
  value = fn(logits, labels)
  foreground = 1 - jax.nn.softmax(logits, axis=-1)[..., 0]
  np.testing.assert_allclose(
      value, losses.betti_matching(foreground, (labels > 0).astype(jnp.float32)), rtol=1e-6)
  grad = jax.grad(lambda x: jnp.sum(fn(x, labels)))(logits)
  assert np.all(np.isfinite(grad))


def test_weight_schedules():
  late = losses.weight_schedule("step", start_fraction=0.7)
  assert [float(late(s, 10)) for s in (0, 6, 7, 10)] == [0, 0, 1, 1]
  ramp = losses.weight_schedule("linear", start_fraction=0.5, end_fraction=1.0)
  np.testing.assert_allclose([float(ramp(s, 10)) for s in (0, 5, 6, 10)], [0, 0, 0.2, 1])
  with pytest.raises(ValueError, match="start_fraction"):
    losses.weight_schedule("step", start_fraction=1.5)
  with pytest.raises(ValueError, match="weight schedule"):
    losses.weight_schedule("cosine")


def test_scheduled_term_is_off_before_its_start_and_weighted_after():
  rng = np.random.default_rng(4)
  logits = jnp.asarray(rng.normal(size=(2, 8, 8, 2)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, 2, size=(2, 8, 8)).astype(np.int32))
  scheduled = losses.make_loss({"dice": 1.0, "betti_matching": 0.5},
                               schedules={"betti_matching": {"name": "step",
                                                             "start_fraction": 0.7}},
                               total_steps=100)
  dice = losses.get_loss("dice")(logits, labels)
  topo = losses.get_loss("betti_matching")(logits, labels)
  step_fn = jax.jit(scheduled)
  np.testing.assert_allclose(step_fn(logits, labels, step=jnp.int32(10)), dice, rtol=1e-6)
  np.testing.assert_allclose(step_fn(logits, labels, step=jnp.int32(70)), dice + 0.5 * topo,
                             rtol=1e-6)
  with pytest.raises(ValueError, match="step"):
    scheduled(logits, labels)
  with pytest.raises(ValueError, match="total_steps"):
    losses.make_loss({"dice": 1.0}, schedules={"dice": {"name": "step"}})
