"""Config parsing and the bricks config: fields, runlocal, named components."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import bricks
from configs.common import parse_arg
from experiments.train import make_optimizer
from experiments.train import make_schedule
from topojax.losses import make_loss


@pytest.mark.parametrize("arg, expected", [
    (None, {"runlocal": False, "res": 64, "lr": 0.1, "loss": "cedice"}),
    ("", {"runlocal": False, "res": 64, "lr": 0.1, "loss": "cedice"}),
    ("runlocal", {"runlocal": True, "res": 64, "lr": 0.1, "loss": "cedice"}),
    ("runlocal=false,res=32", {"runlocal": False, "res": 32, "lr": 0.1, "loss": "cedice"}),
    (" res = 16 , lr=3e-4,loss=cldice",
     {"runlocal": False, "res": 16, "lr": 3e-4, "loss": "cldice"}),
    ("yes", {"runlocal": True, "res": 64, "lr": 0.1, "loss": "cedice"}),  # fills the first field
])
def test_parse_arg(arg, expected):
  parsed = parse_arg(arg, runlocal=False, res=64, lr=0.1, loss="cedice")
  assert parsed.to_dict() == expected
  assert {k: type(v) for k, v in parsed.items()} == {k: type(v) for k, v in expected.items()}


@pytest.mark.parametrize("arg, message", [
    ("runlocal,size=3", "Unknown config arg 'size'"),
    ("res=big", "does not parse as int"),
    ("runlocal=maybe", "is not a bool"),
    ("res", "does not parse as int"),  # a bare key means True
])
def test_parse_arg_errors(arg, message):
  with pytest.raises(ValueError, match=message):
    parse_arg(arg, runlocal=False, res=64)


def test_get_config_default_and_runlocal():
  full, local = bricks.get_config(), bricks.get_config("runlocal")
  assert set(full.keys()) == set(local.keys())
  assert local.total_steps < full.total_steps
  assert local.data.height * local.data.width < full.data.height * full.data.width
  for config in (full, local):
    factor = 2 ** (len(config.model.features) - 1)
    assert config.data.height % factor == 0 and config.data.width % factor == 0
    assert config.data.train_seed != config.data.eval_seed
    assert config.batch_size % 8 == 0 and config.eval.batch_size % 8 == 0
    assert config.loss.to_dict() == {"cross_entropy": 1.0, "dice": 1.0}
    assert config.optimizer.name == "sgd" and config.schedule.name == "poly"


def test_get_config_rejects_unknown_presets():
  with pytest.raises(ValueError, match="Unknown loss 'focal'"):
    bricks.get_config("loss=focal")
  with pytest.raises(ValueError, match="Unknown optimizer"):
    bricks.get_config("optimizer=lion")


@pytest.mark.parametrize("name", sorted(bricks.LOSS_PRESETS))
def test_loss_presets_build_and_run(name, getkey):
  config = bricks.get_config(f"runlocal,loss={name}")
  loss_fn = make_loss(config.loss.to_dict(), config.loss_options.to_dict())
  logits = jax.random.normal(getkey(), (2, 16, 16, 2))
  labels = jax.random.bernoulli(getkey(), 0.3, (2, 16, 16)).astype(jnp.int32)
  loss = jax.jit(loss_fn)(logits, labels)
  assert loss.shape == (2,)
  assert bool(jnp.all(jnp.isfinite(loss)))


@pytest.mark.parametrize("optimizer", sorted(bricks.OPTIMIZER_PRESETS))
@pytest.mark.parametrize("schedule", sorted(bricks.SCHEDULE_PRESETS))
def test_optimizer_and_schedule_presets_build_and_step(optimizer, schedule):
  config = bricks.get_config(f"optimizer={optimizer},schedule={schedule}")
  schedule_fn = make_schedule(config)
  assert float(schedule_fn(0)) == pytest.approx(config.lr if schedule != "warmup_cosine" else 0.0)
  tx = make_optimizer(config, schedule_fn)
  params = {"w": jnp.ones((3,))}
  # optax's adam bias correction and cosine schedule mix Python floats with
  # int32 step counts, which the tests' strict promotion forbids.
  with jax.numpy_dtype_promotion("standard"):
    updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
  assert np.all(np.isfinite(updates["w"]))
