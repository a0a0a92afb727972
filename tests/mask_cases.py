"""Random binary masks shared by the metric tests (imported by the test modules)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SHAPES_2D = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 3), (13, 9), (9, 13), (32, 32)]
SHAPES_3D = [(1, 1, 1), (1, 6, 7), (3, 3, 3), (5, 6, 7), (8, 8, 8), (9, 9, 9)]


def random_masks(rng: np.random.Generator, shape: tuple[int, ...], batch: int) -> np.ndarray:
  """`[batch, *shape]` masks at random densities: iid pixels, odd examples blobby."""
  density = rng.random((batch, 1))
  noise = rng.random((batch,) + shape)
  noise[1::2] = ndimage.gaussian_filter(noise[1::2], (0,) + (1.5,) * len(shape))
  ranks = noise.reshape(batch, -1).argsort(axis=1).argsort(axis=1)
  return (ranks < density * ranks.shape[1]).reshape(noise.shape)
