"""Topological autoencoder loss, forward + backward: topojax vs the PyTorch original.

Run: `python -m benchmarks.losses_topological_autoencoder [--batch 256 --dim 101
--latent 2 --stack 8 --runs 10 --torch_threads 0]`.

Data as the original's Spheres set (`src/datasets/topo_dataset/spheres.py`):
10 spheres of radius 5 in R^101 with centres ~ N(0, 10 / sqrt(100)), inside
one of radius 25 with ten times the points; a batch is `--batch` points drawn
from it, float32, and random 2-D latent codes. Every implementation computes
the loss and its gradient w.r.t. the latent codes and `latent_norm` (the
encoder's own backward pass is the same work in both and left out):

* topojax: `jax.jit(jax.value_and_grad(topological_autoencoder))`, one batch;
  then `--stack` batches in one call (leading axis), time per batch;
* the original (`TopologicallyRegularizedAutoencoder.forward` with
  `match_edges="symmetric"`): distances `torch.norm(x[:, None] - x, dim=2)`,
  divided by their max (inputs) and by `latent_norm` (latents), the pairing by
  `PersistentHomologyCalculation` (Kruskal over the sorted upper triangle with
  a pure-Python union-find, on the host, transcribed below), the squared
  signature errors / batch size, `backward()`;
* the same with `torch.cdist` distances and scipy's `minimum_spanning_tree`
  for the pairing (the fastest host pairing; same edges when no lengths tie).
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._harness import Timing, report, time_fn
from topojax.losses import topological_autoencoder


def spheres(rng: np.random.Generator, n_samples: int = 500, d: int = 100, n_spheres: int = 11,
            r: float = 5.0) -> np.ndarray:
  """The original's Spheres data: points on `n_spheres` d-spheres in R^(d+1)."""
  def dsphere(n, radius):
    x = rng.normal(size=(n, d + 1))
    return radius * x / np.linalg.norm(x, axis=1, keepdims=True)

  shifts = rng.normal(0, 10 / np.sqrt(d), size=(n_spheres, d + 1))
  parts = [dsphere(n_samples, r) + shifts[i] for i in range(n_spheres - 1)]
  parts.append(dsphere(10 * n_samples, 5 * r))
  return np.concatenate(parts).astype(np.float32)


# ---------------------------------------------------------------------------
# The original (transcribed: BorgwardtLab/topological-autoencoders, src/topology.py
# and src/models/approx_based.py).


class UnionFind:
  """The original's union-find: recursive path compression, asymmetric merge."""

  def __init__(self, n):
    self._parent = np.arange(n, dtype=int)

  def find(self, u):
    if self._parent[u] == u:
      return u
    self._parent[u] = self.find(self._parent[u])
    return self._parent[u]

  def merge(self, u, v):
    if u != v:
      self._parent[self.find(u)] = self.find(v)


def original_pairs(matrix: np.ndarray) -> np.ndarray:
  """`PersistentHomologyCalculation.__call__`: the 0-dim pairs (MST edges)."""
  uf = UnionFind(matrix.shape[0])
  triu = np.triu_indices_from(matrix)
  weights = matrix[triu]
  pairs = []
  for k in np.argsort(weights, kind="stable"):
    u, v = triu[0][k], triu[1][k]
    younger, older = uf.find(u), uf.find(v)
    if younger == older:
      continue
    if younger > older:
      uf.merge(v, u)
    else:
      uf.merge(u, v)
    pairs.append((u, v) if u < v else (v, u))
  return np.array(pairs)


def scipy_pairs(matrix: np.ndarray) -> np.ndarray:
  from scipy.sparse.csgraph import minimum_spanning_tree
  graph = matrix + 1.0  # scipy drops zero entries (duplicate points)
  np.fill_diagonal(graph, 0)
  tree = minimum_spanning_tree(graph).tocoo()
  return np.stack([np.minimum(tree.row, tree.col), np.maximum(tree.row, tree.col)], axis=1)


