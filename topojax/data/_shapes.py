r"""Shapes for the ECT experiments: digits as point clouds or images, and 3-D shapes.

Everything is padded to a fixed number of points with a boolean mask (`True`
for real points), so one compiled ECT serves every batch:

* `digits_point_clouds`: scikit-learn's bundled 8 x 8 digits (no download),
  the nonzero pixels as points in the plane, optionally with the grid edges
  between 4-adjacent nonzero pixels (a graph, padded with -1 rows);
* `digits_images`: the same digits as `[N, 8, 8]` grey levels in [0, 1]
  for `topojax.ect.image_ect`;
* `shapes_point_clouds`: a seeded synthetic set of 3-D point clouds in four
  classes (sphere, torus, Klein bottle, clusters of blobs), randomly rotated.

Coordinates are centred and scaled into the unit ball, so
`topojax.ect.linear_thresholds(1.0, T)` covers every shape.
"""

from __future__ import annotations

import numpy as np

from topojax._src import checks
from topojax.data._spheres import digits

SHAPE_CLASSES = ("sphere", "torus", "klein_bottle", "blobs")
_DIGIT_SIDE = 8


def digits_images() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits as images: `[1797, 8, 8]` float32 in [0, 1], `[1797]` labels.

  Examples:
    >>> from topojax.data import digits_images
    >>> images, labels = digits_images()
    >>> images.shape, float(images.max()), labels.shape
    ((1797, 8, 8), 1.0, (1797,))
  """
  pixels, labels = digits()
  return (pixels / 16.0).reshape(-1, _DIGIT_SIDE, _DIGIT_SIDE).astype(np.float32), labels


def _unit_ball(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Each cloud `[N, P, d]` minus its centroid, divided by its largest norm."""
  count = np.maximum(mask.sum(axis=1, keepdims=True), 1)[..., None]
  centred = points - (points * mask[..., None]).sum(axis=1, keepdims=True) / count
  centred = np.where(mask[..., None], centred, 0.0)
  radius = np.linalg.norm(centred, axis=-1).max(axis=1)[:, None, None]
  return centred / np.maximum(radius, 1e-12)


def digits_point_clouds(*, threshold: float = 0.0, edges: bool = False,
                        center: str = "cloud") -> tuple[np.ndarray, ...]:
  """scikit-learn's digits as planar point clouds: one point per pixel above `threshold`.

  Pixel (row i, column j) becomes the point (j, -i) (x to the right, y up).
  Clouds are padded to the 64 pixels of the grid; padding points sit at the
  origin with `mask` False.

  Args:
    threshold: grey level (0-16) a pixel must exceed to be a point.
    edges: also return the graph of 4-adjacent points, `[N, 112, 2]` vertex
      indices into the cloud, padding rows -1.
    center: "cloud": each cloud centred on its centroid and scaled to unit
      largest norm (the shape only); "grid": the 8 x 8 grid centred and
      divided by its half-diagonal (position and size kept), in the unit disc.

  Returns:
    `(points, mask, labels)` or, with `edges`, `(points, mask, edges,
    labels)`: `[1797, 64, 2]` float32, `[1797, 64]` bool, (`[1797, 112, 2]`
    int32,) `[1797]` int32.

  Examples:
    >>> import numpy as np
    >>> from topojax.data import digits_point_clouds
    >>> points, mask, edges, labels = digits_point_clouds(edges=True)
    >>> points.shape, mask.shape, edges.shape, labels.shape
    ((1797, 64, 2), (1797, 64), (1797, 112, 2), (1797,))
    >>> bool(np.linalg.norm(points, axis=-1).max() <= 1.0 + 1e-6), int(mask[0].sum())
    (True, 35)
  """
  if center not in ("cloud", "grid"):
    raise ValueError(f"`center` must be 'cloud' or 'grid', got {center!r}.")
  pixels, labels = digits()
  side = _DIGIT_SIDE
  rows, cols = np.divmod(np.arange(side * side), side)
  grid = np.stack([cols, -rows], axis=-1).astype(np.float64)
  present = pixels > threshold  # [N, 64]
  # Stable order: present pixels first, in raster order.
  order = np.argsort(~present, axis=1, kind="stable")
  mask = np.take_along_axis(present, order, axis=1)
  points = np.where(mask[..., None], grid[order], 0.0)
  if center == "cloud":
    points = _unit_ball(points, mask)
  else:
    half = (side - 1) / 2
    points = np.where(mask[..., None], (points - [half, -half]) / (half * np.sqrt(2)), 0.0)
  points = points.astype(np.float32)
  if not edges:
    return points, mask, labels
  # Grid edges (right and down neighbours), then kept where both ends are present.
  right = [(p, p + 1) for p in range(side * side) if p % side < side - 1]
  down = [(p, p + side) for p in range(side * side - side)]
  grid_edges = np.array(right + down)  # [112, 2] pixel indices
  slot = np.argsort(order, axis=1)  # pixel -> its position in the cloud
  ends = np.take_along_axis(slot[:, None, :].repeat(len(grid_edges), 1),
                            grid_edges[None].repeat(len(pixels), 0), axis=2)
  keep = present[:, grid_edges].all(axis=-1)
  keep_order = np.argsort(~keep, axis=1, kind="stable")
  ends = np.take_along_axis(ends, keep_order[..., None], axis=1)
  keep = np.take_along_axis(keep, keep_order, axis=1)
  edge_index = np.where(keep[..., None], ends, -1).astype(np.int32)
  return points, mask, edge_index, labels


