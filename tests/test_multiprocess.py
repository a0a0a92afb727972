"""Multi-host training simulated on one machine: two CPU processes, two devices
each, joined by `jax.distributed.initialize` (through the `TOPOJAX_*`
variables of `experiments._cli.maybe_initialize_distributed`), train and
evaluate one model over all four devices into a shared workdir, as the hosts
of a TPU pod do. Their losses must equal a single process's with the same
global batch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import _cli
from experiments import train as trainer
from topojax.train import read_metrics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
NUM_STEPS = 4

TINY_CONFIG = '''
from configs import bricks


def get_config(arg=None):
  config = bricks.get_config("runlocal,schedule=constant")
  config.data.height = config.data.width = 16
  config.data.num_train = 16
  config.data.num_eval = 8
  config.model.features = (4, 8)
  config.batch_size = 8  # global: 2 examples on each of the 4 devices
  config.total_steps = 4
  config.log_every = 1
  config.checkpoint_every = 2
  config.eval.batch_size = 8
  config.eval.num_examples_plot = 2
  return config
'''

# One host of the simulated pod: argv = config file, workdir, result file.
WORKER = '''
import importlib.util
import json
import sys

import jax

from experiments import _cli
from experiments import train as trainer

assert _cli.maybe_initialize_distributed()
spec = importlib.util.spec_from_file_location("tiny_config", sys.argv[1])
config_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config_module)
result = trainer.train_and_evaluate(config_module.get_config(), sys.argv[2])
with open(sys.argv[3], "w") as f:
  json.dump({"process_index": jax.process_index(), "process_count": jax.process_count(),
             "devices": [jax.device_count(), jax.local_device_count()],
             "step": result["step"], "losses": result["losses"].tolist(),
             "eval": result["eval"]}, f)
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _load_config(path):
  spec = importlib.util.spec_from_file_location("tiny_multiprocess_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_distributed_gate_reads_the_environment(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  for off in (None, "", "0", "false"):
    if off is None:
      monkeypatch.delenv("TOPOJAX_JAX_INIT", raising=False)
    else:
      monkeypatch.setenv("TOPOJAX_JAX_INIT", off)
    assert not _cli.maybe_initialize_distributed()
  monkeypatch.setenv("TOPOJAX_JAX_INIT", "1")
  for name in ("TOPOJAX_COORDINATOR", "TOPOJAX_NUM_PROCESSES", "TOPOJAX_PROCESS_ID"):
    monkeypatch.delenv(name, raising=False)
  assert _cli.maybe_initialize_distributed()  # a TPU pod: JAX finds the rest
  monkeypatch.setenv("TOPOJAX_COORDINATOR", "10.0.0.1:1234")
  monkeypatch.setenv("TOPOJAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("TOPOJAX_PROCESS_ID", "3")
  assert _cli.maybe_initialize_distributed()
  assert calls == [{}, {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                        "process_id": 3}]
  monkeypatch.setenv("TOPOJAX_PROCESS_ID", "three")
  with pytest.raises(ValueError, match="TOPOJAX_PROCESS_ID='three' is not an integer"):
    _cli.maybe_initialize_distributed()


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
  config_path, worker_path = tmp_path / "tiny_config.py", tmp_path / "worker.py"
  config_path.write_text(TINY_CONFIG)
  worker_path.write_text(WORKER)
  workdir = str(tmp_path / "shared_workdir")
  port = _free_port()
  processes = []
  for process_id in range(NUM_PROCESSES):
    env = {**os.environ, "CI": "1", "PYTHONPATH": REPO_ROOT,
           "JAX_NUM_CPU_DEVICES": str(DEVICES_PER_PROCESS),
           "TOPOJAX_JAX_INIT": "1", "TOPOJAX_COORDINATOR": f"localhost:{port}",
           "TOPOJAX_NUM_PROCESSES": str(NUM_PROCESSES),
           "TOPOJAX_PROCESS_ID": str(process_id)}
    log = open(tmp_path / f"process_{process_id}.log", "w")  # noqa: SIM115 (closed below)
    processes.append((subprocess.Popen(
        [sys.executable, str(worker_path), str(config_path), workdir,
         str(tmp_path / f"result_{process_id}.json")],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=log), log))

  # Meanwhile, the reference in this process: one process, 4 devices.
  single = trainer.train(_load_config(config_path), str(tmp_path / "single"),
                         devices=jax.devices()[:NUM_PROCESSES * DEVICES_PER_PROCESS])

  for process_id, (process, log) in enumerate(processes):
    try:
      returncode = process.wait(timeout=300)
    finally:
      if process.poll() is None:
        process.kill()
      log.close()
    with open(tmp_path / f"process_{process_id}.log") as f:
      assert returncode == 0, f"process {process_id} failed:\n{f.read()[-3000:]}"
  results = []
  for process_id in range(NUM_PROCESSES):
    with open(tmp_path / f"result_{process_id}.json") as f:
      results.append(json.load(f))

  for process_id, result in enumerate(results):
    assert result["process_index"] == process_id
    assert result["process_count"] == NUM_PROCESSES
    assert result["devices"] == [NUM_PROCESSES * DEVICES_PER_PROCESS, DEVICES_PER_PROCESS]
    assert result["step"] == NUM_STEPS and len(result["losses"]) == NUM_STEPS
  # Both hosts see the same (global) losses and eval, equal to one process's.
  np.testing.assert_array_equal(results[0]["losses"], results[1]["losses"])
  assert results[0]["eval"] == results[1]["eval"]
  np.testing.assert_allclose(results[0]["losses"], single["losses"], rtol=1e-4)

  # Orbax wrote the checkpoints collectively; process 0 alone wrote metrics.
  assert sorted(os.listdir(os.path.join(workdir, trainer.CHECKPOINT_DIR))) == ["2", "4"]
  records = read_metrics(workdir)
  assert [r["step"] for r in records] == [1, 2, 3, 4, 4]  # training steps, then eval
  np.testing.assert_allclose([r["loss"] for r in records[:-1]], results[0]["losses"],
                             rtol=1e-6)
  assert os.path.exists(os.path.join(workdir, trainer.METRICS_CSV))