def torch_step(torch, x, z, latent_norm, pairing, cdist: bool):
  """The original's forward (symmetric signature distance / B) and backward."""
  z = z.detach().requires_grad_(True)
  latent_norm = latent_norm.detach().requires_grad_(True)
  if cdist:
    dx, dz = torch.cdist(x, x), torch.cdist(z, z)
  else:
    dx = torch.norm(x[:, None] - x, dim=2, p=2)
    dz = torch.norm(z[:, None] - z, dim=2, p=2)
  dx = dx / dx.max()
  dz = dz / latent_norm
  px = pairing(dx.detach().cpu().numpy())
  pz = pairing(dz.detach().cpu().numpy())
  sig = lambda d, p: d[(p[:, 0], p[:, 1])]
  loss = (((sig(dx, px) - sig(dz, px)) ** 2).sum()
          + ((sig(dz, pz) - sig(dx, pz)) ** 2).sum()) / float(x.shape[0])
  loss.backward()
  return loss.detach(), z.grad, latent_norm.grad


def per_batch(t: Timing, n: int) -> Timing:
  return dataclasses.replace(t, median_s=t.median_s / n, min_s=t.min_s / n, max_s=t.max_s / n)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--dim", type=int, default=101, help="input dimension (spheres in R^dim)")
  parser.add_argument("--latent", type=int, default=2)
  parser.add_argument("--stack", type=int, default=8, help="batches per vmapped call")
  parser.add_argument("--runs", type=int, default=10)
  parser.add_argument("--torch_threads", type=int, default=0,
                      help="torch.set_num_threads (0: torch's default)")
  args = parser.parse_args()

  import torch
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)

  rng = np.random.default_rng(0)
  data = spheres(rng, d=args.dim - 1)
  xs = np.stack([data[rng.choice(len(data), args.batch, replace=False)]
                 for _ in range(args.stack)])
  zs = rng.normal(size=(args.stack, args.batch, args.latent)).astype(np.float32)
  norm = np.float32(1.3)

  step = jax.jit(jax.value_and_grad(
      lambda x, z, s: topological_autoencoder(x, z, latent_norm=s), argnums=(1, 2)))
  stacked = jax.jit(jax.value_and_grad(
      lambda x, z, s: jnp.sum(topological_autoencoder(x, z, latent_norm=s)), argnums=(1, 2)))
  x, z, s = jax.device_put(xs[0]), jax.device_put(zs[0]), jnp.float32(norm)
  xb, zb = jax.device_put(xs), jax.device_put(zs)

  tx, tz = torch.from_numpy(xs[0]), torch.from_numpy(zs[0])
  ts = torch.tensor([float(norm)])

  # Same loss and gradients from all three before timing them.
  loss, (gz, gs) = step(x, z, s)
  for pairing, cdist in ((original_pairs, False), (scipy_pairs, True)):
    t_loss, t_gz, t_gs = torch_step(torch, tx, tz, ts, pairing, cdist)
    np.testing.assert_allclose(float(loss), float(t_loss), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(gz), t_gz.numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(float(gs), float(t_gs[0]), rtol=1e-3)

  ours = time_fn("topojax (jit, value_and_grad, one batch)", lambda: step(x, z, s),
                 runs=args.runs)
  anchors = [
      per_batch(time_fn(f"topojax (jit, {args.stack} batches per call)",
                        lambda: stacked(xb, zb, s), runs=args.runs), args.stack),
      time_fn("torch original (torch.norm + python union-find)",
              lambda: torch_step(torch, tx, tz, ts, original_pairs, False), runs=args.runs),
      time_fn("torch.cdist + scipy MST pairing",
              lambda: torch_step(torch, tx, tz, ts, scipy_pairs, True), runs=args.runs),
  ]
  report(f"Topological autoencoder loss + gradient per batch, B={args.batch} points in "
         f"R^{args.dim} -> R^{args.latent} (float32), torch {torch.__version__} "
         f"({torch.get_num_threads()} threads)", ours, anchors)


if __name__ == "__main__":
  main()
