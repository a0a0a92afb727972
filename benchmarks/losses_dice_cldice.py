"""dice_cldice forward + backward: topojax (jit) vs MONAI's SoftDiceclDiceLoss (torch CPU).

Run: `python -m benchmarks.losses_dice_cldice [--batch 8 --size 256 --num_iter 10 --runs 10]`.
The MONAI anchor is configured for the same loss (softmax, foreground only, one-hot
target) and also run with its defaults (all channels, probabilities in).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._harness import report, time_fn
from topojax import losses
from topojax.skeleton import soft_skeleton_reference


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--num_iter", type=int, default=10)
  parser.add_argument("--runs", type=int, default=10)
  args = parser.parse_args()

  import torch
  from monai.losses import SoftDiceclDiceLoss

  rng = np.random.default_rng(0)
  shape = (args.batch, args.size, args.size)
  logits = rng.normal(size=(*shape, 2)).astype(np.float32)
  labels = (rng.random(shape) > 0.7).astype(np.int32)

  # topojax: per-example loss, mean, gradient w.r.t. the logits, one jitted step.
  def mean_loss(x, y):
    return jnp.mean(losses.dice_cldice(x, y, num_iter=args.num_iter))
  ours_step = jax.jit(jax.value_and_grad(mean_loss))
  x, y = jnp.asarray(logits), jnp.asarray(labels)
  ours = time_fn(f"topojax dice_cldice (jit, iter {args.num_iter})", lambda: ours_step(x, y), runs=args.runs)

  # The reduce_window transcription of the skeleton, same loss: what the fused version saves.
  def reference_loss(x, y):
    p = jnp.moveaxis(jax.nn.softmax(x, -1)[..., 1:], -1, 1)
    g = jnp.moveaxis(jax.nn.one_hot(y, 2)[..., 1:], -1, 1)
    sp = soft_skeleton_reference(p, num_iter=args.num_iter)
    sg = soft_skeleton_reference(g, num_iter=args.num_iter)
    axes = (1, 2, 3)
    tprec = ((sp * g).sum(axes) + 1) / (sp.sum(axes) + 1)
    tsens = ((sg * p).sum(axes) + 1) / (sg.sum(axes) + 1)
    cl = 1 - 2 * tprec * tsens / (tprec + tsens)
    dc = 1 - (2 * (p * g).sum(axes) + 1) / (p.sum(axes) + g.sum(axes) + 1)
    return jnp.mean(0.5 * dc + 0.5 * cl)
  ref_step = jax.jit(jax.value_and_grad(reference_loss))
  ref = time_fn("topojax, reduce_window skeleton reference", lambda: ref_step(x, y), runs=args.runs)

  t_logits = torch.from_numpy(np.moveaxis(logits, -1, 1).copy())
  t_labels = torch.from_numpy(labels[:, None].astype(np.int64))
  matched = SoftDiceclDiceLoss(iter_=args.num_iter, include_background=False, softmax=True, to_onehot_y=True)
  defaults = SoftDiceclDiceLoss(iter_=args.num_iter)
  t_onehot = torch.nn.functional.one_hot(t_labels[:, 0], 2).movedim(-1, 1).float()

  def monai_step(loss_fn, activate):
    def step():
      inp = t_logits.detach().requires_grad_(True)
      loss = loss_fn(torch.softmax(inp, 1) if activate else inp, t_onehot if activate else t_labels)
      loss.backward()
      return loss.item()
    return step

  anchors = [
      time_fn("MONAI SoftDiceclDiceLoss, same loss (fg, softmax)", monai_step(matched, False), runs=args.runs),
      time_fn("MONAI SoftDiceclDiceLoss defaults (all channels)", monai_step(defaults, True), runs=args.runs),
      ref,
  ]
  report(f"dice_cldice forward+backward, logits {args.batch}x{args.size}x{args.size}x2, "
         f"num_iter {args.num_iter}, torch {torch.__version__} ({torch.get_num_threads()} threads)",
         ours, anchors)


if __name__ == "__main__":
  main()
