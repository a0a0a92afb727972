"""The topological autoencoder experiment: config, loss registry, data, model,
and the trainer end to end on a tiny Spheres set."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import autoencoder
from experiments import train as segmentation_trainer
from experiments import train_autoencoder as trainer
from topojax import data
from topojax.losses import topological_autoencoder
from topojax.losses import AUTOENCODER_LOSSES
from topojax.losses import make_autoencoder_loss
from topojax.models import MLPAutoencoder
from topojax.models import get_model
from topojax.train import loop
from topojax.train import read_metrics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------
# Config.
# ----------------------------------------------------------------------------


def test_config_default_and_runlocal():
  full, local = autoencoder.get_config(), autoencoder.get_config("runlocal")
  assert set(full.keys()) == set(local.keys())
  assert local.total_steps < full.total_steps
  for config in (full, local):
    assert config.loss.to_dict() == {"reconstruction": 1.0, "topological_autoencoder": 0.43}
    assert set(config.loss) <= set(AUTOENCODER_LOSSES)
    assert config.data.name == "spheres" and config.model.name == "mlp_autoencoder"
    assert config.model.learn_latent_norm
    assert config.batch_size == 28 and config.optimizer.name == "adam"


def test_config_args_choose_loss_weight_and_data():
  config = autoencoder.get_config("runlocal,loss=reconstruction,data=digits")
  assert config.loss.to_dict() == {"reconstruction": 1.0}
  assert not config.model.learn_latent_norm  # nothing trains the latent scale
  assert config.data.name == "digits"
  config = autoencoder.get_config("lam=1.5")
  assert config.loss.topological_autoencoder == 1.5


@pytest.mark.parametrize("arg, message", [
    ("loss=focal", "Unknown loss 'focal'"),
    ("data=mnist", "Unknown data 'mnist'"),
    ("runlocal,batch=3", "Unknown config arg 'batch'"),
    ("lam=big", "does not parse as float"),
])
def test_config_rejects_unknown_args(arg, message):
  with pytest.raises(ValueError, match=message):
    autoencoder.get_config(arg)


# ----------------------------------------------------------------------------
# Loss registry.
# ----------------------------------------------------------------------------


def test_registry_rejects_unknown_names_and_stray_tables():
  with pytest.raises(ValueError, match=r"Unknown autoencoder loss 'dice'; known: "
                     r"\['reconstruction', 'topological_autoencoder'\]"):
    make_autoencoder_loss({"reconstruction": 1.0, "dice": 1.0})
  with pytest.raises(ValueError, match="at least one loss"):
    make_autoencoder_loss({})
  with pytest.raises(ValueError, match=r"`options` given for losses without a weight: "
                     r"\['topological_autoencoder'\]"):
    make_autoencoder_loss({"reconstruction": 1.0},
                          {"topological_autoencoder": {"x_scale": None}})
  with pytest.raises(ValueError, match="`total_steps` is required"):
    make_autoencoder_loss({"topological_autoencoder": 1.0},
                          schedules={"topological_autoencoder": {"name": "step"}})


def test_weighted_sum_matches_the_terms(getkey):
  x = jax.random.normal(getkey(), (12, 6))
  z = jax.random.normal(getkey(), (12, 2))
  x_hat = jax.random.normal(getkey(), (12, 6))
  loss = make_autoencoder_loss({"reconstruction": 2.0, "topological_autoencoder": 0.5},
                               {"topological_autoencoder": {"x_scale": None}})
  total, terms = jax.jit(loss)(x, z, x_hat, latent_norm=jnp.float32(1.5))
  expected_topo = topological_autoencoder(x, z, x_scale=None, latent_norm=1.5)
  np.testing.assert_allclose(terms["reconstruction"], jnp.mean((x - x_hat) ** 2), rtol=1e-6)
  np.testing.assert_allclose(terms["topological_autoencoder"], expected_topo, rtol=1e-6)
  np.testing.assert_allclose(total, 2 * terms["reconstruction"] + 0.5 * expected_topo,
                             rtol=1e-6)
  # The gradient reaches the latent scale.
  grad = jax.grad(lambda s: loss(x, z, x_hat, latent_norm=s)[0])(jnp.float32(1.5))
  assert np.isfinite(grad) and grad != 0


def test_scheduled_term_is_off_before_it_starts(getkey):
  x = jax.random.normal(getkey(), (8, 4))
  z = jax.random.normal(getkey(), (8, 2))
  loss = jax.jit(make_autoencoder_loss(
      {"reconstruction": 1.0, "topological_autoencoder": 1.0},
      schedules={"topological_autoencoder": {"name": "step", "start_fraction": 0.5}},
      total_steps=10))
  early, early_terms = loss(x, z, x, step=4)
  late, late_terms = loss(x, z, x, step=5)
  assert float(early) == float(early_terms["topological_autoencoder"]) == 0.0
  assert float(late) == float(late_terms["topological_autoencoder"]) > 0.0
  with pytest.raises(ValueError, match="pass `step`"):
    loss(x, z, x)


def test_loss_names_mismatched_shapes():
  loss = make_autoencoder_loss({"reconstruction": 1.0})
  x = jnp.zeros((4, 3))
  with pytest.raises(ValueError, match="`x_hat` must have the shape of `x`"):
    loss(x, jnp.zeros((4, 2)), jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match="`z` must hold one latent code per input"):
    loss(x, jnp.zeros((3, 2)), x)
  with pytest.raises(ValueError, match=r"`x` must be \[B, features\]"):
    loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 2)), jnp.zeros((2, 4, 3)))


# ----------------------------------------------------------------------------
# Data and model.
# ----------------------------------------------------------------------------


def test_spheres_layout_radii_and_seed():
  x, y = data.spheres(30, dim=5, num_spheres=4, radius=2.0, seed=3)
  assert x.shape == (3 * 30 + 300, 6) and x.dtype == np.float32 and y.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(y), [30, 30, 30, 300])
  np.testing.assert_allclose(np.linalg.norm(x[y == 3], axis=1), 10.0, rtol=1e-5)
  np.testing.assert_array_equal(data.spheres(30, dim=5, num_spheres=4, radius=2.0, seed=3)[0], x)
  assert not np.array_equal(data.spheres(30, dim=5, num_spheres=4, radius=2.0, seed=4)[0], x)
  with pytest.raises(ValueError, match="`radius` must be finite and > 0"):
    data.spheres(radius=0.0)


def test_spheres_defaults_are_the_papers():
  x, y = data.spheres()
  assert x.shape == (10_000, 101)
  np.testing.assert_array_equal(np.bincount(y), [500] * 10 + [5000])
  np.testing.assert_allclose(np.linalg.norm(x[y == 10], axis=1), 25.0, rtol=1e-5)


def test_standardized_split_is_sklearns_split():
  model_selection = pytest.importorskip("sklearn.model_selection")
  x, y = data.spheres(20, dim=3, num_spheres=3)
  (train_x, train_y), (test_x, test_y) = data.standardized_split(x, y, test_fraction=0.1,
                                                                  seed=42)
  ref_train, ref_test, ref_train_y, ref_test_y = model_selection.train_test_split(
      x, y, test_size=0.1, random_state=np.random.RandomState(42))
  np.testing.assert_array_equal(train_y, ref_train_y)
  np.testing.assert_array_equal(test_y, ref_test_y)
  mean, std = ref_train.mean(0), ref_train.std(0)
  np.testing.assert_allclose(train_x, (ref_train - mean) / std, atol=1e-5)
  np.testing.assert_allclose(test_x, (ref_test - mean) / std, atol=1e-5)


def test_digits_constant_pixels_stay_finite():
  pytest.importorskip("sklearn")
  (train_x, _), (test_x, _) = data.standardized_split(*data.digits())
  assert train_x.shape[1] == 64 and np.all(np.isfinite(train_x)) and np.all(np.isfinite(test_x))


def test_model_shapes_modes_and_latent_norm():
  assert get_model("mlp_autoencoder") is MLPAutoencoder
  model = MLPAutoencoder(6, hidden=(8, 4), latent_dim=3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (10, 6))
  z, x_hat = model(x)
  assert z.shape == (10, 3) and x_hat.shape == (10, 6)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  assert float(params["latent_norm"]) == 1.0
  # Training mode moves the BatchNorm averages; eval mode uses them.
  assert not np.allclose(model.encoder.norms[0].mean[...], 0.0)
  model.eval()
  np.testing.assert_allclose(model.encode(x[:1]), model.encode(x)[:1], rtol=1e-5, atol=1e-6)

  fixed = MLPAutoencoder(6, learn_latent_norm=False, batch_norm=False, rngs=nnx.Rngs(0))
  assert "latent_norm" not in nnx.to_pure_dict(nnx.state(fixed, nnx.Param))
  assert not nnx.state(fixed, nnx.BatchStat)
  with pytest.raises(ValueError, match=r"expects `x` of shape \[B, 6\]"):
    fixed(jnp.zeros((2, 5)))
  with pytest.raises(ValueError, match="must be positive"):
    MLPAutoencoder(6, hidden=(0,), rngs=nnx.Rngs(0))


# ----------------------------------------------------------------------------
# The trainer end to end.
# ----------------------------------------------------------------------------


def _tiny_config(arg: str = "runlocal"):
  """Spheres in R^9 (20 points a sphere, 4 spheres: 260 points), a 1-hidden-layer
  model, 20 steps of batch 16 on all 8 devices."""
  config = autoencoder.get_config(arg)
  config.data.update({"num_samples": 20, "dim": 8, "num_spheres": 4})
  config.model.hidden = (16,)
  config.batch_size = 16
  config.total_steps = 20
  config.log_every = 1
  config.checkpoint_every = 10
  config.eval.batch_size = 8
  config.eval.density_sigmas = (0.1,)
  return config


def test_short_run_trains_logs_and_evaluates(tmp_path):
  workdir = str(tmp_path)
  config = _tiny_config()
  result = trainer.train_and_evaluate(config, workdir)
  assert result["mesh"].shape["data"] == 8
  assert (result["start_step"], result["step"]) == (0, 20)
  assert result["losses"].shape == (20,) and np.all(np.isfinite(result["losses"]))

  records = read_metrics(workdir)
  train_records, eval_record = records[:-1], records[-1]
  assert [r["step"] for r in train_records] == list(range(1, 21))
  assert {"loss", "loss/reconstruction", "loss/topological_autoencoder", "latent_norm",
          "grad_norm"} <= set(train_records[0])
  # 20 steps on 240 points are too noisy to see the terms fall: the slow
  # runlocal test checks that.
  assert all(math.isfinite(r["loss/topological_autoencoder"]) for r in train_records)
  assert set(eval_record) == {"step", "eval/reconstruction", "eval/topological_autoencoder",
                              "eval/mst_edges_preserved", "eval/kl_0.1"}
  assert all(math.isfinite(v) for v in result["eval"].values())
  assert 0.0 <= result["eval"]["mst_edges_preserved"] <= 1.0

  with open(os.path.join(workdir, trainer.METRICS_CSV)) as f:
    assert [row["metric"] for row in csv.DictReader(f)] == [
        "reconstruction", "topological_autoencoder", "mst_edges_preserved", "kl_0.1"]
  with open(os.path.join(workdir, trainer.LATENTS_PNG), "rb") as f:
    assert f.read(8) == PNG_MAGIC
  assert sorted(os.listdir(os.path.join(workdir, trainer.CHECKPOINT_DIR))) == ["10", "20"]


def test_shares_the_segmentation_trainers_loop_and_flags_do_not_clash():
  """Both experiments import in one process (the CLI flags of this one are
  defined only under `__main__`) and stop on NaNs with the same error."""
  assert segmentation_trainer.NonFiniteError is loop.NonFiniteError
  assert segmentation_trainer.make_optimizer is trainer.make_optimizer


def test_batch_size_must_divide_over_devices(tmp_path):
  config = _tiny_config()
  config.batch_size = 28
  with pytest.raises(ValueError, match="Batch size 28 must be divisible .* 8"):
    trainer.train(config, str(tmp_path))


def test_density_kl_is_zero_for_a_scaled_copy_and_positive_otherwise(getkey):
  x = np.asarray(jax.random.normal(getkey(), (50, 5)))
  assert trainer.density_kl(x, 3.0 * x, 0.1) == pytest.approx(0.0, abs=1e-12)
  assert trainer.density_kl(x, x[:, :1], 0.1) > 0.0


@pytest.mark.slow
def test_one_device_and_resume_match_an_uninterrupted_run(tmp_path):
  """The topological loss couples the whole batch: splitting it over the mesh
  must not change the run; nor may stopping at a checkpoint and resuming
  (BatchNorm statistics and the latent scale included)."""
  eight = trainer.train(_tiny_config(), str(tmp_path / "eight"))
  one = trainer.train(_tiny_config(), str(tmp_path / "one"), devices=jax.devices()[:1])
  np.testing.assert_allclose(one["losses"], eight["losses"], rtol=1e-4)

  config = _tiny_config()
  config.total_steps = 10
  first = trainer.train(config, str(tmp_path / "resumed"))
  resumed = trainer.train(_tiny_config(), str(tmp_path / "resumed"))
  assert (first["step"], resumed["start_step"], resumed["step"]) == (10, 10, 20)
  np.testing.assert_allclose(resumed["losses"], eight["losses"][10:], rtol=1e-5)
  state = lambda result: nnx.to_pure_dict(nnx.state(result["model"]))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               state(resumed), state(eight))


@pytest.mark.slow
def test_runlocal_topological_term_beats_a_plain_autoencoder(tmp_path):
  """The runlocal config (batch 28 over 4 devices): the topological term
  falls during training, and the topologically regularised codes keep the
  data's density structure better (KL_0.01 and KL_0.1, the paper's measures)
  and have a far smaller topological loss than a plain autoencoder's."""
  devices = jax.devices()[:4]
  config = autoencoder.get_config("runlocal")
  config.log_every = 1
  topo = trainer.train_and_evaluate(config, str(tmp_path / "topo"), devices=devices)["eval"]
  term = np.array([r["loss/topological_autoencoder"]
                   for r in read_metrics(tmp_path / "topo") if "loss" in r])
  assert term.shape == (config.total_steps,)
  assert term[-100:].mean() < 0.8 * term[:50].mean()
  plain = trainer.train_and_evaluate(autoencoder.get_config("runlocal,loss=reconstruction"),
                                     str(tmp_path / "plain"), devices=devices)["eval"]
  assert topo["kl_0.1"] < plain["kl_0.1"]
  assert topo["kl_0.01"] < plain["kl_0.01"]
  assert topo["topological_autoencoder"] < 0.5 * plain["topological_autoencoder"]
  assert topo["reconstruction"] < 1.1 * plain["reconstruction"]


@pytest.mark.slow
def test_cli_runlocal_writes_outputs_and_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  command = [
      sys.executable, "-m", "experiments.train_autoencoder",
      "--config", "configs/autoencoder.py:runlocal", "--workdir", workdir,
      "--config.total_steps=40", "--config.log_every=20", "--config.checkpoint_every=20",
  ]
  env = {**os.environ, "CI": "1"}
  run = lambda: subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True,
                               text=True, timeout=300)
  first = run()
  assert first.returncode == 0, first.stderr[-3000:]
  assert "Evaluation at step 40 on 1000 held-out points (spheres)" in first.stdout
  assert [r["step"] for r in read_metrics(workdir)] == [20, 40, 40]
  with open(os.path.join(workdir, trainer.LATENTS_PNG), "rb") as f:
    assert f.read(8) == PNG_MAGIC

  second = run()
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Training already complete (step 40)" in second.stderr
  assert [r["step"] for r in read_metrics(workdir)] == [20, 40, 40, 40]