def _rotations(rng: np.random.Generator, n: int) -> np.ndarray:
  """`n` uniformly random 3-D rotations (QR of Gaussian matrices, sign-fixed)."""
  q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
  q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
  det = np.linalg.det(q)
  q[:, :, 0] *= det[:, None]
  return q


def _sample_shape(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
  """`n` points of one random instance of class `name` (before normalising)."""
  u, w = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
  if name == "sphere":
    g = rng.normal(size=(n, 3))
    return g / np.linalg.norm(g, axis=1, keepdims=True)
  if name == "torus":
    big, small = 1.0, rng.uniform(0.25, 0.5)
    return np.stack([(big + small * np.cos(w)) * np.cos(u),
                     (big + small * np.cos(w)) * np.sin(u), small * np.sin(w)], axis=1)
  if name == "klein_bottle":  # the figure-8 immersion
    r = rng.uniform(1.5, 2.5)
    a = r + np.cos(u / 2) * np.sin(w) - np.sin(u / 2) * np.sin(2 * w)
    return np.stack([a * np.cos(u), a * np.sin(u),
                     np.sin(u / 2) * np.sin(w) + np.cos(u / 2) * np.sin(2 * w)], axis=1)
  if name == "blobs":
    k = rng.integers(2, 5)
    centres = rng.normal(size=(k, 3))
    which = rng.integers(0, k, n)
    return centres[which] + 0.15 * rng.normal(size=(n, 3))
  raise ValueError(name)


def shapes_point_clouds(num_per_class: int = 100, *, num_points: int = 256,
                        min_points: int | None = None, noise: float = 0.02,
                        rotate: bool = True, seed: int = 0) -> tuple[np.ndarray, ...]:
  """A seeded synthetic set of 3-D point clouds in the four `SHAPE_CLASSES`.

  Class 0, sphere: uniform on $S^2$. Class 1, torus: radii 1 and a random
  tube radius in [0.25, 0.5]. Class 2, Klein bottle: the figure-8 immersion
  in $\\mathbb{R}^3$ with a random radius in [1.5, 2.5]. Class 3, blobs: 2-4
  Gaussian clusters (std 0.15) about random centres. Each instance gets a
  random number of points in `[min_points, num_points]`, Gaussian noise of
  std `noise` (relative to the unit ball), a uniformly random rotation
  (`rotate`), and is centred and scaled into the unit ball.

  Args:
    num_per_class: instances per class.
    num_points: padded size of every cloud.
    min_points: fewest points of an instance (default `num_points // 2`).
    noise: std of the Gaussian jitter, after scaling into the unit ball.
    rotate: apply a random rotation to each instance.
    seed: the data set is a pure function of the arguments.

  Returns:
    `(points, mask, labels)`: `[4 * num_per_class, num_points, 3]` float32,
    `[.., num_points]` bool, `[..]` int32, classes interleaved
    (0, 1, 2, 3, 0, 1, ...).

  Examples:
    >>> import numpy as np
    >>> from topojax.data import shapes_point_clouds
    >>> points, mask, labels = shapes_point_clouds(2, num_points=32, seed=1)
    >>> points.shape, mask.shape, labels.tolist()
    ((8, 32, 3), (8, 32), [0, 1, 2, 3, 0, 1, 2, 3])
    >>> bool(np.linalg.norm(points, axis=-1).max() <= 1.0 + 1e-6)
    True
    >>> bool((shapes_point_clouds(2, num_points=32, seed=1)[0] == points).all())
    True
  """
  num_per_class = checks.check_positive_int(num_per_class, "num_per_class")
  num_points = checks.check_positive_int(num_points, "num_points")
  min_points = num_points // 2 if min_points is None else min_points
  if not 1 <= min_points <= num_points:
    raise ValueError(f"`min_points` must be in [1, num_points={num_points}], got {min_points}.")
  if not noise >= 0:
    raise ValueError(f"`noise` must be >= 0, got {noise}.")
  rng = np.random.default_rng(checks.check_positive_int(seed, "seed", allow_zero=True))
  total = num_per_class * len(SHAPE_CLASSES)
  labels = np.tile(np.arange(len(SHAPE_CLASSES), dtype=np.int32), num_per_class)
  counts = rng.integers(min_points, num_points + 1, total)
  mask = np.arange(num_points)[None, :] < counts[:, None]
  points = np.zeros((total, num_points, 3))
  for i, label in enumerate(labels):
    points[i, :counts[i]] = _sample_shape(rng, SHAPE_CLASSES[label], counts[i])
  if rotate:
    points = np.einsum("npi,nji->npj", points, _rotations(rng, total))
  points = _unit_ball(np.where(mask[..., None], points, 0.0), mask)
  points = points + noise * rng.normal(size=points.shape)
  points = np.where(mask[..., None], _unit_ball(points, mask), 0.0)
  return points.astype(np.float32), mask, labels
