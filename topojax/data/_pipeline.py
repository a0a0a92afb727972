"""Stateless batching: each batch is a pure function of (step, seed).

A run that resumes from a checkpoint at step s therefore sees exactly the
batches it would have seen, with no iterator state to save. `batch_dataset`
exposes the batches as a random-access Grain `MapDataset` (element `step` is
this host's slice of the global batch of step `step`), `batches` reads a range
of steps with Grain's thread prefetch, and `sample_batch` is the older
single-host numpy entry point over the same example order.
"""

from __future__ import annotations

from collections.abc import Iterator

import grain
import numpy as np

from topojax._src import checks

# Augmentation strengths of `sample_batch`: brightness is an additive shift,
# contrast scales about each image's mean.
_BRIGHTNESS = 0.1
_CONTRAST = (0.8, 1.25)
# Domain tags keep the permutation and augmentation streams apart.
_PERMUTATION, _AUGMENTATION = 0, 1
# Length of a `batch_dataset`: effectively endless, while positions
# step * batch_size stay far from int64 overflow.
_MAX_STEPS = 2**40


def _check_arrays(images, labels, *, allow_soft: bool) -> tuple[np.ndarray, np.ndarray]:
  """Validates a dataset of images and labels; returns them as numpy arrays."""
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
  hard = np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool
  if not (hard or (allow_soft and np.issubdtype(labels.dtype, np.floating))):
    kinds = "an integer or floating (soft label)" if allow_soft else "an integer"
    raise ValueError(f"`labels` must have {kinds} dtype, got {labels.dtype}.")
  return images, labels


def _example_index(positions: np.ndarray, num_examples: int, seed: int) -> np.ndarray:
  """Dataset index of each global example position.

  Position p lies in epoch `p // num_examples`; each epoch walks its own
  permutation keyed by (seed, epoch), so the order never depends on which
  positions were read before.
  """
  epochs, offsets = np.divmod(positions, num_examples)
  index = np.empty(positions.shape, np.int64)
  for epoch in np.unique(epochs):
    order = np.random.default_rng([_PERMUTATION, seed, epoch]).permutation(num_examples)
    index[epochs == epoch] = order[offsets[epochs == epoch]]
  return index


class _LoadBatch:
  """Grain map: step -> this shard's rows of the global batch of that step.

  A plain class (not a closure) so that the dataset pickles, as Grain's
  multiprocess prefetch requires.
  """

  def __init__(self, images, labels, *, batch_size, seed, shard_index, shard_count):
    self.images, self.labels = images, labels
    self.batch_size, self.seed = batch_size, seed
    self.local_batch_size = batch_size // shard_count
    self.first_row = shard_index * self.local_batch_size
    self.labels_dtype = np.float32 if np.issubdtype(labels.dtype, np.floating) else np.int32

  def __call__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    positions = (step * self.batch_size + self.first_row) + np.arange(self.local_batch_size)
    index = _example_index(positions, self.images.shape[0], self.seed)
    return (self.images[index].astype(np.float32),
            self.labels[index].astype(self.labels_dtype))


def batch_dataset(images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
                  shard_index: int = 0, shard_count: int = 1) -> grain.MapDataset:
  """Training batches as a random-access Grain dataset indexed by step.

  Element `step` is this host's share of the global batch of that step. The
  global batch holds example positions `step * batch_size + k`
  (k < batch_size), which walk a fresh permutation of the N examples per epoch
  (`position // N`) keyed by `(seed, epoch)` - the order of `sample_batch`; a
  batch may straddle two epochs. Host `shard_index` of `shard_count` gets the
  contiguous rows `[i * b, (i + 1) * b)` with `b = batch_size // shard_count`,
  and only gathers those. Because an element depends on nothing but its step,
  a resumed run reads `dataset[step]` onwards and needs no iterator state.
  Pair it with `topojax.train.sharding.process_batch_shard` (which rows this
  process holds) and `put_local_batch` (rows to global arrays).

  Args:
    images: `[N, H, W, C]` images in [0, 1].
    labels: `[N, H, W]` labels: integer class indices (hard labels) or floating
      probabilities in [0, 1] (soft labels, e.g. for self-distillation).
    batch_size: global examples per step >= 1 (may exceed N), divisible by
      `shard_count`.
    seed: non-negative integer seed.
    shard_index: this host's shard, `0 <= shard_index < shard_count`.
    shard_count: number of hosts sharing each global batch.

  Returns:
    A `grain.MapDataset` of `(images, labels)` tuples: `[b, H, W, C]` float32
    and `[b, H, W]` int32 (hard) or float32 (soft), indexable by any step
    below 2**40.

  Examples:
    >>> import numpy as np
    >>> images, labels = np.zeros((5, 8, 8, 3)), np.zeros((5, 8, 8), int)
    >>> dataset = batch_dataset(images, labels, batch_size=4, seed=0, shard_index=1,
    ...                         shard_count=2)
    >>> x, y = dataset[3]
    >>> x.shape, x.dtype, y.shape, y.dtype
    ((2, 8, 8, 3), dtype('float32'), (2, 8, 8), dtype('int32'))
  """
  images, labels = _check_arrays(images, labels, allow_soft=True)
  batch_size = checks.check_positive_int(batch_size, "batch_size")
  seed = checks.check_positive_int(seed, "seed", allow_zero=True)
  shard_count = checks.check_positive_int(shard_count, "shard_count")
  shard_index = checks.check_positive_int(shard_index, "shard_index", allow_zero=True)
  if shard_index >= shard_count:
    raise ValueError(
        f"`shard_index` must be < shard_count = {shard_count}, got {shard_index}.")
  if batch_size % shard_count:
    raise ValueError(
        f"`batch_size` ({batch_size}) must be divisible by `shard_count` ({shard_count}): "
        f"every host loads an equal share of the global batch.")
  load = _LoadBatch(images, labels, batch_size=batch_size, seed=seed,
                    shard_index=shard_index, shard_count=shard_count)
  return grain.MapDataset.range(_MAX_STEPS).map(load)


