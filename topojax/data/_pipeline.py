"""Stateless batch sampling: each batch is a pure function of (step, seed).

A run that resumes from a checkpoint at step s therefore sees exactly the
batches it would have seen, with no iterator state to save.
"""

from __future__ import annotations

import numpy as np

from topojax._src import checks

# Augmentation strengths: brightness is an additive shift, contrast scales
# about each image's mean.
_BRIGHTNESS = 0.1
_CONTRAST = (0.8, 1.25)
# Domain tags keep the permutation and augmentation streams apart.
_PERMUTATION, _AUGMENTATION = 0, 1


def sample_batch(images: np.ndarray, labels: np.ndarray, *, step: int, batch_size: int,
                 seed: int, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The training batch of step `step`, without replacement within each epoch.

  Example positions `step * batch_size + k` (k < batch_size) walk through a
  fresh permutation of the N examples per epoch (`position // N`), keyed by
  `(seed, epoch)`; a batch may straddle two epochs. With `augment`, example k
  gets random flips, a random 90-degree rotation (square images only),
  a brightness shift in [-0.1, 0.1] and a contrast factor in [0.8, 1.25]
  keyed by `(seed, position)`, images clipped to [0, 1] and labels flipped or
  rotated alike.

  Args:
    images: `[N, H, W, C]` images in [0, 1].
    labels: `[N, H, W]` integer labels.
    step: training step >= 0.
    batch_size: examples per batch >= 1 (may exceed N).
    seed: non-negative integer seed.
    augment: whether to augment.

  Returns:
    `(images, labels)`: `[batch_size, H, W, C]` float32 and
    `[batch_size, H, W]` int32.

  Examples:
    >>> import numpy as np
    >>> images, labels = np.zeros((5, 8, 8, 3)), np.zeros((5, 8, 8), int)
    >>> x, y = sample_batch(images, labels, step=3, batch_size=4, seed=0)
    >>> x.shape, x.dtype, y.shape, y.dtype
    ((4, 8, 8, 3), dtype('float32'), (4, 8, 8), dtype('int32'))
    >>> bool((sample_batch(images, labels, step=3, batch_size=4, seed=0)[0] == x).all())
    True
  """
  images, labels = np.asarray(images), np.asarray(labels)
  if images.ndim != 4:
    raise ValueError(f"`images` must be [N, H, W, C], got shape {images.shape}.")
  if labels.ndim != 3:
    raise ValueError(f"`labels` must be [N, H, W], got shape {labels.shape}.")
  if labels.shape != images.shape[:3]:
    raise ValueError(
        f"`labels` must have shape images.shape[:3] = {images.shape[:3]}, got {labels.shape}.")
  if images.shape[0] == 0:
    raise ValueError("`images` must hold at least one example.")
  if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
    raise ValueError(f"`labels` must have an integer dtype, got {labels.dtype}.")
  step = checks.check_positive_int(step, "step", allow_zero=True)
  batch_size = checks.check_positive_int(batch_size, "batch_size")
  seed = checks.check_positive_int(seed, "seed", allow_zero=True)

  n = images.shape[0]
  positions = step * batch_size + np.arange(batch_size)
  epochs, offsets = np.divmod(positions, n)
  index = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    order = np.random.default_rng([_PERMUTATION, seed, epoch]).permutation(n)
    index[epochs == epoch] = order[offsets[epochs == epoch]]
  batch_images = images[index].astype(np.float32)
  batch_labels = labels[index].astype(np.int32)
  if not augment:
    return batch_images, batch_labels

  square = images.shape[1] == images.shape[2]
  for k, position in enumerate(positions):
    rng = np.random.default_rng([_AUGMENTATION, seed, position])
    flip_y, flip_x = rng.integers(0, 2, 2)
    turns = rng.integers(0, 4) if square else 0
    brightness = rng.uniform(-_BRIGHTNESS, _BRIGHTNESS)
    contrast = np.exp(rng.uniform(*np.log(_CONTRAST)))  # symmetric in log-scale
    x, y = batch_images[k], batch_labels[k]
    if flip_y:
      x, y = x[::-1], y[::-1]
    if flip_x:
      x, y = x[:, ::-1], y[:, ::-1]
    x, y = np.rot90(x, turns), np.rot90(y, turns)
    mean = x.mean()
    batch_images[k] = np.clip((x - mean) * contrast + mean + brightness, 0, 1)
    batch_labels[k] = y
  return batch_images, batch_labels
