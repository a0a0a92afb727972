"""TOPO (windowed MALIS) loss, forward + backward per 512² image: topojax vs TopoMortar's recipe.

Run: `python -m benchmarks.losses_topo_malis [--size 512 --batch 4 --runs 5]`.

Inputs: synthetic TopoMortar-like brick walls (`topojax.data.brick_walls` at
512², ~8-16 px mortar) and a prediction = the truncated EDT target plus
Gaussian noise, ReLU'd. TopoMortar's defaults (window 64, D 20, Dmin 10, α 1e-3).

* topojax: `jax.jit(jax.value_and_grad(topo_malis(...).sum()))`, one image
  and a batch of `--batch` images (time divided by the batch size).
* reference: TopoMortar's `MSETopoWinLoss.forward` on the CPU in NumPy/SciPy
  (EDT, per-window `binary_dilation` + `label`, both MALIS passes as TopoMortar
  runs them) with the MALIS weights in C++ (`malis.malis_loss_weights`'s
  algorithm: `std::sort` by decreasing weight, union-find, per-component label
  maps), compiled here with g++ because the `malis` package no longer builds;
  the loss and its gradient (elementwise) in NumPy. Also without the positive
  pass, which TopoMortar's binary targets make identically zero (topojax skips it).
  Without g++ the weights fall back to a pure-Python union-find (much slower).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import os
import shutil
import subprocess
import tempfile

import jax
import numpy as np
from scipy import ndimage

from benchmarks._harness import Timing, report, time_fn
from topojax.data import BrickWallConfig, brick_walls
from topojax.losses import topo_malis

_MALIS_CPP = r"""
#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <vector>
extern "C" void malis_weights(int n_vert, const uint64_t* seg, int n_edge, const uint64_t* node1,
                              const uint64_t* node2, const float* weight, int pos, int* out) {
  std::vector<std::map<uint64_t, uint64_t>> bags(n_vert);
  std::vector<int> parent(n_vert), rank(n_vert, 0);
  std::iota(parent.begin(), parent.end(), 0);
  for (int i = 0; i < n_vert; ++i) if (seg[i] != 0) bags[i][seg[i]] = 1;
  std::vector<int> order(n_edge);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return weight[a] > weight[b]; });
  auto find = [&](int x) {
    while (parent[x] != x) { parent[x] = parent[parent[x]]; x = parent[x]; }
    return x;
  };
  for (int e : order) {
    int a = find((int)node1[e]), b = find((int)node2[e]);
    if (a == b) continue;
    for (auto& p : bags[a]) for (auto& q : bags[b]) {
      uint64_t c = p.second * q.second;
      if (pos ? p.first == q.first : p.first != q.first) out[e] += (int)c;
    }
    if (rank[a] < rank[b]) std::swap(a, b);
    parent[b] = a;
    if (rank[a] == rank[b]) ++rank[a];
    for (auto& q : bags[b]) bags[a][q.first] += q.second;
    bags[b].clear();
  }
}
"""


def _compiled_malis():
  """ctypes `malis_weights` from `_MALIS_CPP`, or None without a C++ compiler."""
  compiler = shutil.which("g++")
  if compiler is None:
    return None
  folder = tempfile.mkdtemp(prefix="malis_")
  source, library = os.path.join(folder, "malis.cpp"), os.path.join(folder, "malis.so")
  with open(source, "w") as f:
    f.write(_MALIS_CPP)
  subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", library, source], check=True)
  lib = ctypes.CDLL(library)

  def weights(seg, node1, node2, cost, pos):
    out = np.zeros(len(cost), np.int32)
    ptr = lambda a, t: a.ctypes.data_as(ctypes.POINTER(t))
    lib.malis_weights(len(seg), ptr(seg, ctypes.c_uint64), len(cost),
                      ptr(node1, ctypes.c_uint64), ptr(node2, ctypes.c_uint64),
                      ptr(cost, ctypes.c_float), pos, ptr(out, ctypes.c_int))
    return out
  return weights


def _python_malis(seg, node1, node2, cost, pos):
  parent = list(range(len(seg)))
  bags = [{int(s): 1} if s else {} for s in seg]

  def find(x):
    while parent[x] != x:
      parent[x] = parent[parent[x]]
      x = parent[x]
    return x
  out = np.zeros(len(cost), np.int32)
  for e in np.argsort(-cost, kind="stable"):
    a, b = find(int(node1[e])), find(int(node2[e]))
    if a == b:
      continue
    out[e] = sum(na * nb for la, na in bags[a].items() for lb, nb in bags[b].items()
                 if (la == lb) == bool(pos))
    for lb, nb in bags[b].items():
      bags[a][lb] = bags[a].get(lb, 0) + nb
    bags[b], parent[b] = {}, a
  return out


def reference_loss_and_grad(pred, target, malis, *, positive_pass=True, alpha=1e-3, window=64,
                            dmax=20.0, dmin=10.0, lr=1.0, lr_pos=0.1):
  """TopoMortar's MSETopoWinLoss on `[B, H, W]` (ReLU'd) predictions: losses and gradient."""
  batch, h, w = pred.shape
  nodes = np.arange(window * window).reshape(window, window)
  node1 = np.uint64(np.concatenate([nodes[:, :-1].ravel(), nodes[:-1].ravel()]))
  node2 = np.uint64(np.concatenate([nodes[:, 1:].ravel(), nodes[1:].ravel()]))
  regress = np.stack([np.minimum(ndimage.distance_transform_edt(t), dmax) for t in target])
  weights_n, weights_p = np.zeros(pred.shape), np.zeros(pred.shape)
  half = window * (window - 1)
  for k in range(h // window):
    for j in range(w // window):
      for b in range(batch):
        sl = (b, slice(k * window, (k + 1) * window), slice(j * window, (j + 1) * window))
        p, t = pred[sl], target[sl]
        cost = np.float32(np.concatenate([(p[:, :-1] + p[:, 1:]).ravel(),
                                          (p[:-1] + p[1:]).ravel()]))
        gcost = np.float32(np.concatenate([(t[:, :-1] + t[:, 1:]).ravel(),
                                           (t[:-1] + t[1:]).ravel()]))
        cost_n, cost_p = cost.copy(), cost.copy()
        cost_n[gcost > dmax] = dmax
        cost_p[gcost < dmin] = 0
        gcost[gcost > dmax] = dmax
        seg = ndimage.label(ndimage.binary_dilation(t == 0, iterations=5) == 0)[0]
        seg = seg.astype(np.uint64).ravel()
        passes = [(weights_n, malis(seg, node1, node2, cost_n, 0), gcost >= dmin)]
        if positive_pass:
          passes.append((weights_p, malis(seg, node1, node2, cost_p, 1), gcost < dmax))
        for weights, edge_w, drop in passes:
          edge_w = edge_w / max(edge_w.sum(), 1)
          edge_w[drop] = 0
          horizontal = edge_w[:half].reshape(window, window - 1)
          vertical = edge_w[half:].reshape(window - 1, window)
          node = np.zeros((window, window), np.float32)
          node[:, :-1] += horizontal
          node[:, 1:] += horizontal
          node[:-1] += vertical
          node[1:] += vertical
          weights[sl] = node
  loss = (alpha * (pred - regress) ** 2 + lr * weights_n * pred ** 2
          + lr_pos * weights_p * (dmax - pred) ** 2).sum(axis=(1, 2))
  grad = (2 * alpha * (pred - regress) + 2 * lr * weights_n * pred
          - 2 * lr_pos * weights_p * (dmax - pred))
  return loss, grad


def per_image(t: Timing, batch: int) -> Timing:
  return dataclasses.replace(t, median_s=t.median_s / batch, min_s=t.min_s / batch,
                             max_s=t.max_s / batch)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--size", type=int, default=512)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--runs", type=int, default=5)
  args = parser.parse_args()

  config = BrickWallConfig().resized(args.size, args.size)
  _, labels = brick_walls(args.batch, seed=0, config=config)
  rng = np.random.default_rng(0)
  edt = np.stack([np.minimum(ndimage.distance_transform_edt(t), 20.0) for t in labels])
  pred = np.maximum(edt + rng.normal(0.0, 2.0, edt.shape), 0.0).astype(np.float32)

  malis = _compiled_malis()
  anchor_name = "C++ (g++ -O2)" if malis is not None else "pure Python"
  malis = malis or _python_malis

  step = jax.jit(jax.value_and_grad(lambda y, t: topo_malis(y, t).sum()))
  one_pred, one_label = jax.device_put(pred[:1]), jax.device_put(labels[:1])
  all_pred, all_label = jax.device_put(pred), jax.device_put(labels)

  # Same loss and gradient as the reference before timing.
  ref_loss, ref_grad = reference_loss_and_grad(pred, labels, malis)
  loss, grad = step(all_pred, all_label)
  np.testing.assert_allclose(float(loss), ref_loss.sum(), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-3, atol=1e-6)

  ours = time_fn("topojax topo_malis value_and_grad (jit, 1 image)",
                 lambda: step(one_pred, one_label), runs=args.runs)
  anchors = [
      per_image(time_fn(f"topojax, batch of {args.batch} in one call",
                        lambda: step(all_pred, all_label), runs=args.runs), args.batch),
      time_fn(f"TopoMortar recipe, NumPy/SciPy + {anchor_name} MALIS",
              lambda: reference_loss_and_grad(pred[:1], labels[:1], malis),
              warmup=1, runs=args.runs),
      time_fn("  same, without the (zero) positive pass",
              lambda: reference_loss_and_grad(pred[:1], labels[:1], malis, positive_pass=False),
              warmup=1, runs=args.runs),
  ]
  report(f"TOPO loss forward + backward per {args.size}² image (window 64, D 20, Dmin 10; "
         f"brick-wall labels, {100 * labels.mean():.0f} % mortar)", ours, anchors)


if __name__ == "__main__":
  main()
