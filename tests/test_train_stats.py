"""The paired permutation test of `topojax.train.stats`."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats

from topojax.train.stats import paired_permutation_test


def _mean_difference(x, y, axis):
  return np.mean(x - y, axis=axis)


def test_identical_samples_give_p_one():
  a = np.random.default_rng(0).normal(size=30)
  assert paired_permutation_test(a, a) == 1.0
  assert paired_permutation_test(a[:5], a[:5]) == 1.0  # exact enumeration too


def test_constant_shift_on_20_pairs_is_significant():
  b = np.random.default_rng(1).normal(size=20)
  p = paired_permutation_test(b + 0.5, b)
  # Only the two all-same-sign flips reach the observed sum: p = 1/10001.
  assert p == pytest.approx(1 / 10_001)
  assert p < 0.05


def test_exact_enumeration_by_hand():
  a = np.array([3.0, 1.0, 4.0, 1.5])
  b = np.array([1.0, 2.0, 1.0, 1.0])
  d = a - b  # [2, -1, 3, 0.5], observed |sum| = 4.5
  flips = np.array(list(itertools.product([-1.0, 1.0], repeat=4)))
  expected = np.mean(np.abs(flips @ d) >= 4.5 - 1e-12)
  # By hand: |sum| >= 4.5 for no flip (4.5), -1 flipped (6.5), -1 and 0.5
  # flipped (5.5), and their three negations: 6 of 16.
  assert expected == 6 / 16
  assert paired_permutation_test(a, b) == expected
  assert paired_permutation_test(b, a) == expected  # two-sided: symmetric


def test_exact_matches_scipy_exactly():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=9), rng.normal(0.4, 1.0, size=9)
  reference = scipy.stats.permutation_test(
      (a, b), _mean_difference, permutation_type="samples", vectorized=True,
      n_resamples=10_000, alternative="two-sided").pvalue
  assert paired_permutation_test(a, b) == pytest.approx(reference, rel=1e-12)


def test_random_matches_scipy_statistically():
  rng = np.random.default_rng(3)
  a = rng.normal(size=40)
  b = a + rng.normal(0.25, 1.0, size=40)
  reference = scipy.stats.permutation_test(
      (a, b), _mean_difference, permutation_type="samples", vectorized=True,
      n_resamples=100_000, alternative="two-sided", random_state=0).pvalue
  p = paired_permutation_test(a, b, num_permutations=10_000, seed=5)
  # Binomial sd of a 10k-sample estimate of p ~ 0.1 is 0.003.
  assert abs(p - reference) < 0.015, (p, reference)
  assert 0.0 < p < 1.0


def test_seed_is_reproducible_and_matters():
  rng = np.random.default_rng(4)
  a, b = rng.normal(size=30), rng.normal(size=30)
  assert paired_permutation_test(a, b, seed=1) == paired_permutation_test(a, b, seed=1)
  assert paired_permutation_test(a, b, seed=1) != paired_permutation_test(a, b, seed=2)


def test_nan_pairs_are_dropped():
  a = np.array([3.0, 1.0, np.nan, 4.0, 1.5, 7.0])
  b = np.array([1.0, 2.0, 5.0, 1.0, 1.0, np.nan])
  kept = [0, 1, 3, 4]
  assert paired_permutation_test(a, b) == paired_permutation_test(a[kept], b[kept]) == 6 / 16
  assert np.isnan(paired_permutation_test([np.nan, 1.0], [2.0, np.nan]))
  assert np.isnan(paired_permutation_test([], []))


@pytest.mark.parametrize("a, b, match", [
    (np.zeros(3), np.zeros(4), "same length"),
    (np.zeros((2, 2)), np.zeros((2, 2)), "1-D"),
    (np.array([1.0, np.inf]), np.zeros(2), "infinite"),
])
def test_bad_samples_raise(a, b, match):
  with pytest.raises(ValueError, match=match):
    paired_permutation_test(a, b)


def test_bad_num_permutations_raises():
  with pytest.raises(ValueError, match="num_permutations"):
    paired_permutation_test(np.zeros(3), np.ones(3), num_permutations=0)
