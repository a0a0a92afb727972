r"""Point clouds of the topological autoencoder experiment: Spheres and digits.

`spheres` is the synthetic data set of Moor et al. (2020), drawn exactly as
their code does (BorgwardtLab/topological-autoencoders,
`src/datasets/topo_dataset/spheres.py`, `create_sphere_dataset`, and
`src/datasets/manifolds.py`, `Spheres`): with the same seed and NumPy's
legacy `RandomState` the points are the original's. `digits` is scikit-learn's
bundled 8 x 8 digits (no download). `standardized_split` is the original's
`train_test_split` + `normalize_features`.
"""

from __future__ import annotations

import math

import numpy as np

from topojax._src import checks


def spheres(num_samples: int = 500, *, dim: int = 100, num_spheres: int = 11,
            radius: float = 5.0, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
  r"""Moor et al.'s Spheres: small $d$-spheres inside one large $d$-sphere in $\mathbb{R}^{d+1}$.

  `num_spheres - 1` spheres $S^d$ of radius `radius`, `num_samples` points
  each, centred at random offsets drawn from $\mathcal{N}(0, \sigma^2 I)$ with
  $\sigma = 10 / \sqrt{d}$ (the original calls it a variance but passes it to
  `np.random.normal` as the scale), enclosed by one sphere of radius
  `5 * radius` about the origin with `10 * num_samples` points. Points are
  uniform on each sphere (normalised Gaussians). The defaults are the paper's:
  ten 100-spheres of radius 5 in $\mathbb{R}^{101}$, 500 points each, inside a
  sphere of radius 25 with 5000 points (10000 in all).

  Args:
    num_samples: points per small sphere (the big one gets ten times as many).
    dim: $d$, the dimension of each sphere; points live in $\mathbb{R}^{d+1}$.
    num_spheres: spheres in all, the enclosing one included (>= 1).
    radius: radius of the small spheres; the enclosing one has `5 * radius`.
    seed: seed of a `np.random.RandomState`, drawn in the original's order
      (offsets, then each small sphere, then the big one), so that a seed
      gives the original's data set.

  Returns:
    `(points, labels)`: `[N, dim + 1]` float32 and `[N]` int32 sphere indices
    (`num_spheres - 1` is the enclosing sphere), small spheres first, where
    `N = (num_spheres - 1 + 10) * num_samples`.

  Examples:
    >>> import numpy as np
    >>> from topojax.data import spheres
    >>> x, y = spheres(20, dim=3, num_spheres=3)
    >>> x.shape, x.dtype, y.shape, np.bincount(y).tolist()
    ((240, 4), dtype('float32'), (240,), [20, 20, 200])
    >>> np.linalg.norm(x[y == 2], axis=1).round(3).max()  # the big sphere, radius 25
    np.float32(25.0)
  """
  num_samples = checks.check_positive_int(num_samples, "num_samples")
  dim = checks.check_positive_int(dim, "dim")
  num_spheres = checks.check_positive_int(num_spheres, "num_spheres")
  seed = checks.check_positive_int(seed, "seed", allow_zero=True)
  if not 0 < radius < math.inf:
    raise ValueError(f"`radius` must be finite and > 0, got {radius}.")
  rng = np.random.RandomState(seed)

  def sphere(n: int, r: float) -> np.ndarray:  # tadasets' dsphere, as vendored by the original
    data = rng.randn(n, dim + 1)
    return r * data / np.sqrt(np.sum(data ** 2, axis=1))[:, None]

  shifts = rng.normal(0, 10 / np.sqrt(dim), [num_spheres, dim + 1])
  parts = [sphere(num_samples, radius) + shifts[i] for i in range(num_spheres - 1)]
  parts.append(sphere(10 * num_samples, 5 * radius))
  labels = np.concatenate([np.full(len(p), i, np.int32) for i, p in enumerate(parts)])
  return np.concatenate(parts).astype(np.float32), labels


def digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's bundled digits: 1797 images of 8 x 8 pixels, no download.

  Returns:
    `(pixels, labels)`: `[1797, 64]` float32 grey levels in [0, 16] and
    `[1797]` int32 digits 0-9.

  Raises:
    ImportError: scikit-learn is not installed (`pip install scikit-learn`).

  Examples:
    >>> from topojax.data import digits
    >>> x, y = digits()
    >>> x.shape, x.dtype, y.shape, int(y.max())
    ((1797, 64), dtype('float32'), (1797,), 9)
  """
  try:
    from sklearn.datasets import load_digits
  except ImportError as e:
    raise ImportError(
        "`topojax.data.digits` needs scikit-learn (`pip install scikit-learn`).") from e
  pixels, labels = load_digits(return_X_y=True)
  return pixels.astype(np.float32), labels.astype(np.int32)


def standardized_split(
    points: np.ndarray, labels: np.ndarray, *, test_fraction: float = 0.1, seed: int = 42,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """A random train/test split, features standardised with the train statistics.

  The original's `ManifoldDataset`: scikit-learn's
  `train_test_split(test_size=test_fraction, random_state=RandomState(seed))`
  (the test set is the first `ceil(test_fraction * N)` entries of one
  permutation, the train set the rest), then every feature shifted and scaled
  to zero mean and unit variance over the train set. A feature that is
  constant on the train set (a digits corner pixel) is only shifted.

  Args:
    points: `[N, D]` features.
    labels: `[N]` labels, split alike.
    test_fraction: share of the points held out, in (0, 1).
    seed: seed of the permutation.

  Returns:
    `((train_points, train_labels), (test_points, test_labels))`, points as
    float32.

  Examples:
    >>> import numpy as np
    >>> x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    >>> (train_x, train_y), (test_x, test_y) = standardized_split(x, y, test_fraction=0.2)
    >>> train_x.shape, test_x.shape, sorted(np.concatenate([train_y, test_y]).tolist()) == list(range(10))
    ((8, 2), (2, 2), True)
    >>> np.abs(train_x.mean(0)).max() < 1e-6, np.allclose(train_x.std(0), 1)
    (np.True_, True)
  """
  points, labels = np.asarray(points), np.asarray(labels)
  if points.ndim != 2:
    raise ValueError(f"`points` must be [N, D], got shape {points.shape}.")
  if labels.shape != points.shape[:1]:
    raise ValueError(f"`labels` must have shape [N] = {points.shape[:1]}, got {labels.shape}.")
  if not 0 < test_fraction < 1:
    raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}.")
  n = len(points)
  num_test = math.ceil(test_fraction * n)
  if not 0 < num_test < n:
    raise ValueError(
        f"`test_fraction` {test_fraction} of {n} points leaves an empty train or test set.")
  order = np.random.RandomState(checks.check_positive_int(seed, "seed", allow_zero=True)
                                ).permutation(n)
  test, train = order[:num_test], order[num_test:]
  mean = points[train].mean(axis=0, dtype=np.float64)
  std = points[train].std(axis=0, dtype=np.float64)
  std = np.where(std > 0, std, 1.0)
  standardize = lambda x: ((x - mean) / std).astype(np.float32)
  return (standardize(points[train]), labels[train]), (standardize(points[test]), labels[test])
