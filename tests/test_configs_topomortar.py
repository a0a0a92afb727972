"""configs/topomortar.py: the real dataset through the segmentation trainer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from configs import bricks
from configs import topomortar
from experiments import train as trainer

_REAL_DIR = Path(os.environ.get(
    "TOPOMORTAR_DIR", Path(__file__).parents[1] / ".." / "shared" / "data" / "topomortar"))


@pytest.mark.parametrize("loss", sorted(bricks.LOSS_PRESETS))
def test_every_loss_preset_is_reachable_by_name(loss):
  config = topomortar.get_config(f"data_dir=/data,loss={loss},label=noisy,training_set=small")
  preset = bricks.get_config(f"loss={loss}")
  assert config.loss.to_dict() == preset.loss.to_dict()
  assert config.loss_schedules.to_dict() == preset.loss_schedules.to_dict()
  assert config.data.name == "topomortar" and config.data.size == 512
  assert config.data.label == "noisy" and config.data.training_set == "small"


@pytest.mark.parametrize("arg,match", [
    ("loss=cedice", "data_dir"),
    ("data_dir=/data,label=sloppy", "label"),
    ("data_dir=/data,training_set=medium", "training_set"),
    ("data_dir=/data,loss=nope", "loss"),
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
