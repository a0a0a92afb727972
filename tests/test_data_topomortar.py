"""Tests for the real-layout TopoMortar loader.

The real-data tests use the partial copy in ../shared/data/topomortar (or
$TOPOMORTAR_DIR) and skip when it is absent; the synthetic-layout tests build
a tiny fake TopoMortar tree, out-of-distribution groups included.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from topojax.data import TopoMortarIndex
from topojax.data import load_topomortar
from topojax.data import sample_batch
from topojax.data import topomortar_index
from topojax.data import _topomortar

OOD_GROUPS = ("angles", "colors", "graffiti", "objects", "shadows", "occlusion")
_REAL_DIR = Path(os.environ.get(
    "TOPOMORTAR_DIR", Path(__file__).parents[1] / ".." / "shared" / "data" / "topomortar"))
needs_real = pytest.mark.skipif(
    not (_REAL_DIR / "splits.yaml").is_file(),
    reason=f"real TopoMortar data not found at {_REAL_DIR} (set TOPOMORTAR_DIR)")


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
  """One cache folder shared by the real-data tests, so each split decodes once."""
  return tmp_path_factory.mktemp("topomortar_cache")


# ---------------------------------------------------------------- real data


@needs_real
def test_real_index_counts_and_group_report():
  index = topomortar_index(_REAL_DIR)
  assert isinstance(index, TopoMortarIndex)
  assert [len(index.ids(s)) for s in ("train", "val", "test")] == [50, 20, 50]
  assert index.ids("train")[0] == "001" and index.ids("val")[0] == "051"
  assert index.ids("test") == tuple(f"{i:03d}" for i in range(71, 121))
  assert len(index.listed["test"]) == 350
  assert index.present_groups == ("indistr",)
  assert index.missing_groups == OOD_GROUPS
  assert index.group_counts["indistr"] == (50, 50)
  assert all(index.group_counts[g] == (0, 50) for g in OOD_GROUPS)
  summary = index.summary()
  assert "present: indistr (50/50)" in summary
  assert all(f"{g} (0/50)" in summary for g in OOD_GROUPS)


@needs_real
def test_real_small_training_set():
  small = topomortar_index(_REAL_DIR, training_set="small")
  listed = yaml.safe_load((_REAL_DIR / "splits_small.yaml").read_text())[1]["train"]
  assert len(small.ids("train")) == len(listed) == 10
  assert set(small.ids("train")) == {Path(p).stem for p in listed}
  assert small.ids("val") == topomortar_index(_REAL_DIR).ids("val")


@needs_real
def test_real_train_small_downscaled(real_cache):
  data = load_topomortar(_REAL_DIR, training_set="small", size=64, cache_dir=real_cache)
  assert data.images.shape == (10, 64, 64, 3) and data.images.dtype == np.float32
  assert data.labels.shape == (10, 64, 64) and data.labels.dtype == np.int32
  assert 0 <= data.images.min() and data.images.max() <= 1
  assert set(np.unique(data.labels)) == {0, 1}
  assert data.groups == ("indistr",) * 10
  # The output feeds the training pipeline as is.
  x, y = sample_batch(data.images, data.labels, step=0, batch_size=4, seed=0)
  assert x.shape == (4, 64, 64, 3) and y.shape == (4, 64, 64)


@needs_real
@pytest.mark.parametrize("label", ["accurate", "noisy", "pseudo"])
def test_real_val_full_resolution_labels(label, real_cache):
  data = load_topomortar(_REAL_DIR, split="val", label=label, cache_dir=real_cache)
  assert data.images.shape == (20, 512, 512, 3)
  assert data.labels.shape == (20, 512, 512)
  assert set(np.unique(data.labels)) == {0, 1}
  raw = np.asarray(Image.open(_REAL_DIR / "val" / label / "051.png"))
  np.testing.assert_array_equal(data.labels[0], (raw == 255).astype(np.int32))
  assert data.ids[0] == "051"


@needs_real
def test_real_test_split_reports_missing_groups(real_cache, caplog):
  with caplog.at_level(logging.WARNING, logger="topojax.data._topomortar"):
    data = load_topomortar(_REAL_DIR, split="test", size=(32, 48), cache_dir=real_cache)
  assert data.images.shape == (50, 32, 48, 3) and data.labels.shape == (50, 32, 48)
  assert set(data.groups) == {"indistr"}
  assert "missing: angles (0/50)" in caplog.text
  same = load_topomortar(_REAL_DIR, split="test", groups=["indistr"], size=(32, 48),
                         cache_dir=real_cache)
  np.testing.assert_array_equal(same.labels, data.labels)
  with pytest.raises(ValueError, match="no image on disk"):
    load_topomortar(_REAL_DIR, split="test", groups=["shadows"], cache_dir=real_cache)


@needs_real
def test_real_cache_reuse(real_cache, monkeypatch):
  first = load_topomortar(_REAL_DIR, split="val", size=16, cache_dir=real_cache)
  assert len(list(real_cache.glob("val_accurate_16x16_*.npz"))) == 1

  def fail(*args):
    raise AssertionError("decoded a PNG although the cache holds the arrays")

  monkeypatch.setattr(_topomortar, "_read_image", fail)
  monkeypatch.setattr(_topomortar, "_read_label", fail)
  second = load_topomortar(_REAL_DIR, split="val", size=16, cache_dir=real_cache)
  np.testing.assert_array_equal(first.images, second.images)
  np.testing.assert_array_equal(first.labels, second.labels)
  assert first.ids == second.ids


@needs_real
def test_real_errors(tmp_path):
  with pytest.raises(ValueError, match="only has 'accurate' labels"):
    load_topomortar(_REAL_DIR, split="test", label="noisy", cache=False)
  with pytest.raises(ValueError, match="must be None for split='train'"):
    load_topomortar(_REAL_DIR, groups=["indistr"], cache=False)
  with pytest.raises(ValueError, match="`label` must be one of"):
    load_topomortar(_REAL_DIR, label="clean", cache=False)


# ---------------------------------------------------------------- synthetic layout

_GROUP_IDS = {"indistr": ("007", "008"), "angles": ("009",), "colors": ("010",),
              "graffiti": ("011",), "objects": ("012",), "shadows": ("013",),
              "occlusion": ("014",)}
_TRAIN, _VAL = ("001", "002", "003", "004"), ("005", "006")


def _write_png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def _fake_layout(root, *, ood=True):
  """A tiny TopoMortar tree: 8x8 PNGs, both splits files, dataset_types.txt."""
  rng = np.random.default_rng(0)
  test_ids = [i for ids in _GROUP_IDS.values() for i in ids]
  for split, ids, kinds in [("train", _TRAIN, ("accurate", "noisy", "pseudo")),
                            ("val", _VAL, ("accurate", "noisy", "pseudo")),
                            ("test", test_ids, ("accurate",))]:
    for i in ids:
      if split == "test" and not ood and i not in _GROUP_IDS["indistr"]:
        continue
      _write_png(root / split / "images" / f"{i}.png",
                 rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
      for kind in kinds:
        _write_png(root / split / kind / f"{i}.png",
                   (255 * (rng.random((8, 8)) < 0.3)).astype(np.uint8))

  def listing(split, ids):
    return [f"dataset/{split}/images/{i}.png" for i in ids]

  for name, train in [("splits.yaml", _TRAIN), ("splits_small.yaml", _TRAIN[:2])]:
    content = {1: {"test": listing("test", test_ids), "train": listing("train", train),
                   "val": listing("val", _VAL)}}
    (root / name).write_text(yaml.safe_dump(content))
  rows = ["ID,group"] + [f"{i},indistr" for i in _TRAIN + _VAL]
  rows += [f"{i},{g}" for g, ids in _GROUP_IDS.items() for i in ids]
  (root / "dataset_types.txt").write_text("\n".join(rows) + "\n")
  return root


def test_synthetic_full_layout_has_every_group(tmp_path, caplog):
  root = _fake_layout(tmp_path / "tm")
  index = topomortar_index(root)
  assert index.present_groups == ("indistr",) + OOD_GROUPS
  assert index.missing_groups == () and index.incomplete_groups == ()
  assert "missing: none" in index.summary()
  with caplog.at_level(logging.WARNING, logger="topojax.data._topomortar"):
    data = load_topomortar(root, split="test", cache_dir=tmp_path / "cache")
  assert caplog.text == ""
  assert data.images.shape == (8, 8, 8, 3) and data.labels.shape == (8, 8, 8)
  assert data.ids == tuple(sorted(i for ids in _GROUP_IDS.values() for i in ids))
  assert data.groups == ("indistr", "indistr") + OOD_GROUPS
  shadows = load_topomortar(root, split="test", groups=("shadows", "angles"), cache=False)
  assert shadows.ids == ("009", "013") and shadows.groups == ("angles", "shadows")
  raw = np.asarray(Image.open(root / "test" / "images" / "013.png"))
  np.testing.assert_allclose(shadows.images[1], raw / 255, atol=1e-6)


def test_synthetic_splits_labels_and_resize(tmp_path):
  root = _fake_layout(tmp_path / "tm")
  assert len(load_topomortar(root, cache=False).ids) == 4
  small = load_topomortar(root, training_set="small", label="pseudo", size=4, cache=False)
  assert small.ids == ("001", "002") and small.images.shape == (2, 4, 4, 3)
  assert small.labels.dtype == np.int32 and set(np.unique(small.labels)) <= {0, 1}
  raw = np.asarray(Image.open(root / "train" / "pseudo" / "001.png"))
  np.testing.assert_array_equal(small.labels[0], (raw[1::2, 1::2] == 255))  # nearest
  image = np.asarray(Image.open(root / "train" / "images" / "001.png"), np.float32)
  area = image.reshape(4, 2, 4, 2, 3).mean(axis=(1, 3)) / 255
  np.testing.assert_allclose(small.images[0], area, atol=1.01 / 255)  # area average, 8-bit
  big = load_topomortar(root, split="val", label="noisy", size=16, cache=False)
  assert big.images.shape == (2, 16, 16, 3) and big.labels.shape == (2, 16, 16)


def test_synthetic_missing_groups_do_not_crash(tmp_path, caplog):
  root = _fake_layout(tmp_path / "tm", ood=False)
  index = topomortar_index(root)
  assert index.present_groups == ("indistr",) and index.missing_groups == OOD_GROUPS
  with caplog.at_level(logging.WARNING, logger="topojax.data._topomortar"):
    data = load_topomortar(root, split="test", cache=False)
  assert data.ids == ("007", "008") and "missing: angles (0/1)" in caplog.text


def test_synthetic_cache_is_keyed_and_invalidated(tmp_path):
  root, cache = _fake_layout(tmp_path / "tm"), tmp_path / "cache"
  load_topomortar(root, split="val", cache_dir=cache)
  load_topomortar(root, split="val", size=4, cache_dir=cache)
  load_topomortar(root, split="val", label="noisy", cache_dir=cache)
  assert len(list(cache.glob("*.npz"))) == 3
  # Rewriting a source file (new size / mtime) invalidates its entry.
  label = root / "val" / "accurate" / "005.png"
  _write_png(label, np.full((8, 8), 255, np.uint8))
  os.utime(label, ns=(1, 1))
  data = load_topomortar(root, split="val", cache_dir=cache)
  assert (data.labels[0] == 1).all()
  assert len(list(cache.glob("*.npz"))) == 4


def test_synthetic_unwritable_cache_only_logs(tmp_path, caplog):
  root = _fake_layout(tmp_path / "tm")
  blocker = tmp_path / "not_a_dir"
  blocker.write_text("")
  with caplog.at_level(logging.WARNING, logger="topojax.data._topomortar"):
    data = load_topomortar(root, split="val", cache_dir=blocker / "cache")
  assert data.images.shape == (2, 8, 8, 3) and "Could not write" in caplog.text


def test_synthetic_errors(tmp_path):
  with pytest.raises(ValueError, match="not a TopoMortar layout: no such directory"):
    topomortar_index(tmp_path / "absent")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="not a TopoMortar layout: missing splits.yaml"):
    load_topomortar(tmp_path / "empty")
  root = _fake_layout(tmp_path / "tm")
  with pytest.raises(ValueError, match="only has 'accurate' labels"):
    load_topomortar(root, split="test", label="pseudo")
  with pytest.raises(ValueError, match="Unknown test group"):
    load_topomortar(root, split="test", groups=["rain"])
  with pytest.raises(ValueError, match="`size` must be"):
    load_topomortar(root, size=0)
  with pytest.raises(ValueError, match="`training_set` must be"):
    topomortar_index(root, training_set="medium")
  with pytest.raises(ValueError, match="inside `data_dir`"):
    load_topomortar(root, cache_dir=root / "cache")
  assert not (root / "cache").exists()
  _write_png(root / "val" / "accurate" / "006.png", np.full((8, 8), 128, np.uint8))
  with pytest.raises(ValueError, match="not binary"):
    load_topomortar(root, split="val", cache=False)
  (root / "train" / "images" / "003.png").unlink()
  with pytest.raises(FileNotFoundError, match="1 train image"):
    load_topomortar(root, cache=False)
