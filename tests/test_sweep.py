"""`experiments.sweep`: run names, skipping finished runs, launch commands, and
a sweep killed mid-run that finishes when started again.

The unit tests use a fake trainer (the config's `trainer` field) and take
milliseconds; the kill test trains tiny walls in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from experiments import sweep
from topojax.train import read_metrics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two runs on 16 x 16 walls that compile the same programs (the persistent
# compilation cache serves the second run and the restart): a short one, then
# one long enough to be killed between its checkpoints.
TINY_BRICKS_CONFIG = '''
"""A tiny synthetic-bricks sweep (tests/test_sweep.py)."""
from configs import bricks
from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, seed=0, steps=6, every=2)
  config = bricks.get_config("runlocal,schedule=constant")
  config.seed = arg.seed
  config.data.height = config.data.width = 16
  config.data.num_train = 16
  config.data.num_eval = 8
  config.model.features = (4, 8)
  config.batch_size = 8
  config.total_steps = arg.steps
  config.log_every = config.checkpoint_every = arg.every
  config.eval.batch_size = 8
  config.eval.num_examples_plot = 2
  return config


def sweep(arg=None):
  return [{"seed": 0, "steps": 6}, {"seed": 0, "steps": 120, "every": 10}]
'''

# A config whose `trainer` records its calls instead of training.
FAKE_TRAINER_CONFIG = '''
import ml_collections
from configs.common import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, loss="cedice", seed=0, fail=False)
  return ml_collections.ConfigDict(
      {"trainer": "fake_trainer", "loss": arg.loss, "seed": arg.seed, "fail": arg.fail})


def sweep(arg=None):
  return [{"loss": loss, "seed": seed} for loss in ("cedice", "cldice") for seed in (0, 1)]
'''

FAKE_TRAINER = '''
import os

CALLS = []


def train_and_evaluate(config, workdir):
  CALLS.append(os.path.basename(workdir))
  if config.fail and config.loss == "cldice":
    raise FloatingPointError("fake NaN")
  return {"step": 7, "eval": {"dice": 0.5}, "model": object()}
'''


@pytest.fixture
def fake_sweep(tmp_path, monkeypatch):
  """(config path, the fake trainer module) with `fake_trainer` importable."""
  config_path = tmp_path / "fake_config.py"
  config_path.write_text(FAKE_TRAINER_CONFIG)
  (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
  monkeypatch.syspath_prepend(str(tmp_path))
  sys.modules.pop("fake_trainer", None)
  import fake_trainer  # noqa: PLC0415 (created just above)
  yield str(config_path), fake_trainer
  sys.modules.pop("fake_trainer", None)


def test_run_names_are_deterministic_and_file_system_safe():
  assert sweep.run_name({"loss": "cldice", "label": "noisy", "seed": 0}) == (
      "loss=cldice,label=noisy,seed=0")
  assert sweep.run_name({"data": "a b/c"}) == "data=a_b_c"
  long_a, long_b = ({"loss": "x" * 300, "seed": seed} for seed in (0, 1))
  assert len(sweep.run_name(long_a)) <= 200
  assert sweep.run_name(long_a) != sweep.run_name(long_b)
  assert sweep.join_args(None, {"seed": 1}) == "seed=1"
  assert sweep.join_args("", {"seed": 1}) == "seed=1"
  assert sweep.join_args("runlocal,data_dir=/d", {"seed": 1}) == "runlocal,data_dir=/d,seed=1"
  with pytest.raises(ValueError, match="free of"):
    sweep.override_arg({"features": "4,8"})
  with pytest.raises(ValueError, match="not an identifier"):
    sweep.override_arg({"a b": 1})
  with pytest.raises(ValueError, match=r"must be a \.py file"):
    sweep.split_config_spec("configs/bricks:runlocal")


def test_plan_writes_sweep_json_and_refuses_another_config(fake_sweep, tmp_path):
  config_path, _ = fake_sweep
  workdir = str(tmp_path / "sweep")
  runs = sweep.plan(f"{config_path}:runlocal", workdir)
  assert [r.name for r in runs] == ["loss=cedice,seed=0", "loss=cedice,seed=1",
                                    "loss=cldice,seed=0", "loss=cldice,seed=1"]
  assert runs[2].arg == "runlocal,loss=cldice,seed=0"
  assert runs[2].run_dir == os.path.join(workdir, "loss=cldice,seed=0")
  sweep.write_sweep_json(workdir, f"{config_path}:runlocal", runs)
  with open(os.path.join(workdir, sweep.SWEEP_FILE)) as f:
    recorded = json.load(f)
  assert recorded["arg"] == "runlocal" and len(recorded["runs"]) == 4
  assert recorded["runs"][3]["overrides"] == {"loss": "cldice", "seed": 1}
  with pytest.raises(ValueError, match="choose another --workdir"):
    sweep.write_sweep_json(workdir, config_path, runs)


def test_run_sweep_skips_done_runs_and_marks_finished_ones(fake_sweep, tmp_path):
  config_path, trainer = fake_sweep
  workdir = str(tmp_path / "sweep")
  runs = sweep.plan(config_path, workdir)
  sweep.write_done(runs[1], {"step": 3}, 1.0, "fake_trainer")  # finished earlier
  sweep.run_sweep(config_path, workdir, report=False)
  assert trainer.CALLS == [runs[0].name, runs[2].name, runs[3].name]
  done = sweep.read_done(runs[2].run_dir)
  assert done["overrides"] == {"loss": "cldice", "seed": 0}
  assert (done["step"], done["eval"], done["trainer"]) == (7, {"dice": 0.5}, "fake_trainer")
  assert sweep.read_done(runs[1].run_dir)["step"] == 3  # untouched
  assert not any(name.startswith(".") and name.endswith(".tmp")
                 for run in runs for name in os.listdir(run.run_dir))
  sweep.run_sweep(config_path, workdir, report=False)  # all done: trains nothing
  assert len(trainer.CALLS) == 3


def test_keep_going_runs_the_rest_then_raises(fake_sweep, tmp_path):
  config_path, trainer = fake_sweep
  workdir = str(tmp_path / "sweep")
  with pytest.raises(FloatingPointError, match="fake NaN"):
    sweep.run_sweep(f"{config_path}:fail", workdir, report=False)
  assert len(trainer.CALLS) == 3  # stopped at the first cldice run
  with pytest.raises(RuntimeError, match="2 of 4 runs failed"):
    sweep.run_sweep(f"{config_path}:fail", workdir, report=False, keep_going=True)
  assert trainer.CALLS[3:] == ["loss=cldice,seed=0", "loss=cldice,seed=1"]


def test_print_commands_lists_unfinished_runs(fake_sweep, tmp_path):
  config_path, _ = fake_sweep
  workdir = str(tmp_path / "sweep")
  runs = sweep.plan(f"{config_path}:runlocal", workdir)
  lines = sweep.launch_commands(f"{config_path}:runlocal", runs[:1])
  assert lines == [f"python -m fake_trainer --config {config_path}:runlocal,loss=cedice,seed=0"
                   f" --workdir {runs[0].run_dir}"]
  with pytest.raises(ValueError, match="both `tpu` and `zone`"):
    sweep.launch_commands(config_path, runs, tpu="pod")

  sweep.write_done(runs[0], {}, 1.0, "fake_trainer")
  command = [sys.executable, "-m", "experiments.sweep", "--config", f"{config_path}:runlocal",
             "--workdir", workdir, "--print_commands", "--tpu=my-pod", "--zone=us-west4-a"]
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), REPO_ROOT])}
  result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert len(lines) == 3  # the finished run is left out
  assert lines[0] == (f"tpu/run_tpu.sh --module=fake_trainer my-pod us-west4-a --config "
                      f"{config_path}:runlocal,loss=cedice,seed=1 --workdir {runs[1].run_dir}")
  assert os.path.exists(os.path.join(workdir, sweep.SWEEP_FILE))


def _wait_for(predicate, process, log_path, timeout_s):
  deadline = time.monotonic() + timeout_s
  while not predicate():
    if process.poll() is not None:
      with open(log_path) as f:
        raise AssertionError(f"The sweep exited ({process.returncode}) too early:\n"
                             + f.read()[-3000:])
    if time.monotonic() > deadline:
      process.kill()
      raise AssertionError("Timed out waiting for the sweep.")
    time.sleep(0.02)


def _finalized_checkpoints(run_dir):
  folder = os.path.join(run_dir, "checkpoints")
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def _snapshot(run_dir):
  """(mtime, text) of a run's `DONE` and `metrics.jsonl`."""
  state = []
  for name in (sweep.DONE_FILE, "metrics.jsonl"):
    path = os.path.join(run_dir, name)
    with open(path) as f:
      state.append((os.stat(path).st_mtime_ns, f.read()))
  return state


