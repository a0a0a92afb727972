"""skeletonize forward + backward: topojax (jit) vs scikit-image's `skeletonize`.

Run: `python -m benchmarks.skeleton_skeletonize [--runs 5]`.

Cases: a synthetic 512x512 vessel tree (DRIVE-like: ~10 % foreground, widths
1-6 px) and a 48^3 volume of random tubes (VesSAP-like). topojax runs the
gradient of `sum(skeletonize(p) * w)` for a probability map `p` (deterministic
binarisation, to convergence and with `num_iter` 5 and 10); scikit-image runs
its non-differentiable forward (Zhang in 2D, Lee in 3D), the speed anchor.
Memory: topojax's compiled peak temporary buffers (XLA's memory analysis) plus
its arguments and outputs; scikit-image's peak traced allocation (tracemalloc).
"""

from __future__ import annotations

import argparse
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from benchmarks._harness import report, time_fn
from topojax.skeleton import skeletonize


def vessel_tree(size: int, seed: int = 0) -> np.ndarray:
  """Random branching curves, thickened with a width that falls along each branch."""
  rng = np.random.default_rng(seed)
  mask = np.zeros((size, size), bool)
  yy, xx = np.mgrid[:size, :size]
  for _ in range(12):
    p = rng.uniform(0.1, 0.9, 2) * size
    angle = rng.uniform(0, 2 * np.pi)
    width = rng.uniform(3.0, 6.0)
    for _ in range(int(size * 0.8)):
      angle += rng.normal(0, 0.08)
      p = np.clip(p + np.array([np.sin(angle), np.cos(angle)]), 0, size - 1)
      width = max(1.0, width * 0.997)
      r = int(np.ceil(width))
      y0, x0 = int(p[0]), int(p[1])
      sl = (slice(max(y0 - r, 0), y0 + r + 1), slice(max(x0 - r, 0), x0 + r + 1))
      mask[sl] |= (yy[sl] - p[0]) ** 2 + (xx[sl] - p[1]) ** 2 <= (width / 2) ** 2
  return mask


def tube_volume(size: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  noise = ndimage.gaussian_filter(rng.normal(size=(size,) * 3), 3.0)
  return np.abs(noise) < 0.12 * noise.std()


def soft(mask: np.ndarray, seed: int = 0) -> np.ndarray:
  """A probability map thresholding to `mask` (noise kept on the right side of 0.5)."""
  rng = np.random.default_rng(seed)
  return np.where(mask, rng.uniform(0.55, 1.0, mask.shape), rng.uniform(0.0, 0.45, mask.shape)
                  ).astype(np.float32)


def peak_memory_mb(fn, *args) -> float:
  compiled = jax.jit(fn).lower(*args).compile()
  m = compiled.memory_analysis()
  total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
  return total / 2 ** 20


def skimage_peak_mb(fn, x) -> float:
  tracemalloc.start()
  fn(x)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  return peak / 2 ** 20


def run_case(name: str, mask: np.ndarray, ndim: int, runs: int) -> None:
  from skimage.morphology import skeletonize as sk_skeletonize

  p = jnp.asarray(soft(mask))
  weights = jnp.asarray(np.random.default_rng(1).normal(size=mask.shape).astype(np.float32))
  timings, memory = [], []
  for num_iter in (None, 5, 10):
    def loss(p, num_iter=num_iter):
      return jnp.sum(skeletonize(p, ndim=ndim, num_iter=num_iter) * weights)
    step = jax.jit(jax.value_and_grad(loss))
    label = "to convergence" if num_iter is None else f"num_iter {num_iter}"
    timings.append(time_fn(f"topojax skeletonize fwd+bwd ({label})", lambda: step(p), runs=runs))
    memory.append((label, peak_memory_mb(jax.value_and_grad(loss), p)))
  method = "zhang" if ndim == 2 else "lee"
  anchor = time_fn(f"skimage skeletonize fwd ({method})", lambda: sk_skeletonize(mask, method=method),
                   runs=runs)
  skel = np.asarray(skeletonize(p, ndim=ndim)) > 0.5
  report(f"{name}: {mask.shape}, {mask.sum()} foreground, skeleton {skel.sum()} "
         f"(skimage {sk_skeletonize(mask, method=method).sum()})", timings[0], [*timings[1:], anchor])
  for label, mb in memory:
    print(f"  topojax peak memory ({label}): {mb:.1f} MiB")
  print(f"  skimage peak traced memory: {skimage_peak_mb(lambda m: sk_skeletonize(m, method=method), mask):.1f} MiB")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--runs", type=int, default=5)
  parser.add_argument("--size2d", type=int, default=512)
  parser.add_argument("--size3d", type=int, default=48)
  args = parser.parse_args()
  run_case("2D vessel tree", vessel_tree(args.size2d), 2, args.runs)
  run_case("3D tubes", tube_volume(args.size3d), 3, args.runs)


if __name__ == "__main__":
  main()
