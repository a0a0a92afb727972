"""The DECT experiment: configs and a tiny run of the trainer end to end."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import ect_digits
from configs import ect_shapes
from experiments import train_ect as trainer
from topojax.train import read_metrics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tiny(config):
  """8 directions x 8 thresholds, 6 steps of batch 16 on the 8 test devices."""
  config.model.update({"num_directions": 8, "num_thresholds": 8, "hidden": (16,)})
  config.batch_size = 16
  config.total_steps = 6
  config.log_every = 2
  config.checkpoint_every = 3
  return config


def test_configs_runlocal_and_args():
  for module in (ect_digits, ect_shapes):
    full, local = module.get_config(), module.get_config("runlocal")
    assert set(full.keys()) == set(local.keys())
    assert local.total_steps < full.total_steps
    assert full.model.name == "ect_classifier" and full.batch_size % 8 == 0
  graph = ect_digits.get_config("runlocal,input=graph,directions=16")
  assert graph.data.input == "graph" and graph.model.input == "points"
  assert graph.model.num_directions == 16
  with pytest.raises(ValueError, match="Unknown input 'mesh'"):
    ect_digits.get_config("input=mesh")


@pytest.mark.slow
def test_tiny_digits_run_trains_evaluates_and_resumes(tmp_path):
  pytest.importorskip("sklearn")
  workdir = str(tmp_path)
  result = trainer.train_and_evaluate(_tiny(ect_digits.get_config("runlocal")), workdir)
  assert (result["start_step"], result["step"]) == (0, 6)
  assert np.all(np.isfinite(result["losses"]))
  assert 0.0 <= result["eval"]["accuracy"] <= 1.0
  records = read_metrics(workdir)
  assert [r["step"] for r in records] == [2, 4, 6, 6]
  assert {"loss", "accuracy", "scale", "grad_norm"} <= set(records[0])
  assert records[0]["scale"] >= 5.0  # the config's floor
  with open(os.path.join(workdir, trainer.METRICS_CSV)) as f:
    assert [row["metric"] for row in csv.DictReader(f)] == ["accuracy", "cross_entropy"]
  with open(os.path.join(workdir, trainer.ECT_PNG), "rb") as f:
    assert f.read(8) == PNG_MAGIC
  assert sorted(os.listdir(os.path.join(workdir, trainer.CHECKPOINT_DIR))) == ["3", "6"]
  # A finished run only evaluates again.
  again = trainer.train(_tiny(ect_digits.get_config("runlocal")), workdir)
  assert (again["start_step"], again["losses"].shape) == (6, (0,))


def test_tiny_shapes_point_cloud_run(tmp_path):
  config = _tiny(ect_shapes.get_config("runlocal,num_per_class=10,points=32"))
  result = trainer.train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 6 and np.all(np.isfinite(result["losses"]))
  assert len(trainer.load_data(config)[1][1]) == 8  # 20 % of 40 shapes held out


@pytest.mark.slow
def test_cli_digits_graph_input_writes_outputs(tmp_path):
  workdir = str(tmp_path / "run")
  command = [
      sys.executable, "-m", "experiments.train_ect",
      "--config", "configs/ect_digits.py:runlocal,input=graph,directions=8,thresholds=8",
      "--workdir", workdir, "--config.total_steps=4", "--config.log_every=2",
      "--config.checkpoint_every=2", "--config.batch_size=16",
  ]
  run = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "CI": "1"},
                       capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "Test accuracy:" in run.stdout
  assert [r["step"] for r in read_metrics(workdir)] == [2, 4, 4]
  with open(os.path.join(workdir, trainer.ECT_PNG), "rb") as f:
    assert f.read(8) == PNG_MAGIC
