"""Loader for the real TopoMortar dataset in its own folder layout.

TopoMortar (Valverde et al., BMVC 2025) holds 420 RGB brick-wall photographs
(512 x 512) with binary mortar labels, laid out as::

  <data_dir>/splits.yaml, splits_small.yaml   fold "1": image paths per split
  <data_dir>/dataset_types.txt                "ID,group": test group of each id
  <data_dir>/{train,val,test}/images/<id>.png
  <data_dir>/{train,val}/{accurate,noisy,pseudo}/<id>.png
  <data_dir>/test/accurate/<id>.png

Train (001-050) and val (051-070) are in-distribution; test holds the
in-distribution group (071-120) and six out-of-distribution groups (121-420:
angles, colors, graffiti, objects, shadows, occlusion). Copies of the dataset
may lack some test groups: `topomortar_index` reports which groups are on disk
and `load_topomortar` loads the ones found, logging the missing ones instead
of failing. Decoded (and resized) arrays are cached on disk as `.npz` files
keyed by the arguments and the source files' sizes and modification times.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import tempfile
import types
from collections.abc import Mapping
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import yaml
from PIL import Image

SPLITS = ("train", "val", "test")
LABEL_KINDS = ("accurate", "noisy", "pseudo")
TRAINING_SETS = ("large", "small")
TEST_GROUPS = ("indistr", "angles", "colors", "graffiti", "objects", "shadows", "occlusion")


def _id_range(first, last):
  return tuple(f"{i:03d}" for i in range(first, last + 1))


# The published layout (fold "1" of splits.yaml / splits_small.yaml and
# dataset_types.txt), for code that needs it without the files, e.g. the
# synthetic stand-in; the loader itself reads the files.
SPLIT_IDS = types.MappingProxyType(
    {"train": _id_range(1, 50), "val": _id_range(51, 70), "test": _id_range(71, 420)})
SMALL_TRAINING_IDS = ("001", "009", "011", "024", "036", "041", "043", "045", "048", "049")
TEST_GROUP_IDS = types.MappingProxyType(
    {group: _id_range(71 + 50 * k, 120 + 50 * k) for k, group in enumerate(TEST_GROUPS)})

_SPLIT_FILES = {"large": "splits.yaml", "small": "splits_small.yaml"}
_TYPES_FILE = "dataset_types.txt"
_FOLD = "1"
# Bump when the cached arrays change meaning (decoding, resizing, dtypes).
_CACHE_VERSION = 1

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TopoMortarIndex:
  """What a TopoMortar folder lists and what it holds on disk.

  Ids are three-digit strings ("001"), sorted. "Listed" ids come from the
  splits file; "available" ids also have their image on disk.

  Attributes:
    data_dir: the dataset folder.
    training_set: "large" (splits.yaml, 50 training images) or "small"
      (splits_small.yaml, 10 training images).
    listed: split -> ids listed by the splits file.
    available: split -> listed ids whose image exists.
    group_of: id -> group name (from dataset_types.txt), for every listed id.
    group_counts: test group -> `(available, listed)` image counts.
  """

  data_dir: pathlib.Path
  training_set: str
  listed: Mapping[str, tuple[str, ...]]
  available: Mapping[str, tuple[str, ...]]
  group_of: Mapping[str, str]
  group_counts: Mapping[str, tuple[int, int]]

  @property
  def present_groups(self) -> tuple[str, ...]:
    """Test groups with at least one image on disk."""
    return tuple(g for g, (found, _) in self.group_counts.items() if found > 0)

  @property
  def missing_groups(self) -> tuple[str, ...]:
    """Test groups listed by the splits file but with no image on disk."""
    return tuple(g for g, (found, _) in self.group_counts.items() if found == 0)

  @property
  def incomplete_groups(self) -> tuple[str, ...]:
    """Test groups with some, but not all, of their images on disk."""
    return tuple(g for g, (found, total) in self.group_counts.items() if 0 < found < total)

  def ids(self, split: str, groups: Sequence[str] | None = None) -> tuple[str, ...]:
    """Available ids of `split`, restricted to test `groups` when given."""
    _check_choice(split, SPLITS, "split")
    ids = self.available[split]
    if groups is None:
      return ids
    return tuple(i for i in ids if self.group_of[i] in groups)

  def summary(self) -> str:
    """A one-paragraph report of the splits and test groups found."""
    counts = ", ".join(f"{s} {len(self.available[s])}/{len(self.listed[s])}" for s in SPLITS)

    def fmt(groups):
      return ", ".join(f"{g} ({self.group_counts[g][0]}/{self.group_counts[g][1]})"
                       for g in groups) or "none"

    lines = [f"TopoMortar at {self.data_dir} (training set {self.training_set!r}): "
             f"{counts} images on disk.",
             f"Test groups present: {fmt(self.present_groups)}.",
             f"Test groups missing: {fmt(self.missing_groups)}."]
    if self.incomplete_groups:
      lines.append(f"Test groups incomplete: {fmt(self.incomplete_groups)}.")
    return " ".join(lines)


class TopoMortarSplit(NamedTuple):
  """Arrays of one loaded split.

  Attributes:
    images: `[N, H, W, 3]` float32 in [0, 1].
    labels: `[N, H, W]` int32 in {0, 1} (1 = mortar).
    ids: the N image ids ("071"), sorted.
    groups: the N group names ("indistr", "angles", ...).
  """

  images: np.ndarray
  labels: np.ndarray
  ids: tuple[str, ...]
  groups: tuple[str, ...]


def topomortar_index(data_dir: str | os.PathLike, *,
                     training_set: str = "large") -> TopoMortarIndex:
  """Reads the splits and test groups of a TopoMortar folder.

  Args:
    data_dir: the dataset folder (holding splits.yaml and dataset_types.txt).
    training_set: "large" (splits.yaml) or "small" (splits_small.yaml).

  Returns:
    A `TopoMortarIndex`; `index.summary()` says which test groups were found.

  Raises:
    ValueError: if `data_dir` is not a TopoMortar layout.

  Examples:
    >>> index = topomortar_index("/data/topomortar")  # doctest: +SKIP
    >>> index.present_groups, len(index.ids("train"))  # doctest: +SKIP
    (('indistr',), 50)
  """
  _check_choice(training_set, TRAINING_SETS, "training_set")
  data_dir = pathlib.Path(data_dir)
  if not data_dir.is_dir():
    raise ValueError(f"`data_dir` {str(data_dir)!r} is not a TopoMortar layout: "
                     "no such directory.")
  split_file, types_file = data_dir / _SPLIT_FILES[training_set], data_dir / _TYPES_FILE
  missing = [p.name for p in (split_file, types_file) if not p.is_file()]
  if missing:
    raise ValueError(f"`data_dir` {str(data_dir)!r} is not a TopoMortar layout: "
                     f"missing {', '.join(missing)}.")

  listed = _read_splits(split_file)
  group_of_all = _read_types(types_file)
  group_of = {}
  for split, ids in listed.items():
    for i in ids:
      if split == "test":
        if i not in group_of_all:
          raise ValueError(f"Test image {i} has no group in {types_file}.")
        group_of[i] = group_of_all[i]
      else:
        group_of[i] = group_of_all.get(i, "indistr")
  available = {split: tuple(i for i in ids if _path(data_dir, split, "images", i).is_file())
               for split, ids in listed.items()}

  test_groups = sorted({group_of[i] for i in listed["test"]},
                       key=lambda g: (TEST_GROUPS.index(g) if g in TEST_GROUPS
                                      else len(TEST_GROUPS), g))
  found = set(available["test"])
  group_counts = {g: (sum(group_of[i] == g for i in found),
                      sum(group_of[i] == g for i in listed["test"])) for g in test_groups}
  return TopoMortarIndex(data_dir=data_dir, training_set=training_set, listed=listed,
                         available=available, group_of=group_of, group_counts=group_counts)


def load_topomortar(data_dir: str | os.PathLike, *, split: str = "train",
                    label: str = "accurate", training_set: str = "large",
                    groups: Sequence[str] | None = None,
                    size: int | tuple[int, int] | None = None, cache: bool = True,
                    cache_dir: str | os.PathLike | None = None) -> TopoMortarSplit:
  """Loads one split of TopoMortar as arrays ready for `sample_batch`.

  Label PNGs (0/255) become {0, 1}. With `size`, images are resized by area
  averaging (bilinear when enlarging; Pillow, 8-bit, so within 1/255 of the
  exact mean) and labels by nearest neighbour, which keeps them binary but may
  break thin joints. Test images missing from disk
  (e.g. withheld out-of-distribution groups) are skipped with a logged
  warning when `groups` is None. Arrays are cached under `cache_dir` (default
  `$TOPOJAX_CACHE_DIR/topomortar`, else `~/.cache/topojax/topomortar`; the
  data folder itself is never written to); a cache entry is reused only if
  the arguments and every source file's size and mtime match.

  Args:
    data_dir: the dataset folder.
    split: "train", "val" or "test".
    label: "accurate", "noisy" or "pseudo"; the test split has only
      "accurate".
    training_set: "large" (50 training images) or "small" (10, from
      splits_small.yaml); val and test are the same for both.
    groups: test groups to load (e.g. `("indistr", "shadows")`); None loads
      every group found on disk. Test split only.
    size: output size, an int S for S x S or `(height, width)`; None keeps
      the original 512 x 512.
    cache: whether to read and write the on-disk cache.
    cache_dir: cache folder (created if needed), outside `data_dir`; if it
      cannot be written, loading goes on uncached with a logged warning.

  Returns:
    A `TopoMortarSplit` `(images, labels, ids, groups)`: `[N, H, W, 3]`
    float32 in [0, 1], `[N, H, W]` int32 in {0, 1}, and the N ids and group
    names, sorted by id.

  Raises:
    ValueError: for a folder that is not a TopoMortar layout, an unknown
      argument value, a non-accurate label on the test split, requested groups
      absent from disk, no image to load, or a `cache_dir` inside `data_dir`.
    FileNotFoundError: if a train/val image or a label file is missing.

  Examples:
    >>> data = load_topomortar("/data/topomortar", split="test", size=128)  # doctest: +SKIP
    >>> data.images.shape, data.labels.shape, sorted(set(data.groups))  # doctest: +SKIP
    ((50, 128, 128, 3), (50, 128, 128), ['indistr'])
  """
  _check_choice(split, SPLITS, "split")
  _check_choice(label, LABEL_KINDS, "label")
  if split == "test" and label != "accurate":
    raise ValueError(f"The test split only has 'accurate' labels, got label={label!r}.")
  shape = _check_size(size)
  index = topomortar_index(data_dir, training_set=training_set)
  data_dir = index.data_dir

  if split != "test":
    if groups is not None:
      raise ValueError(f"`groups` selects test groups; it must be None for split={split!r}.")
    absent = sorted(set(index.listed[split]) - set(index.available[split]))
    if absent:
      raise FileNotFoundError(
          f"{len(absent)} {split} image(s) missing under {data_dir / split / 'images'}: "
          f"{', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''}.")
    ids = index.available[split]
  else:
    if groups is None:
      if index.missing_groups or index.incomplete_groups:
        logger.warning("Loading only the TopoMortar test images on disk. %s", index.summary())
      ids = index.ids("test")
    else:
      groups = (groups,) if isinstance(groups, str) else tuple(groups)
      unknown = [g for g in groups if g not in index.group_counts]
      if unknown:
        raise ValueError(f"Unknown test group(s) {unknown}; the dataset lists "
                         f"{list(index.group_counts)}.")
      absent = [g for g in groups if g in index.missing_groups]
      if absent:
        raise ValueError(f"Requested test group(s) {absent} have no image on disk. "
                         + index.summary())
      if any(g in index.incomplete_groups for g in groups):
        logger.warning("Some requested TopoMortar test images are missing. %s",
                       index.summary())
      ids = index.ids("test", groups)
  if not ids:
    raise ValueError(f"No {split} image to load. " + index.summary())

  image_paths = [_path(data_dir, split, "images", i) for i in ids]
  label_paths = [_path(data_dir, split, label, i) for i in ids]
  absent = [str(p) for p in label_paths if not p.is_file()]
  if absent:
    raise FileNotFoundError(f"{len(absent)} {label!r} label file(s) missing, e.g. {absent[0]}.")
  group_names = tuple(index.group_of[i] for i in ids)

  cache_file = None
  if cache:
    key = {"version": _CACHE_VERSION, "data_dir": str(data_dir.resolve()), "split": split,
           "label": label, "ids": list(ids), "size": shape,
           "files": [_fingerprint(p) for p in image_paths + label_paths]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    size_tag = "full" if shape is None else f"{shape[0]}x{shape[1]}"
    root = _cache_root(cache_dir)
    if root.resolve().is_relative_to(data_dir.resolve()):
      raise ValueError(f"`cache_dir` {str(root)!r} lies inside `data_dir`; the loader "
                       "never writes into the dataset folder (it may be read-only).")
    cache_file = root / f"{split}_{label}_{size_tag}_{digest}.npz"
    cached = _read_cache(cache_file, ids)
    if cached is not None:
      images_u8, labels_u8 = cached
      return _as_split(images_u8, labels_u8, ids, group_names)

  images_u8 = np.stack([_read_image(p, shape) for p in image_paths])
  labels_u8 = np.stack([_read_label(p, shape) for p in label_paths])
  if images_u8.shape[:3] != labels_u8.shape:
    raise ValueError(f"Images {images_u8.shape[:3]} and labels {labels_u8.shape} differ in size.")
  if cache_file is not None:
    _write_cache(cache_file, images_u8, labels_u8, ids)
  return _as_split(images_u8, labels_u8, ids, group_names)


def _check_choice(value, choices, name):
  if value not in choices:
    raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")


def _check_size(size):
  if size is None:
    return None
  if isinstance(size, (int, np.integer)):
    shape = (size, size)
  elif isinstance(size, (tuple, list)):
    shape = tuple(size)
  else:
    shape = ()  # e.g. a float: rejected below
  if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
    raise ValueError(f"`size` must be None, an int >= 1 or (height, width), got {size!r}.")
  return (int(shape[0]), int(shape[1]))


def _path(data_dir, split, kind, image_id):
  return data_dir / split / kind / f"{image_id}.png"


def _read_splits(path):
  """split -> sorted ids from a TopoMortar splits yaml (fold "1")."""
  with open(path) as f:
    content = yaml.safe_load(f)
  if not isinstance(content, dict):
    raise ValueError(f"{path} is not a TopoMortar splits file (expected a mapping of folds).")
  fold = content.get(_FOLD, content.get(int(_FOLD)))
  if not isinstance(fold, dict) or not all(isinstance(fold.get(s), list) for s in SPLITS):
    raise ValueError(f"{path} is not a TopoMortar splits file: fold {_FOLD!r} must list "
                     f"{', '.join(SPLITS)}.")
  return {split: tuple(sorted(pathlib.PurePosixPath(str(p)).stem for p in fold[split]))
          for split in SPLITS}


def _read_types(path):
  """id -> group from dataset_types.txt ("ID,group" lines)."""
  group_of = {}
  with open(path) as f:
    for line in f:
      parts = [p.strip() for p in line.split(",")]
      if len(parts) != 2 or parts[0].lower() == "id" or not parts[0]:
        continue
      group_of[parts[0]] = parts[1]
  return group_of


def _resize(image, shape, resample):
  height, width = shape
  if image.size == (width, height):
    return image
  return image.resize((width, height), resample)


def _read_image(path, shape):
  with Image.open(path) as image:
    image = image.convert("RGB")
    if shape is not None:
      enlarging = shape[0] * shape[1] > image.size[0] * image.size[1]
      image = _resize(image, shape, Image.Resampling.BILINEAR if enlarging
                      else Image.Resampling.BOX)
    return np.asarray(image, np.uint8)


def _read_label(path, shape):
  with Image.open(path) as image:
    values = np.asarray(image.convert("L"))
  present = np.unique(values)
  if not np.isin(present, (0, 1, 255)).all() or (1 in present and 255 in present):
    raise ValueError(f"Label {path} is not binary (0/255 or 0/1): values {present[:8]}.")
  binary = (values > 0).astype(np.uint8)
  if shape is not None:
    binary = np.asarray(_resize(Image.fromarray(binary), shape, Image.Resampling.NEAREST))
  return binary


def _as_split(images_u8, labels_u8, ids, group_names):
  images = images_u8.astype(np.float32) / np.float32(255)
  return TopoMortarSplit(images, labels_u8.astype(np.int32), tuple(ids), tuple(group_names))


def _fingerprint(path):
  stat = path.stat()
  return [path.name, stat.st_size, stat.st_mtime_ns]


def _cache_root(cache_dir):
  if cache_dir is not None:
    return pathlib.Path(cache_dir)
  env = os.environ.get("TOPOJAX_CACHE_DIR")
  if env:
    return pathlib.Path(env) / "topomortar"
  return pathlib.Path.home() / ".cache" / "topojax" / "topomortar"


def _read_cache(path, ids):
  if not path.is_file():
    return None
  try:
    with np.load(path) as f:
      if tuple(str(i) for i in f["ids"]) != tuple(ids):
        return None
      return f["images"], f["labels"]
  except (OSError, ValueError, KeyError) as error:  # corrupt or foreign file: rebuild
    logger.warning("Ignoring unreadable TopoMortar cache %s: %s", path, error)
    return None


def _write_cache(path, images_u8, labels_u8, ids):
  """Writes atomically (temporary file + rename); a failure only logs."""
  temporary = None
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as f:
      temporary = f.name
      np.savez(f, images=images_u8, labels=labels_u8, ids=np.asarray(ids))
    os.chmod(temporary, 0o644)  # NamedTemporaryFile creates it private (0600)
    os.replace(temporary, path)
  except OSError as error:
    logger.warning("Could not write TopoMortar cache %s: %s", path, error)
    if temporary is not None:
      pathlib.Path(temporary).unlink(missing_ok=True)