@pytest.mark.slow
def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path):
  config_path = tmp_path / "tiny_bricks.py"
  config_path.write_text(textwrap.dedent(TINY_BRICKS_CONFIG))
  workdir = tmp_path / "sweep"
  first_dir, second_dir = (str(workdir / name) for name in
                           ("seed=0,steps=6", "seed=0,steps=120,every=10"))
  command = [sys.executable, "-m", "experiments.sweep", "--config", f"{config_path}:runlocal",
             "--workdir", str(workdir), "--report=false"]
  env = {**os.environ, "CI": "1", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}

  log_path = tmp_path / "killed_sweep.log"
  with open(log_path, "w") as log:  # a file: a full pipe would stall the sweep
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
  _wait_for(lambda: sweep.is_done(first_dir) and _finalized_checkpoints(second_dir),
            process, log_path, timeout_s=240)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = _finalized_checkpoints(second_dir)[-1]
  assert not sweep.is_done(second_dir) and killed_at < 120, "finished before the kill"
  first_state = _snapshot(first_dir)

  result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Run 1/2 seed=0,steps=6: done before, skipped." in result.stderr
  resumed = re.search(r"Resuming from the checkpoint of step (\d+)", result.stderr)
  assert resumed and killed_at <= int(resumed.group(1)) < 120, result.stderr[-3000:]
  assert _snapshot(first_dir) == first_state  # neither retrained nor re-evaluated
  assert sweep.read_done(second_dir)["step"] == 120

  # Steps up to the restored checkpoint were trained (and logged) once;
  # steps after it, before the kill, are logged again by the resumed run.
  train_steps = [r["step"] for r in read_metrics(second_dir) if "loss" in r]
  restored = int(resumed.group(1))
  assert [s for s in train_steps if s <= restored] == list(range(10, restored + 1, 10))
  assert set(train_steps) == set(range(10, 121, 10))


def test_run_tpu_dry_run_quotes_flags_and_sets_the_distributed_gate():
  command = ["bash", os.path.join(REPO_ROOT, "tpu", "run_tpu.sh"), "--dry_run",
             "--module=experiments.sweep", "--project=proj", "my-pod", "us-west4-a",
             "--config", "configs/topomortar.py:data_dir=/mnt/my data", "--workdir", "/mnt/w"]
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0].startswith("gcloud compute tpus tpu-vm scp --zone us-west4-a --project proj "
                             "--worker=all ")
  assert lines[1].startswith("gcloud compute tpus tpu-vm ssh my-pod --zone us-west4-a "
                             "--project proj --worker=all ")
  assert lines[-1] == ("TOPOJAX_JAX_INIT=1 ~/topojax_venv/bin/python -m experiments.sweep "
                       r"--config configs/topomortar.py:data_dir=/mnt/my\ data --workdir /mnt/w")
  assert "pip install -q -e ~/topojax 'jax[tpu]'" in result.stdout
  bad = subprocess.run(command[:2] + ["--module=x;rm", "a", "b"], capture_output=True,
                       text=True, timeout=60)
  assert bad.returncode == 2 and "not a module name" in bad.stderr
