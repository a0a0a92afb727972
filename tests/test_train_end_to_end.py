"""The trainer end to end on tiny walls: data parallelism, resume, tripwire, CLI.

Each `train` call compiles its step afresh (seconds on CPU), so the runs of an
uninterrupted reference are shared between tests through a module fixture.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from configs import bricks
from experiments import train as trainer
from topojax.train import read_metrics
from topojax.train import report

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 4
RESUME_FROM = 2


def _tiny_config():
  """32 x 32 walls, a 2-level UNet, constant lr: the schedule does not depend
  on `total_steps`, so a run resumed with more steps equals an uninterrupted
  one."""
  config = bricks.get_config("runlocal,schedule=constant")
  config.data.height = config.data.width = 32
  config.data.num_train = 16
  config.data.num_eval = 8
  config.model.features = (4, 8)
  config.batch_size = 8
  config.total_steps = NUM_STEPS
  config.log_every = 1
  config.checkpoint_every = RESUME_FROM
  config.eval.batch_size = 8
  return config


def _params(result):
  return nnx.to_pure_dict(nnx.state(result["model"], nnx.Param))


def _assert_trees_close(a, b, **tolerances):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tolerances), a, b)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  """An uninterrupted run of NUM_STEPS on all 8 devices."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  return trainer.train(_tiny_config(), workdir), workdir


def test_reference_run_logs_every_step_and_checkpoints(reference_run):
  result, workdir = reference_run
  assert len(jax.devices()) == 8 and result["mesh"].shape["data"] == 8
  assert (result["start_step"], result["step"]) == (0, NUM_STEPS)
  assert result["losses"].shape == (NUM_STEPS,)
  records = read_metrics(workdir)
  assert [r["step"] for r in records] == list(range(1, NUM_STEPS + 1))
  assert {"loss", "grad_norm", "param_norm", "lr"} <= set(records[0])
  np.testing.assert_allclose([r["loss"] for r in records], result["losses"], rtol=1e-6)
  assert sorted(os.listdir(os.path.join(workdir, trainer.CHECKPOINT_DIR))) == ["2", "4"]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["total_steps"] == NUM_STEPS


