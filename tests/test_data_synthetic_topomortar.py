"""Tests for the synthetic TopoMortar (same layout as the real dataset)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from topojax.data import BrickWallConfig
from topojax.data import TopoMortarSplit
from topojax.data import brick_walls
from topojax.data import synthetic_topomortar
from topojax.data import topomortar_index
from topojax.data import _bricks
from topojax.data import _synthetic_topomortar
from topojax.data import _topomortar

GROUPS = ("indistr", "angles", "colors", "graffiti", "objects", "shadows", "occlusion")
SMALL = ("001", "009", "011", "024", "036", "041", "043", "045", "048", "049")
SIZE = 48  # small, but every group's scene still reads at this size
_REAL_DIR = Path(os.environ.get(
    "TOPOMORTAR_DIR", Path(__file__).parents[1] / ".." / "shared" / "data" / "topomortar"))


def _ids(first, last):
  return tuple(f"{i:03d}" for i in range(first, last + 1))


@pytest.fixture(scope="module")
def test_split():
  """The whole synthetic test split, generated once."""
  return synthetic_topomortar("test", size=SIZE, cache=False)


@pytest.fixture(scope="module")
def train_labels():
  """The large training set with each label type (the images are shared)."""
  return {label: synthetic_topomortar("train", label=label, size=SIZE, cache=False)
          for label in ("accurate", "noisy", "pseudo")}


def _of(split, group):
  return np.asarray(split.groups) == group


def test_ids_splits_and_groups_follow_topomortar(test_split, train_labels):
  assert train_labels["accurate"].ids == _ids(1, 50)
  assert set(train_labels["accurate"].groups) == {"indistr"}
  val = synthetic_topomortar("val", size=16, cache=False)
  assert val.ids == _ids(51, 70) and set(val.groups) == {"indistr"}
  small = synthetic_topomortar("train", training_set="small", size=16, cache=False)
  assert small.ids == SMALL
  assert test_split.ids == _ids(71, 420)
  for k, group in enumerate(GROUPS):
    assert np.asarray(test_split.ids)[_of(test_split, group)].tolist() == list(
        _ids(71 + 50 * k, 120 + 50 * k))
  # The tables are the real loader's.
  assert tuple(_topomortar.TEST_GROUP_IDS) == _topomortar.TEST_GROUPS == GROUPS
  assert _topomortar.SMALL_TRAINING_IDS == SMALL


@pytest.mark.skipif(not (_REAL_DIR / "splits.yaml").is_file(),
                    reason=f"real TopoMortar data not found at {_REAL_DIR}")
def test_tables_equal_the_real_dataset_files():
  large, small = topomortar_index(_REAL_DIR), topomortar_index(_REAL_DIR, training_set="small")
  assert dict(large.listed) == dict(_topomortar.SPLIT_IDS)
  assert small.listed["train"] == _topomortar.SMALL_TRAINING_IDS
  for group, ids in _topomortar.TEST_GROUP_IDS.items():
    assert {large.group_of[i] for i in ids} == {group}


def test_shapes_dtypes_and_binary_labels(test_split, train_labels):
  for data in (test_split, *train_labels.values()):
    assert isinstance(data, TopoMortarSplit)
    n = len(data.ids)
    assert data.images.shape == (n, SIZE, SIZE, 3) and data.images.dtype == np.float32
    assert data.labels.shape == (n, SIZE, SIZE) and data.labels.dtype == np.int32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert set(np.unique(data.labels)) == {0, 1}
  rectangular = synthetic_topomortar("val", size=(40, 56), cache=False)
  assert rectangular.images.shape == (20, 40, 56, 3)


def test_deterministic_and_cached(tmp_path, monkeypatch):
  fresh = synthetic_topomortar("val", label="pseudo", size=32, seed=3, cache=False)
  again = synthetic_topomortar("val", label="pseudo", size=32, seed=3, cache=False)
  written = synthetic_topomortar("val", label="pseudo", size=32, seed=3, cache_dir=tmp_path)
  files = list((tmp_path / "synthetic").glob("*.npz"))
  assert len(files) == 1
  # The second call must come from the cache: generating would fail.
  monkeypatch.setattr(_synthetic_topomortar, "_synthetic_wall", None)
  read = synthetic_topomortar("val", label="pseudo", size=32, seed=3, cache_dir=tmp_path)
  for other in (again, written, read):
    np.testing.assert_array_equal(fresh.images, other.images)
    np.testing.assert_array_equal(fresh.labels, other.labels)
    assert fresh.ids == other.ids and fresh.groups == other.groups
  monkeypatch.undo()
  # Other seeds and labels are other cache entries.
  other = synthetic_topomortar("val", label="pseudo", size=32, seed=4, cache_dir=tmp_path)
  assert not np.array_equal(other.images, fresh.images)
  synthetic_topomortar("val", label="noisy", size=32, seed=3, cache_dir=tmp_path)
  assert len(list((tmp_path / "synthetic").glob("*.npz"))) == 3


def test_default_cache_root_is_the_real_loaders(tmp_path, monkeypatch):
  monkeypatch.setenv("TOPOJAX_CACHE_DIR", str(tmp_path))
  synthetic_topomortar("train", training_set="small", size=16)
  assert len(list((tmp_path / "topomortar" / "synthetic").glob("train_accurate_16x16_*.npz"))) == 1


def test_small_subset_of_large_and_groups_alone(test_split, train_labels):
  for label, large in train_labels.items():
    small = synthetic_topomortar("train", label=label, training_set="small", size=SIZE,
                                 cache=False)
    rows = [large.ids.index(i) for i in small.ids]
    np.testing.assert_array_equal(small.images, large.images[rows])
    np.testing.assert_array_equal(small.labels, large.labels[rows])
  alone = synthetic_topomortar("test", groups="shadows", size=SIZE, cache=False)
  rows = _of(test_split, "shadows")
  np.testing.assert_array_equal(alone.images, test_split.images[rows])
  np.testing.assert_array_equal(alone.labels, test_split.labels[rows])
  assert alone.groups == ("shadows",) * 50


def test_label_types(train_labels):
  accurate, noisy, pseudo = (train_labels[k] for k in ("accurate", "noisy", "pseudo"))
  # Label types share the images.
  np.testing.assert_array_equal(accurate.images, noisy.images)
  np.testing.assert_array_equal(accurate.images, pseudo.images)
  for i in (0, 17):
    wall = _synthetic_topomortar._synthetic_wall(0, accurate.ids[i], (SIZE, SIZE))
    np.testing.assert_array_equal(accurate.labels[i], wall.layout.mortar)
  # Noisy: thin strokes along the joints (TopoMortar: 13 % vs 30 % foreground).
  assert noisy.labels.mean() < 0.75 * accurate.labels.mean()
  on_mortar = (noisy.labels & accurate.labels).sum() / noisy.labels.sum()
  assert on_mortar > 0.7
  # Pseudo: close to, but not, the accurate label, a little thicker.
  wrong = (pseudo.labels != accurate.labels).mean((1, 2))
  assert wrong.mean() > 0.02 and (wrong > 0).mean() > 0.8
  intersection = (pseudo.labels & accurate.labels).sum((1, 2))
  union = (pseudo.labels | accurate.labels).sum((1, 2))
  assert (intersection / union).mean() > 0.6
  assert 1.0 < pseudo.labels.mean() / accurate.labels.mean() < 1.5


def test_accurate_test_labels_are_the_layout_mortar(test_split):
  shape = (SIZE, SIZE)
  for group in GROUPS:
    for image_id in np.asarray(test_split.ids)[_of(test_split, group)][:3]:
      wall = _synthetic_topomortar._synthetic_wall(0, image_id, shape)
      label = test_split.labels[test_split.ids.index(image_id)]
      if group == "objects":  # modal: mortar hidden by an object is not labelled
        np.testing.assert_array_equal(label, wall.layout.mortar & (wall.cover < 0.5))
      else:
        np.testing.assert_array_equal(label, wall.layout.mortar)


def _orientation(label):
  """Dominant joint orientation in degrees, modulo 90 (bricks are rectangles)."""
  gy, gx = np.gradient(label.astype(np.float64))
  weights = gx**2 + gy**2
  return np.degrees(np.angle(np.sum(weights * np.exp(4j * np.arctan2(gy, gx))))) / 4


def _walls(group, count=10):
  ids = _topomortar.TEST_GROUP_IDS[group][:count]
  return [(_synthetic_topomortar._synthetic_wall(0, i, (SIZE, SIZE)),
           _synthetic_topomortar._synthetic_wall(0, i, (SIZE, SIZE), with_scene=False))
          for i in ids]


def test_angles_are_steeper(test_split):
  def orientations(group):
    return np.abs([_orientation(label) for label in test_split.labels[_of(test_split, group)]])
  assert orientations("indistr").max() < 5
  assert orientations("angles").mean() > 12
  # Oblique views and close-ups: fewer, larger bricks.
  assert test_split.labels[_of(test_split, "angles")].mean() > 0.15


def test_colors_leave_the_training_palette(test_split):
  def red_bricks_light_mortar(images, labels):
    result = []
    for image, label in zip(images, labels):
      brick, mortar = image[label == 0].mean(0), image[label == 1].mean(0)
      result.append(brick[0] - brick[2] > 0.1 and mortar.mean() > brick.mean())
    return np.array(result)
  for group, (low, high) in {"indistr": (0.9, 1.0), "colors": (0.0, 0.4)}.items():
    rows = _of(test_split, group)
    typical = red_bricks_light_mortar(test_split.images[rows], test_split.labels[rows])
    assert low <= typical.mean() <= high, group


def test_graffiti_and_shadows_change_only_the_image():
  for wall, plain in _walls("graffiti"):
    np.testing.assert_array_equal(wall.label, plain.label)
    painted = np.abs(wall.image - plain.image).max(-1) > 0.15
    assert painted.mean() > 0.02
    assert wall.label[painted].any() and (~wall.label[painted]).any()  # over both
  shadowed = []
  for wall, plain in _walls("shadows"):
    np.testing.assert_array_equal(wall.label, plain.label)
    ratio = wall.image.mean(-1) / np.maximum(plain.image.mean(-1), 0.05)
    assert (ratio < 1.05).mean() > 0.97  # shadows only darken
    shadowed.append((ratio < 0.6).mean())
  assert np.mean(shadowed) > 0.15 and min(shadowed) > 0.02


def test_occlusion_labels_are_amodal_and_objects_modal():
  for wall, plain in _walls("occlusion"):
    hidden = wall.cover > 0.5
    assert 0.05 < hidden.mean() < 0.8
    assert wall.label[hidden].mean() > 0.15  # mortar behind the occluder stays labelled
    np.testing.assert_array_equal(wall.label, plain.label)
    assert np.abs(wall.image - plain.image)[hidden].mean() > 0.05
  hidden_mortar = 0
  for wall, plain in _walls("objects"):
    hidden = wall.cover > 0.5
    assert hidden.any() and not wall.label[hidden].any()
    hidden_mortar += plain.label[hidden].sum()
  assert hidden_mortar > 0


def test_brick_hooks_steeper_oblique_walls_and_scene():
  config = BrickWallConfig(height=SIZE, width=SIZE)
  _, labels = brick_walls(12, seed=2, config=dataclasses.replace(config, min_angle=20.0,
                                                                  max_angle=30.0))
  assert min(abs(_orientation(label)) for label in labels) > 12
  oblique = dataclasses.replace(config, perspective=0.5)
  _, labels = brick_walls(12, seed=2, config=oblique)
  for label in labels:  # still one 8-connected joint network
    assert ndimage.label(label, structure=np.ones((3, 3)))[1] == 1
  # A scene that adds nothing leaves the wall as it was; a wrong shape is refused.
  layout = _bricks.sample_layout(np.random.default_rng(0), config)
  plain = _bricks.render_wall(np.random.default_rng(1), layout, config)
  same = _bricks.render_wall(np.random.default_rng(1), layout, config, scene=lambda x: x)
  np.testing.assert_array_equal(plain, same)
  with pytest.raises(ValueError, match="scene"):
    _bricks.render_wall(np.random.default_rng(1), layout, config, scene=lambda x: x[1:])


@pytest.mark.parametrize("field, value", [
    ("min_angle", -1.0), ("min_angle", 4.0), ("perspective", 1.0), ("perspective", -0.1)])
def test_brick_hook_validation(field, value):
  with pytest.raises(ValueError, match=field):
    BrickWallConfig(**{field: value})


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="test", label="noisy"), "only has 'accurate'"),
    (dict(split="testing"), "split"),
    (dict(label="soft"), "label"),
    (dict(training_set="tiny"), "training_set"),
    (dict(split="test", groups=("indistr", "sunset")), "sunset"),
    (dict(split="test", groups=()), "groups"),
    (dict(split="train", groups=("indistr",)), "groups"),
    (dict(size=0), "size"),
    (dict(size=(32,)), "size"),
    (dict(size=8), "size"),
    (dict(size=2.5), "size"),
    (dict(seed=-1), "seed"),
])
def test_argument_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    synthetic_topomortar(cache=False, **kwargs)
