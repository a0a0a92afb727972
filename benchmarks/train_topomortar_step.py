"""TopoMortar's nine losses: cost of one training step relative to CE+Dice.

Run: `python -m benchmarks.train_topomortar_step [--size 64 --runs 10]`.

The reduced protocol's step (`configs/topomortar.py:runlocal`: the small UNet,
batch 8, synthetic TopoMortar images at `--size`): on-device augmentation,
forward, the loss preset, backward and the SGD update, jitted, at the last
step so that every late-scheduled topology term is on (the step where a loss
costs most). Each loss is timed in turn in one process (median of `--runs`
after warm-up); the ratio column is step time / CE+Dice step time, the
issue's target being at most 2x (TopoMortar measured up to 49x on GPU).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks._harness import machine_line
from benchmarks._harness import time_fn
from configs import topomortar
from topojax import data
from topojax import models
from topojax.losses import make_loss
from topojax.train.optim import make_optimizer
from topojax.train.optim import make_schedule


def make_step(config, images, labels):
  """A jitted step `() -> loss` of `config`'s loss at its last step."""
  settings = config.model.to_dict()
  model = models.get_model(settings.pop("name"))(images.shape[-1], 2, **settings,
                                                  rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, make_optimizer(config, make_schedule(config)), wrt=nnx.Param)
  loss_fn = make_loss(config.loss.to_dict(), config.loss_options.to_dict(),
                      config.loss_schedules.to_dict(), total_steps=config.total_steps)
  augment = data.AugmentConfig(**config.augment)
  last = jnp.asarray(config.total_steps - 1)

  @nnx.jit
  def step(model, optimizer, images, labels):
    x, y = data.augment_batch(jax.random.key(0), images, labels, augment)
    loss, grads = nnx.value_and_grad(
        lambda m: jnp.mean(loss_fn(m(x), y, step=last)))(model)
    optimizer.update(model, grads)
    return loss

  return lambda: step(model, optimizer, images, labels)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--runs", type=int, default=10)
  args = parser.parse_args(argv)
  split = data.synthetic_topomortar("train", size=args.size)
  base = topomortar.get_config("runlocal")
  images = jnp.asarray(split.images[:base.batch_size])
  labels = jnp.asarray(split.labels[:base.batch_size])
  timings = {}
  for loss in topomortar.LOSSES:
    config = topomortar.get_config(f"runlocal,loss={loss}")
    timings[loss] = time_fn(loss, make_step(config, images, labels), warmup=2, runs=args.runs)
  print(f"\nTrain step, batch {base.batch_size} x {args.size}^2, all terms on\n{machine_line()}")
  print(f"{'loss':<16} {'median ms':>10} {'min ms':>9} {'x cedice':>9}")
  for loss, t in timings.items():
    ratio = t.median_s / timings["cedice"].median_s
    print(f"{loss:<16} {1e3 * t.median_s:>10.1f} {1e3 * t.min_s:>9.1f} {ratio:>8.2f}x")
  worst = max(timings, key=lambda k: timings[k].median_s)
  print(f"most expensive: {worst}, "
        f"{timings[worst].median_s / timings['cedice'].median_s:.2f}x cedice (target <= 2x)")


if __name__ == "__main__":
  main()