@pytest.mark.slow
def test_one_device_matches_eight(reference_run, tmp_path):
  sharded, _ = reference_run
  single = trainer.train(_tiny_config(), str(tmp_path), devices=jax.devices()[:1])
  assert single["mesh"].shape["data"] == 1
  np.testing.assert_allclose(single["losses"], sharded["losses"], rtol=1e-4)
  _assert_trees_close(_params(single), _params(sharded), rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_resume_continues_from_latest_checkpoint(reference_run, tmp_path):
  uninterrupted, _ = reference_run
  workdir = str(tmp_path)
  config = _tiny_config()
  config.total_steps = RESUME_FROM
  first = trainer.train(config, workdir)
  assert (first["start_step"], first["step"]) == (0, RESUME_FROM)

  resumed = trainer.train(_tiny_config(), workdir)
  assert (resumed["start_step"], resumed["step"]) == (RESUME_FROM, NUM_STEPS)
  assert [r["step"] for r in read_metrics(workdir)] == list(range(1, NUM_STEPS + 1))
  np.testing.assert_allclose(resumed["losses"], uninterrupted["losses"][RESUME_FROM:],
                             rtol=1e-5)
  _assert_trees_close(_params(resumed), _params(uninterrupted), rtol=1e-5, atol=1e-6)

  # A finished run restores and trains no further.
  again = trainer.train(_tiny_config(), workdir)
  assert (again["start_step"], again["step"], again["losses"].size) == (NUM_STEPS, NUM_STEPS, 0)


def test_checkpoint_from_eight_devices_resumes_on_one(reference_run, tmp_path):
  """Restoring into target shardings lets a checkpoint change topology."""
  uninterrupted, reference_workdir = reference_run
  workdir = str(tmp_path / "copy")
  shutil.copytree(reference_workdir, workdir)
  shutil.rmtree(os.path.join(workdir, trainer.CHECKPOINT_DIR, str(NUM_STEPS)))
  resumed = trainer.train(_tiny_config(), workdir, devices=jax.devices()[:1])
  assert resumed["start_step"] == RESUME_FROM
  np.testing.assert_allclose(resumed["losses"], uninterrupted["losses"][RESUME_FROM:],
                             rtol=1e-4)
  _assert_trees_close(_params(resumed), _params(uninterrupted), rtol=1e-3, atol=1e-5)


def test_nan_tripwire_names_the_step_and_saves_nothing(tmp_path):
  config = _tiny_config()
  config.loss = {"cross_entropy": 1.0}
  config.loss_options = {"cross_entropy": {"class_weights": (math.nan, math.nan)}}
  with pytest.raises(trainer.NonFiniteError, match="at step 1:.*'loss': nan"):
    trainer.train(config, str(tmp_path))
  assert not os.listdir(os.path.join(tmp_path, trainer.CHECKPOINT_DIR))


@pytest.mark.slow
def test_betti_matching_preset_trains_without_nans(tmp_path):
  """Dice + Betti matching, the topology term on from the start (its schedule
  is a config line), on all 8 devices: losses stay finite and fall."""
  config = _tiny_config()
  preset = bricks.get_config("runlocal,loss=bettimatching")
  config.loss, config.loss_options = preset.loss, preset.loss_options
  config.loss_schedules = {"betti_matching": {"name": "step", "start_fraction": 0.0}}
  config.total_steps = 6
  result = trainer.train(config, str(tmp_path))
  assert np.all(np.isfinite(result["losses"]))
  assert result["losses"][-1] < result["losses"][0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["skelrecall", "cbdice", "warping"])
def test_skeleton_loss_presets_train_without_nans(name, tmp_path):
  """TopoMortar's Skeleton Recall, cbDice and Warping presets by name, every
  term on from the start: losses stay finite and go below the first."""
  config = _tiny_config()
  preset = bricks.get_config(f"runlocal,loss={name}")
  config.loss, config.loss_options = preset.loss, preset.loss_options
  config.loss_schedules = {}
  config.total_steps = 12
  losses = trainer.train(config, str(tmp_path))["losses"]
  assert np.all(np.isfinite(losses))
  assert np.min(losses[1:]) < losses[0]


def test_batch_size_must_divide_over_devices(tmp_path):
  config = _tiny_config()
  config.batch_size = 6
  with pytest.raises(ValueError, match="Batch size 6 must be divisible .* 8"):
    trainer.train(config, str(tmp_path))


def test_report_table_skips_nan_and_aligns_columns(tmp_path):
  rows = report.summarize({"dice": np.array([0.5, 1.0]), "cldice": np.array([np.nan, 0.25]),
                           "hd95": np.array([np.nan])})
  assert [(r.name, r.mean, r.std, r.count) for r in rows[:2]] == [
      ("dice", 0.75, 0.25, 2), ("cldice", 0.25, 0.0, 1)]
  assert math.isnan(rows[2].mean) and rows[2].count == 0
  lines = report.format_table(rows).splitlines()
  assert lines[0].split() == ["metric", "mean", "std", "n"]
  assert lines[2].split() == ["dice", "0.7500", "0.2500", "2"]
  assert len({len(line) for line in lines}) == 1  # aligned
  report.write_csv(tmp_path / "t.csv", rows)
  with open(tmp_path / "t.csv") as f:
    assert next(csv.reader(f)) == ["metric", "mean", "std", "n"]


@pytest.mark.slow
def test_cli_runlocal_writes_metrics_table_and_png(tmp_path):
  workdir = str(tmp_path / "run")
  command = [
      sys.executable, "-m", "experiments.train",
      "--config", "configs/bricks.py:runlocal", "--workdir", workdir,
      # Shorter than runlocal proper, which the config docstring times.
      "--config.total_steps=6", "--config.log_every=3",
      "--config.checkpoint_every=3", "--config.data.num_eval=8",
      "--config.model.features=(4, 8)",
  ]
  env = {**os.environ, "CI": "1"}
  run = lambda: subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True,
                               text=True, timeout=300)
  first = run()
  assert first.returncode == 0, first.stderr[-3000:]
  assert "Evaluation at step 6 on 8 held-out walls" in first.stdout
  records = read_metrics(workdir)
  assert [r["step"] for r in records] == [3, 6, 6]
  assert set(records[-1]) == {"step", "eval/dice", "eval/cldice", "eval/betti0_error",
                              "eval/betti1_error", "eval/hd95"}
  with open(os.path.join(workdir, trainer.METRICS_CSV)) as f:
    table = list(csv.DictReader(f))
  assert [row["metric"] for row in table] == [
      "dice", "cldice", "betti0_error", "betti1_error", "hd95"]
  assert all(0.0 <= float(row["mean"]) <= 1.0 for row in table[:2])
  with open(os.path.join(workdir, trainer.PREDICTIONS_PNG), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # The same workdir resumes: training is complete, so it only evaluates.
  second = run()
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Training already complete (step 6)" in second.stderr
  assert [r["step"] for r in read_metrics(workdir)] == [3, 6, 6, 6]
