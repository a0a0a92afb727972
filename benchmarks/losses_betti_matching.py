"""Betti matching loss, forward + backward, vs the CPU work every anchor does first.

Run: `python -m benchmarks.losses_betti_matching [--sizes 256 512 --batch 16 --runs 5]`.

Inputs (float32, seeded): the prediction is a smoothed probability map
(standard normal noise, Gaussian filter sigma 2, standardized, sigmoid(3 x));
the target a binary label (noise, Gaussian filter sigma 4, > 0). Rows:

* topojax: `jax.jit(jax.grad(sum of topojax.losses.betti_matching))` on the
  batch (superlevel, union, dims (0, 1)), per image; and on image 0 alone.
* cripser x3: `cripser.compute_ph(x, maxdim=1)` on 1 - prediction, 1 - target
  and their comparison image min(1 - p, 1 - t), per image: the persistence
  every Betti-matching implementation computes before it matches (the
  matching itself, and the backward pass, come on top for the anchors).

The ratio is anchor / topojax (> 1: topojax is faster). The two are timed
in turn within each run (`time_interleaved`): this machine's speed drifts by
up to 2x over minutes, and cripser's more than ours.
"""

from __future__ import annotations

import argparse

import cripser
import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from benchmarks._harness import report, time_interleaved
from topojax.losses import betti_matching


def _inputs(batch, size, seed=0):
  rng = np.random.default_rng(seed)
  pred = np.stack([ndimage.gaussian_filter(rng.standard_normal((size, size)), 2)
                   for _ in range(batch)])
  pred = (pred - pred.mean(axis=(1, 2), keepdims=True)) / pred.std(axis=(1, 2), keepdims=True)
  pred = 1 / (1 + np.exp(-3 * pred))
  target = np.stack([ndimage.gaussian_filter(rng.standard_normal((size, size)), 4) > 0
                     for _ in range(batch)])
  return pred.astype(np.float32), target.astype(np.float32)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--runs", type=int, default=5)
  args = parser.parse_args(argv)
  grad = jax.jit(jax.grad(lambda p, t: jnp.sum(betti_matching(p, t))))
  for size in args.sizes:
    pred, target = _inputs(args.batch, size)
    dp, dt = jax.device_put(pred), jax.device_put(target)
    one_pred, one_target = dp[:1], dt[:1]

    def three_cripser_calls(i):
      p, t = 1.0 - pred[i].astype(np.float64), 1.0 - target[i].astype(np.float64)
      for x in (p, t, np.minimum(p, t)):
        cripser.compute_ph(x, maxdim=1)

    single, anchor_one = time_interleaved(
        {"topojax fwd+bwd, one image": lambda: grad(one_pred, one_target),
         "cripser x3, one image": lambda: three_cripser_calls(0)}, warmup=1, runs=args.runs)
    report(f"Betti matching loss, {size}x{size}: one image", single, [anchor_one])
    ours, anchor = time_interleaved(
        {f"topojax fwd+bwd, batch {args.batch} (per batch)": lambda: grad(dp, dt),
         f"cripser x3, batch {args.batch} loop (per batch)":
             lambda: [three_cripser_calls(i) for i in range(args.batch)]},
        warmup=1, runs=max(1, args.runs // 2))
    report(f"Betti matching loss, {size}x{size}: batch of {args.batch}", ours, [anchor])


if __name__ == "__main__":
  main()
