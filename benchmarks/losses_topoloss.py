"""TopoLoss forward + backward on full 512x512 images vs the original's CPU algorithm.

Run: `python -m benchmarks.losses_topoloss [--size 512 --batch 16 --patches 0 100 --runs 5]`.

Inputs as `benchmarks.losses_betti_matching` (a smoothed probability map and a
binary label, float32, seeded). Rows, per image:

* topojax: `jax.jit(jax.grad(sum of topojax.losses.topoloss))` on the batch
  (dims (0,) as the original code, T construction), per image; and on one
  image alone. `--patches 0` is the whole image, else the patch size.
* original (CPU): the algorithm of `topoloss_pytorch.py` step by step: per
  patch GUDHI's cubical complex on 1 - p (`top_dimensional_cells`, Z/2,
  `cofaces_of_persistence_pairs`) for the prediction and the label, the
  top-k / threshold selection, the weight and reference maps, then the loss
  and its backward pass in PyTorch (CPU), one image at a time as the original.

The ratio is anchor / topojax (> 1: topojax is faster).
"""

from __future__ import annotations

import argparse

import gudhi
import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks._harness import report, time_fn
from benchmarks.losses_betti_matching import _inputs
from topojax.losses import topoloss


def _critical_pairs(patch: np.ndarray):
  """Dimension-0 regular pairs of GUDHI's T complex on 1 - patch: values and pixels."""
  complex_ = gudhi.CubicalComplex(top_dimensional_cells=1 - patch)
  complex_.persistence(homology_coeff_field=2, min_persistence=0)
  regular = complex_.cofaces_of_persistence_pairs()[0]
  if not regular or len(regular[0]) == 0:
    return np.zeros((0, 2)), np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)
  flat = 1 - patch.ravel(order="F")
  birth = np.stack(np.unravel_index(regular[0][:, 0], patch.shape, order="F"), 1)
  death = np.stack(np.unravel_index(regular[0][:, 1], patch.shape, order="F"), 1)
  return np.stack([flat[regular[0][:, 0]], flat[regular[0][:, 1]]], 1), birth, death


def original_topoloss(likelihood: torch.Tensor, gt: np.ndarray, topo_size: int,
                      threshold=0.03, perfect=0.99) -> torch.Tensor:
  """The original's CPU algorithm on one image (maps in p units)."""
  p = likelihood.detach().numpy()
  weight, reference = np.zeros_like(p), np.zeros_like(p)
  for y in range(0, p.shape[0], topo_size):
    for x in range(0, p.shape[1], topo_size):
      p_patch, g_patch = p[y:y + topo_size, x:x + topo_size], gt[y:y + topo_size, x:x + topo_size]
      dgm, birth, death = _critical_pairs(p_patch)
      k = len(_critical_pairs(g_patch)[0])
      pers = np.abs(dgm[:, 1] - dgm[:, 0])
      order = np.argsort(pers)[::-1]
      fix = [i for i in order[:k] if pers[i] <= perfect]
      remove = [i for i in order[k:] if pers[i] > threshold]
      for i in fix:
        weight[y + birth[i, 0], x + birth[i, 1]] = 1
        reference[y + birth[i, 0], x + birth[i, 1]] = 1
        weight[y + death[i, 0], x + death[i, 1]] = 1
        reference[y + death[i, 0], x + death[i, 1]] = 0
      for i in remove:
        b, d = (y + birth[i, 0], x + birth[i, 1]), (y + death[i, 0], x + death[i, 1])
        weight[b], weight[d] = 1, 1
        reference[b], reference[d] = p[d], p[b]
  weight, reference = torch.from_numpy(weight), torch.from_numpy(reference)
  return (((likelihood * weight) - reference) ** 2).sum()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=512)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--patches", type=int, nargs="+", default=[0, 100])
  parser.add_argument("--runs", type=int, default=5)
  args = parser.parse_args(argv)
  torch.set_num_threads(1)
  pred, target = _inputs(args.batch, args.size)
  dp, dt = jax.device_put(pred), jax.device_put(target)
  for patch in args.patches:
    patch_size = patch or None
    grad = jax.jit(jax.grad(lambda p, t: jnp.sum(topoloss(p, t, dims=(0,),
                                                          patch_size=patch_size))))
    ours = time_fn(f"topojax fwd+bwd, batch {args.batch} (per batch)",
                   lambda: grad(dp, dt), warmup=1, runs=args.runs)
    single = time_fn("topojax fwd+bwd, one image", lambda: grad(dp[:1], dt[:1]), warmup=1,
                     runs=args.runs)

    def original(i):
      likelihood = torch.tensor(pred[i], requires_grad=True)
      original_topoloss(likelihood, target[i], patch or args.size).backward()
      return likelihood.grad

    anchor = time_fn("original algorithm (GUDHI + torch, CPU), one image",
                     lambda: original(0), warmup=1, runs=args.runs)
    batch_time = ours.median_s / args.batch
    where = f"patches of {patch}" if patch else "whole image"
    report(f"TopoLoss fwd+bwd, {args.size}x{args.size}, {where}", single, [anchor])
    print(f"batched: {1e3 * batch_time:.1f} ms per image "
          f"({anchor.median_s / batch_time:.2f}x the original)")
    want = original(0).numpy()
    got = np.asarray(grad(dp[:1], dt[:1]))[0]
    print(f"max |grad difference| vs the original on image 0: {np.abs(got - want).max():.2e}")


if __name__ == "__main__":
  main()
