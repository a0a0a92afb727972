"""configs/topomortar.py: the protocol's settings, the sweep, and short runs on
the synthetic and the real dataset through the segmentation trainer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax

import numpy as np
import pytest

from configs import bricks
from configs import topomortar
from experiments import train as trainer

_REAL_DIR = Path(os.environ.get(
    "TOPOMORTAR_DIR", Path(__file__).parents[1] / ".." / "shared" / "data" / "topomortar"))


def test_the_nine_losses_are_presets():
  assert len(topomortar.LOSSES) == 9 and set(topomortar.LOSSES) <= set(bricks.LOSS_PRESETS)


@pytest.mark.parametrize("loss", topomortar.LOSSES)
def test_every_loss_preset_is_reachable_by_name(loss):
  config = topomortar.get_config(f"data_dir=/data,loss={loss},label=noisy,training_set=small")
  preset = bricks.get_config(f"loss={loss}")
  assert config.loss.to_dict() == preset.loss.to_dict()
  assert config.loss_schedules.to_dict() == preset.loss_schedules.to_dict()
  assert config.data.name == "topomortar" and config.data.size == 512
  assert config.data.label == "noisy" and config.data.training_set == "small"


def test_settings_and_frameworks():
  config = topomortar.get_config("runlocal,loss=cldice,label=pseudo,seed=3")
  assert config.setting.to_dict() == {"loss": "cldice", "label": "pseudo",
                                      "training_set": "large", "framework": "supervised",
                                      "seed": 3}
  assert config.seed == 3 and config.data.data_dir == "" and config.data.size == 64
  assert config.augment.to_dict() == {} and config.distillation_rounds == 1
  assert topomortar.get_config("framework=randhue").augment.hue_probability == 0.5
  assert topomortar.get_config("framework=selfdistillation").distillation_rounds == 3
  full = topomortar.get_config()
  assert (full.batch_size, full.total_steps, full.data.size) == (10, 12_000, 512)


def test_sweep_lists_the_protocol():
  local = topomortar.sweep("runlocal")
  assert len(local) == 18
  assert {run["loss"] for run in local} == set(topomortar.LOSSES)
  assert {run["label"] for run in local} == {"accurate", "noisy"}
  full = topomortar.sweep("data_dir=/data")
  assert len(full) == 6 * 10 * 9 and len({tuple(sorted(r.items())) for r in full}) == len(full)
  assert {r["framework"] for r in full} == set(topomortar.FRAMEWORKS)
  for run in local[:2] + full[-2:]:  # every run is a valid config
    arg = ",".join(f"{k}={v}" for k, v in run.items())
    assert topomortar.get_config("runlocal," + arg).setting.to_dict() == run


@pytest.mark.parametrize("arg,match", [
    ("framework=distilled", "framework"),
    ("data_dir=/data,label=sloppy", "label"),
    ("data_dir=/data,training_set=medium", "training_set"),
    ("data_dir=/data,loss=nope", "loss"),
    ("loss=dice_cldice", "loss"),  # a bricks preset, not one of TopoMortar's nine
])
def test_bad_arguments_raise(arg, match):
  with pytest.raises(ValueError, match=match):
    topomortar.get_config(arg)


@pytest.mark.skipif(not (_REAL_DIR / "splits.yaml").exists(),
                    reason=f"real TopoMortar data not found at {_REAL_DIR} (set TOPOMORTAR_DIR)")
def test_tiny_run_on_the_real_images(tmp_path, monkeypatch):
  monkeypatch.setenv("TOPOJAX_CACHE_DIR", str(tmp_path / "cache"))
  config = topomortar.get_config(f"runlocal,data_dir={_REAL_DIR},training_set=small,"
                                 "schedule=constant")
  config.data.size = 32
  config.model.features = (4, 8)
  config.total_steps = 4
  config.log_every = 1
  config.checkpoint_every = 4
  result = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.all(np.isfinite(result["losses"]))
  assert set(result["eval"]) >= {"dice", "cldice", "betti0_error", "betti1_error", "hd95"}
  assert (tmp_path / "run" / "eval_metrics.csv").exists()


def _tiny(config):
  config.data.size = 32
  config.model.features = (4, 8)
  config.total_steps = 4
  config.log_every = 1
  config.checkpoint_every = 2
  return config


@pytest.mark.slow
def test_self_distillation_on_synthetic_topomortar(tmp_path, monkeypatch):
  """Three rounds from reset weights, each on the previous round's soft labels."""
  monkeypatch.setenv("TOPOJAX_CACHE_DIR", str(tmp_path / "cache"))
  config = _tiny(topomortar.get_config("runlocal,framework=selfdistillation,label=noisy,"
                                       "training_set=small,schedule=constant"))
  config.total_steps = 6
  workdir = tmp_path / "run"
  result = trainer.train(config, str(workdir), devices=jax.devices()[:1])
  assert len(result["losses"]) == 6 and np.all(np.isfinite(result["losses"]))
  teacher = np.load(workdir / "round_1" / trainer.TEACHER_LABELS)
  assert teacher.shape == (10, 32, 32) and teacher.dtype == np.float32
  assert 0 <= teacher.min() and teacher.max() <= 1 and len(np.unique(teacher)) > 2
  assert (workdir / "round_2" / trainer.TEACHER_LABELS).exists()
  cost = json.loads((workdir / trainer.TRAIN_COST_JSON).read_text())
  assert cost["seconds_per_step"] > 0 and cost["step_memory_bytes"] > 0
  # A finished run restores every round without training again.
  again = trainer.train(config, str(workdir), devices=jax.devices()[:1])
  assert len(again["losses"]) == 0 and again["step"] == 2
