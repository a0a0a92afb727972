"""Significance tests for comparing losses on the same test images."""

from __future__ import annotations

import numpy as np

# Sign vectors are evaluated this many (rows x pairs) at a time, to bound memory.
_CHUNK_ELEMENTS = 1 << 22
# Relative tolerance for "as extreme as observed": sums of the same numbers in
# another order differ in the last bits, and such ties must count.
_TIE_RTOL = 1e-12


def paired_permutation_test(a, b, *, num_permutations: int = 10_000,
                            seed: int = 0) -> float:
  r"""Two-sided paired permutation (sign-flip) test of equal means.

  With per-pair differences $d_i = a_i - b_i$, the statistic is
  $T = |\sum_i d_i|$ (the absolute mean difference, times $n$). Under the null
  hypothesis (a and b exchangeable within each pair) every sign vector
  $s \in \{-1, 1\}^n$ is equally likely, and the p-value is the fraction of
  sign vectors with $|\sum_i s_i d_i| \ge T$:

  - exact enumeration of all $2^n$ sign vectors when
    $2^n \le$ `num_permutations`: $p = \#\{s : T_s \ge T\} / 2^n$;
  - otherwise `num_permutations` random sign vectors:
    $p = (1 + \#\{T_s \ge T\}) / (1 + \text{num\_permutations})$ (the observed
    labelling counts once, so $p > 0$).

  These equal `scipy.stats.permutation_test(..., permutation_type="samples",
  alternative="two-sided")` on the mean difference (the sign-flip null is
  symmetric, so doubling the smaller one-sided p is the same test).

  Pairs where `a` or `b` is NaN (a metric undefined on that image) are dropped
  before testing; if no pair is left, the result is NaN.

  Args:
    a: `[n]` values of the first method, one per test item.
    b: `[n]` values of the second method on the same items, same order.
    num_permutations: random sign vectors when not enumerating (>= 1).
    seed: seed of the random sign vectors (`numpy.random.default_rng`).

  Returns:
    The p-value in (0, 1], or NaN when no pair without NaN remains.

  Raises:
    ValueError: if `a` and `b` are not 1-D of the same length, hold an
      infinite value, or `num_permutations` < 1.

  Examples:
    >>> import numpy as np
    >>> from topojax.train.stats import paired_permutation_test
    >>> a = np.array([1.0, 2.0, 3.0, 4.0])
    >>> paired_permutation_test(a, a)  # identical: no evidence at all
    1.0
    >>> paired_permutation_test(a + 1.0, a)  # 2 of the 16 sign vectors reach 4
    0.125
    >>> p = paired_permutation_test(np.arange(20.0) + 0.5, np.arange(20.0))
    >>> bool(p < 0.05)
    True
  """
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
    raise ValueError(f"`a` and `b` must be 1-D with the same length, got shapes "
                     f"{a.shape} and {b.shape}.")
  if np.isinf(a).any() or np.isinf(b).any():
    raise ValueError("`a` and `b` must be finite or NaN (NaN pairs are dropped); "
                     "got an infinite value.")
  if int(num_permutations) < 1:
    raise ValueError(f"`num_permutations` must be >= 1, got {num_permutations}.")
  num_permutations = int(num_permutations)

  kept = ~(np.isnan(a) | np.isnan(b))
  differences = (a - b)[kept]
  n = differences.size
  if n == 0:
    return float("nan")
  observed = abs(differences.sum())
  threshold = observed - _TIE_RTOL * max(observed, np.abs(differences).sum())

  exact = n < 63 and 2 ** n <= num_permutations
  total = 2 ** n if exact else num_permutations
  rng = np.random.default_rng(seed)
  rows_per_chunk = max(1, _CHUNK_ELEMENTS // n)
  extreme = 0
  for start in range(0, total, rows_per_chunk):
    rows = min(rows_per_chunk, total - start)
    if exact:
      # Row r's bits are the signs: bit i set -> pair i flipped.
      codes = np.arange(start, start + rows, dtype=np.int64)[:, None]
      flipped = (codes >> np.arange(n, dtype=np.int64)) & 1
    else:
      flipped = rng.integers(0, 2, size=(rows, n))
    signs = 1.0 - 2.0 * flipped
    extreme += int(np.count_nonzero(np.abs(signs @ differences) >= threshold))
  if exact:
    return extreme / total
  return (extreme + 1) / (total + 1)
