"""Differentiable ECT (DECT, scale 200) of batched graphs: topojax vs the dense formula.

Run: `python -m benchmarks.ect_dect [--quick] [--runs 5]`.
The case: `--batch` 16 graphs x `--nodes` 1000 points (uniform in the unit
ball of R^3) x `--edges` 3000 random edges (seed 0), 64 directions x 64
thresholds `linspace(-1.1, 1.1, 64)`, sigmoid scale 200, float32. Forward +
backward is the gradient of `sum(ect * W)` (W fixed random weights) with
respect to the points and the directions.

* torch dense: the DECT formula as the `dect` package evaluates it — per cell
  type a `[T, N_k, D]` sigmoid tensor, summed per graph with `index_add`
  (vertices +1, edges -1, an edge's height the max of its two vertices), on
  a ragged batch (x `[B*N, 3]`, edge_index into it, a batch index per vertex);
* jnp dense, jit: the same formula in jnp (`accumulate_reference`: the
  `[M, D, T]` sigmoids reduced per graph), differentiated by JAX autodiff;
* topojax: `topojax.ect.ect(x [B, N, 3], edges [B, E, 2], scale=200)`, banded
  (the default impl), under `jax.jit`; forward + backward via `jax.grad`;
* topojax exact: the same with `scale=None` (forward only; it has no gradient
  in the points).

Each group (forward; forward + backward) is timed in turn within every run.

Memory: every method also runs once in a fresh subprocess, which reports its
peak resident set after warm-up (VmHWM, reset through /proc/self/clear_refs
after one untimed call, so compilation and imports are not counted) minus its
resident set before the measured call; for the JAX methods the compiled
executable's memory analysis (temporaries + arguments + outputs) as well.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._harness import machine_line, report, time_interleaved
from topojax import ect as tect
from topojax.kernels import ect_accumulate as acc

SCALE = 200.0
RADIUS = 1.1

METHODS = ("torch_fwd", "torch_fwd_bwd", "jnp_fwd", "jnp_fwd_bwd", "topojax_fwd",
           "topojax_fwd_bwd", "topojax_exact_fwd")


@dataclasses.dataclass(frozen=True)
class Case:
  batch: int
  nodes: int
  edges: int
  directions: int
  thresholds: int


def make_case(case: Case, seed: int = 0):
  """Points in the unit ball, random edges (no self-loops), directions, weights."""
  rng = np.random.default_rng(seed)
  g = rng.standard_normal((case.batch, case.nodes, 3))
  r = rng.random((case.batch, case.nodes, 1)) ** (1 / 3)
  x = (g / np.linalg.norm(g, axis=-1, keepdims=True) * r).astype(np.float32)
  a = rng.integers(0, case.nodes, (case.batch, case.edges))
  b = (a + rng.integers(1, case.nodes, (case.batch, case.edges))) % case.nodes
  edges = np.stack([a, b], axis=-1).astype(np.int32)
  v = rng.standard_normal((case.directions, 3))
  v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
  t = np.linspace(-RADIUS, RADIUS, case.thresholds).astype(np.float32)
  w = rng.standard_normal((case.batch, case.directions, case.thresholds)).astype(np.float32)
  return x, edges, v, t, w


# ------------------------------------------------------------------ torch (dect's formula)


def torch_dect(x, index, edge_index, v, lin, num_graphs):
  """dect's `compute_ect(x, edge_index, ...)` with the sigmoid: `[B, D, T]`.

  x `[P, 3]`, index `[P]` (graph of each vertex), edge_index `[2, E]` (global
  vertex ids), v `[3, D]` (dect's layout), lin `[T]`.
  """
  import torch
  nh = x @ v  # [P, D]
  eh = nh[edge_index].max(dim=0)[0]  # [E, D]
  edge_batch = index[edge_index[0]]
  ect = torch.zeros(len(lin), num_graphs, v.shape[1])
  ect = ect.index_add(1, index, torch.sigmoid(SCALE * (lin[:, None, None] - nh)))
  ect = ect.index_add(1, edge_batch, -torch.sigmoid(SCALE * (lin[:, None, None] - eh)))
  return ect.movedim(0, -1)  # [T, B, D] -> [B, D, T]


def torch_inputs(x, edges, v, t, w):
  import torch
  b, n, _ = x.shape
  xt = torch.from_numpy(x.reshape(b * n, 3).copy())
  index = torch.arange(b).repeat_interleave(n)
  edge_index = torch.from_numpy((edges + (np.arange(b) * n)[:, None, None]).reshape(-1, 2).T.copy())
  edge_index = edge_index.long()
  return (xt, index, edge_index, torch.from_numpy(v.T.copy()), torch.from_numpy(t),
          torch.from_numpy(w), b)


def torch_fns(x, edges, v, t, w):
  import torch
  xt, index, edge_index, vt, lin, wt, b = torch_inputs(x, edges, v, t, w)

  def fwd():
    with torch.no_grad():
      return torch_dect(xt, index, edge_index, vt, lin, b)

  def fwd_bwd():
    xg = xt.clone().requires_grad_(True)
    vg = vt.clone().requires_grad_(True)
    loss = (torch_dect(xg, index, edge_index, vg, lin, b) * wt).sum()
    gx, gv = torch.autograd.grad(loss, (xg, vg))
    return gx.reshape(b, -1, 3), gv.T

  return fwd, fwd_bwd


# ------------------------------------------------------------------ jax


def jnp_dense(x, edges, v, t):
  """The dense formula in jnp on the padded batch: `[B, D, T]` (autodiff-able)."""
  b, n, _ = x.shape
  h = jnp.einsum("bnk,dk->bnd", x, v, precision=jax.lax.Precision.HIGHEST)
  eh = jnp.max(jax.vmap(lambda hh, e: hh[e])(h, edges), axis=2)  # [B, E, D]
  heights = jnp.concatenate([h.reshape(b * n, -1), eh.reshape(-1, eh.shape[-1])])
  weights = jnp.concatenate([jnp.ones((b * n,)), -jnp.ones((eh.shape[0] * eh.shape[1],))])
  segments = jnp.concatenate([jnp.repeat(jnp.arange(b), n), jnp.repeat(jnp.arange(b), edges.shape[1])])
  return acc.accumulate_reference(heights, weights, segments, t, SCALE, num_segments=b)


def jax_fns(x, edges, v, t, w):
  width = tect.band_width(t, SCALE)
  tj = jnp.asarray(t)

  def ours(x, edges, v, scale=SCALE):
    return tect.ect(x, edges, directions=v, thresholds=tj, scale=scale, band_width=width)

  dense = lambda x, edges, v: jnp_dense(x, edges, v, tj)
  loss = lambda f: (lambda x, edges, v, w: jnp.sum(f(x, edges, v) * w))
  args = tuple(jax.device_put(a) for a in (x, edges, v, w))
  jitted = {
      "jnp_fwd": jax.jit(dense),
      "jnp_fwd_bwd": jax.jit(jax.grad(loss(dense), argnums=(0, 2))),
      "topojax_fwd": jax.jit(ours),
      "topojax_fwd_bwd": jax.jit(jax.grad(loss(ours), argnums=(0, 2))),
      "topojax_exact_fwd": jax.jit(lambda x, edges, v: ours(x, edges, v, None)),
  }
  calls = {k: (lambda f=f, k=k: f(*(args if k.endswith("bwd") else args[:3])))
           for k, f in jitted.items()}
  return jitted, args, calls, width


def memory_analysis_mib(fn, *args) -> float:
  m = fn.lower(*args).compile().memory_analysis()
  return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**20


# ------------------------------------------------------------------ memory in a subprocess


def _status_kib(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(field)


def measure_memory(method: str, case: Case) -> None:
  """Run in a fresh process: peak RSS of one call after warm-up, minus RSS before it."""
  x, edges, v, t, w = make_case(case)
  if method.startswith("torch"):
    fwd, fwd_bwd = torch_fns(x, edges, v, t, w)
    fn = fwd_bwd if method.endswith("bwd") else fwd
    block = lambda r: r
  else:
    _, _, calls, _ = jax_fns(x, edges, v, t, w)
    fn = calls[method]
    block = lambda r: jax.block_until_ready(r)
  base0 = _status_kib("VmRSS")
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS
  out = block(fn())  # warm-up: compilation, allocator pools
  first = _status_kib("VmHWM") - base0
  del out
  base = _status_kib("VmRSS")
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
  block(fn())  # the measured call
  peak = _status_kib("VmHWM")
  print(json.dumps({"method": method, "peak_delta_mib": (peak - base) / 1024,
                    "first_call_delta_mib": first / 1024}))


def memory_in_subprocess(method: str, case: Case) -> float:
  cmd = [sys.executable, "-m", "benchmarks.ect_dect", "--memory", method,
         *map(str, ["--batch", case.batch, "--nodes", case.nodes, "--edges", case.edges,
                    "--directions", case.directions, "--thresholds", case.thresholds])]
  res = subprocess.run(cmd, capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = json.loads(res.stdout.strip().splitlines()[-1])
  return out["peak_delta_mib"], out["first_call_delta_mib"]


# ------------------------------------------------------------------ main


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true", help="small sizes (2 x 200 x 600, 16 x 16)")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--nodes", type=int, default=1000)
  parser.add_argument("--edges", type=int, default=3000)
  parser.add_argument("--directions", type=int, default=64)
  parser.add_argument("--thresholds", type=int, default=64)
  parser.add_argument("--runs", type=int, default=5)
  parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory runs")
  parser.add_argument("--memory", choices=METHODS, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.quick:
    args.batch, args.nodes, args.edges, args.directions, args.thresholds = 2, 200, 600, 16, 16
  case = Case(args.batch, args.nodes, args.edges, args.directions, args.thresholds)
  if args.memory:
    measure_memory(args.memory, case)
    return

  import torch
  x, edges, v, t, w = make_case(case)
  torch_fwd, torch_fwd_bwd = torch_fns(x, edges, v, t, w)
  jitted, jargs, calls, width = jax_fns(x, edges, v, t, w)

  # Same values (and gradients) from all before timing.
  ours = np.asarray(calls["topojax_fwd"]())
  dense = np.asarray(calls["jnp_fwd"]())
  ref = torch_fwd().numpy()
  exact = np.asarray(calls["topojax_exact_fwd"]())
  gx_o, gv_o = (np.asarray(a) for a in calls["topojax_fwd_bwd"]())
  gx_d, gv_d = (np.asarray(a) for a in calls["jnp_fwd_bwd"]())
  gx_t, gv_t = (a.numpy() for a in torch_fwd_bwd())
  print(f"band width {width} of {case.thresholds} thresholds; |curve| up to "
        f"{np.abs(ref).max():.0f}")
  print(f"max |banded - jnp dense| {np.abs(ours - dense).max():.2e}, "
        f"max |banded - torch dense| {np.abs(ours - ref).max():.2e}, "
        f"max |exact - banded| {np.abs(exact - ours).max():.2f} (ties at 0.5, smooth near h)")
  for name, (a, b) in {"d/dx": (gx_o, gx_t), "d/dv": (gv_o, gv_t)}.items():
    print(f"{name}: max |banded - torch| {np.abs(a - b).max():.2e} "
          f"(max |torch| {np.abs(b).max():.2e}); max |banded - jnp dense| "
          f"{np.abs(a - (gx_d if name == 'd/dx' else gv_d)).max():.2e}")

  # Float64 dense formula on graph 0: which float32 result is closer.
  x0, e0 = x[0].astype(np.float64), edges[0]
  h0 = x0 @ v.astype(np.float64).T
  cells_h = np.concatenate([h0, np.maximum(h0[e0[:, 0]], h0[e0[:, 1]])])
  sign = np.concatenate([np.ones(len(h0)), -np.ones(len(e0))])
  f64 = np.einsum("m,mdt->dt", sign,
                  1 / (1 + np.exp(-SCALE * (t.astype(np.float64) - cells_h[:, :, None]))))
  print(f"graph 0 vs float64 dense: max |banded - f64| {np.abs(ours[0] - f64).max():.2e}, "
        f"max |torch - f64| {np.abs(ref[0] - f64).max():.2e}, "
        f"max |jnp dense - f64| {np.abs(dense[0] - f64).max():.2e}")

  # Each group timed in turn within every run (the machine's speed drifts).
  names = {
      "topojax_fwd": "topojax ect, banded (jit)",
      "topojax_exact_fwd": "topojax ect, exact scale=None (jit)",
      "jnp_fwd": "jnp dense formula (jit)",
      "torch_fwd": "torch dense (dect formula, no_grad)",
      "topojax_fwd_bwd": "topojax ect, banded (jit grad)",
      "jnp_fwd_bwd": "jnp dense formula (jit grad)",
      "torch_fwd_bwd": "torch dense (dect formula, autograd)",
  }
  fns = dict(calls, torch_fwd=torch_fwd, torch_fwd_bwd=torch_fwd_bwd)
  tm = {}
  for group in ([m for m in names if not m.endswith("bwd")], [m for m in names if m.endswith("bwd")]):
    timings = time_interleaved({names[m]: fns[m] for m in group}, warmup=1, runs=args.runs)
    tm.update(zip(group, timings))
  title = (f"DECT of {case.batch} graphs x {case.nodes} nodes x {case.edges} edges in R^3, "
           f"D={case.directions}, T={case.thresholds}, scale {SCALE:g}, float32; torch "
           f"{torch.__version__} ({torch.get_num_threads()} threads)")
  report(title + " — forward", tm["topojax_fwd"],
         [tm["topojax_exact_fwd"], tm["jnp_fwd"], tm["torch_fwd"]])
  report(title + " — forward + backward (d/dx, d/dv)", tm["topojax_fwd_bwd"],
         [tm["jnp_fwd_bwd"], tm["torch_fwd_bwd"]])

  ma = {k: memory_analysis_mib(f, *(jargs if k.endswith("bwd") else jargs[:3]))
        for k, f in jitted.items()}
  rss = {} if args.no_memory else {m: memory_in_subprocess(m, case) for m in METHODS}
  print(f"\nMemory ({machine_line()})")
  print("peak RSS delta: a fresh process, one call after warm-up (XLA keeps its buffers "
        "between calls, so this undercounts JAX);\nfirst call: the same for the first call "
        "(for JAX it includes compilation); XLA: compiled memory analysis.")
  print(f"{'method':<22} {'median ms':>10} {'peak RSS delta MiB':>19} {'first call MiB':>15} "
        f"{'XLA temp+arg+out MiB':>21}")
  for m in METHODS:
    r = f"{rss[m][0]:.1f}" if m in rss else "-"
    r1 = f"{rss[m][1]:.1f}" if m in rss else "-"
    a = f"{ma[m]:.1f}" if m in ma else "-"
    print(f"{m:<22} {1e3 * tm[m].median_s:>10.2f} {r:>19} {r1:>15} {a:>21}")

  def ratio(num, den, target, what):
    value = num / den
    verdict = "" if target is None else (
        f"  (target >= {target}x: {'met' if value >= target else 'MISSED'})")
    print(f"{what:<42} {value:>9.1f}x{verdict}")

  print()
  ratio(tm["torch_fwd"].median_s, tm["topojax_fwd"].median_s, None, "time torch dense / topojax, fwd")
  ratio(tm["torch_fwd_bwd"].median_s, tm["topojax_fwd_bwd"].median_s, 100,
        "time torch dense / topojax, fwd+bwd")
  ratio(tm["jnp_fwd"].median_s, tm["topojax_fwd"].median_s, None, "time jnp dense jit / topojax, fwd")
  ratio(tm["jnp_fwd_bwd"].median_s, tm["topojax_fwd_bwd"].median_s, 5,
        "time jnp dense jit / topojax, fwd+bwd")
  if rss:  # torch: its peak RSS delta; topojax: XLA's analysis (its RSS delta is ~0)
    ratio(rss["torch_fwd"][0], ma["topojax_fwd"], None, "memory torch RSS / topojax XLA, fwd")
    ratio(rss["torch_fwd_bwd"][0], ma["topojax_fwd_bwd"], 10,
          "memory torch RSS / topojax XLA, fwd+bwd")
    ratio(rss["torch_fwd_bwd"][0], max(ma["topojax_fwd_bwd"], rss["topojax_fwd_bwd"][1]), None,
          "same, topojax first-call RSS if larger")
  ratio(ma["jnp_fwd_bwd"], ma["topojax_fwd_bwd"], 10, "XLA memory jnp dense / topojax, fwd+bwd")


if __name__ == "__main__":
  main()