def batches(dataset: grain.MapDataset, start_step: int, num_steps: int, *, prefetch: int = 2,
            num_threads: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Iterates `dataset[start_step : start_step + num_steps]` with Grain prefetch.

  Grain's thread pool reads up to `prefetch` steps ahead while the current one
  trains. Elements arrive in step order and equal `dataset[step]`, so resuming
  is `batches(dataset, restored_step, ...)`.

  Args:
    dataset: a `MapDataset` indexed by step, such as `batch_dataset`'s.
    start_step: first step to read, >= 0.
    num_steps: number of steps to read, >= 0.
    prefetch: elements buffered ahead; 0 reads synchronously.
    num_threads: reader threads (>= 1); the host CPU is often shared with the
      compiled train step, so a small number suffices.

  Returns:
    A Grain iterator over the elements; `close()` it to stop the reader
    threads early.

  Examples:
    >>> import numpy as np
    >>> images, labels = np.zeros((5, 8, 8, 3)), np.zeros((5, 8, 8), int)
    >>> dataset = batch_dataset(images, labels, batch_size=4, seed=0)
    >>> [x.shape for x, y in batches(dataset, start_step=10, num_steps=2)]
    [(4, 8, 8, 3), (4, 8, 8, 3)]
  """
  if not isinstance(dataset, grain.MapDataset):
    raise ValueError(f"`dataset` must be a grain.MapDataset, got {type(dataset).__name__}.")
  start_step = checks.check_positive_int(start_step, "start_step", allow_zero=True)
  num_steps = checks.check_positive_int(num_steps, "num_steps", allow_zero=True)
  prefetch = checks.check_positive_int(prefetch, "prefetch", allow_zero=True)
  num_threads = checks.check_positive_int(num_threads, "num_threads")
  if start_step + num_steps > len(dataset):
    raise ValueError(
        f"Steps [{start_step}, {start_step + num_steps}) run past the dataset's "
        f"{len(dataset)} elements; lower `start_step` or `num_steps`.")
  window = dataset[start_step:start_step + num_steps]
  options = grain.ReadOptions(num_threads=num_threads if prefetch else 0,
                              prefetch_buffer_size=prefetch)
  return iter(window.to_iter_dataset(options))


def sample_batch(images: np.ndarray, labels: np.ndarray, *, step: int, batch_size: int,
                 seed: int, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The training batch of step `step`, without replacement within each epoch.

  Example positions `step * batch_size + k` (k < batch_size) walk through a
  fresh permutation of the N examples per epoch (`position // N`), keyed by
  `(seed, epoch)`; a batch may straddle two epochs. Without augmentation this
  equals `batch_dataset(images, labels, batch_size=batch_size, seed=seed)[step]`.
  With `augment`, example k gets random flips, a random 90-degree rotation
  (square images only), a brightness shift in [-0.1, 0.1] and a contrast
  factor in [0.8, 1.25] keyed by `(seed, position)`, images clipped to [0, 1]
  and labels flipped or rotated alike.

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
  images, labels = _check_arrays(images, labels, allow_soft=False)
  step = checks.check_positive_int(step, "step", allow_zero=True)
  batch_size = checks.check_positive_int(batch_size, "batch_size")
  seed = checks.check_positive_int(seed, "seed", allow_zero=True)

  positions = step * batch_size + np.arange(batch_size)
  batch_images, batch_labels = _LoadBatch(
      images, labels, batch_size=batch_size, seed=seed, shard_index=0, shard_count=1)(step)
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
