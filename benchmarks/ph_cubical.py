"""Cubical persistence of image batches: topojax vs cripser and GUDHI, same inputs.

Run: `python -m benchmarks.ph_cubical [--cases ... --batch 16 --batch3d 4 --runs 5]`,
`python -m benchmarks.ph_cubical --quick` (a smoke run), or
`python -m benchmarks.ph_cubical --memory` (memory check only, in its own process,
because peak RSS is a process-wide high-water mark).

Inputs (float32, one seed per case): "smoothed probability maps" (standard
normal noise, `scipy.ndimage.gaussian_filter(sigma)`, standardized per image,
then `sigmoid(3 x)`) and uniform noise in [0, 1), 256x256 and 512x512 images
and 64^3 volumes. Every row times the whole batch (median of the runs after a
warm-up; topojax's trace + compile is timed once, apart) and divides it by the
batch size for the per-image figure; the ratio is anchor / topojax (> 1: topojax
is faster).

* topojax: `jax.jit(jax.vmap(partial(cubical_persistence, construction=c,
  dims=(0, d-1))))`, compiled ahead of time, on a device-resident batch
  (the vmap runs the batched algorithm, see `topojax/ph/_cubical.py`); and
  the same function without vmap on image 0 alone (`--no_single` skips it;
  at most 3 runs), to show what batching buys per image.
* cripser: `compute_ph(x.astype(np.float64), filtration=c, maxdim=d-1)` in a
  Python loop (its default `n_threads=1`), and the same loop spread over the
  cores with a thread pool (cripser releases the GIL). In 3D, `maxdim=2` also
  computes dim 1 (filtered away afterwards); `top_dim=True` computes ONLY the
  top dimension d-1 (by Alexander duality, per cripser's binding: the output
  holds dim 2 pairs only, whatever `maxdim`), so the cripser run with the same
  output as topojax's dims (0, 2) is `maxdim=0` plus `top_dim=True`: two calls.
* GUDHI: `CubicalComplex(vertices=x)` (V; `top_dimensional_cells=x` for T),
  `compute_persistence()`, then `vertices_of_persistence_pairs()` (T:
  `cofaces_of_persistence_pairs()`) for the critical cells, as a
  differentiable-PH user would. GUDHI computes every dimension (dim 1 in 3D too).

Timed runs: `--runs` (default 5) for 256x256, `--large_runs` (default 3) for
512x512 and 64^3, after `--warmup` (default 1) untimed calls. `--memory` runs a
1024x1024 image and a 128^3 volume (smoothed maps by default; `--memory_input
noise` is far slower) through `jax.jit(cubical_persistence)` and prints the
peak process RSS (`resource.getrusage`) and XLA's `memory_analysis()`.

Before timing, each case checks image 0 of topojax's batched output against
cripser and GUDHI: the finite pairs as multisets of (dim, birth, death) and the
essential class, printing OK or MISMATCH.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import os
import resource
import statistics
import time

import jax
import numpy as np

from benchmarks._harness import Timing, machine_line, time_fn
from topojax.ph import cubical_persistence


@dataclasses.dataclass(frozen=True)
class Case:
  kind: str  # "smooth" or "noise"
  size: int
  ndim: int
  sigma: float = 0.0

  @property
  def shape(self) -> tuple[int, ...]:
    return (self.size,) * self.ndim

  @property
  def label(self) -> str:
    shape = "x".join(map(str, self.shape))
    if self.kind == "smooth":
      return f"smoothed probability maps sigma={self.sigma:g}, {shape}"
    return f"uniform noise, {shape}"

  @property
  def large(self) -> bool:
    return self.size >= 512 or self.ndim == 3


CASES = {
    "smooth256_s2": Case("smooth", 256, 2, 2.0),
    "smooth256_s4": Case("smooth", 256, 2, 4.0),
    "noise256": Case("noise", 256, 2),
    "smooth512_s2": Case("smooth", 512, 2, 2.0),
    "noise512": Case("noise", 512, 2),
    "smooth64cube_s2": Case("smooth", 64, 3, 2.0),
    "noise64cube": Case("noise", 64, 3),
}
QUICK_CASES = ("smooth256_s2", "noise256", "smooth64cube_s2")


def make_batch(case: Case, batch: int, seed: int) -> np.ndarray:
  """`batch` float32 images of `case`, reproducible from `seed`."""
  from scipy.ndimage import gaussian_filter  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  if case.kind == "noise":
    return rng.random((batch, *case.shape), dtype=np.float32)
  x = rng.standard_normal((batch, *case.shape))
  x = np.stack([gaussian_filter(image, case.sigma) for image in x])
  axes = tuple(range(1, x.ndim))
  x = (x - x.mean(axes, keepdims=True)) / x.std(axes, keepdims=True)
  return (1 / (1 + np.exp(-3 * x))).astype(np.float32)


# --- anchors ------------------------------------------------------------------

def cripser_rows(image: np.ndarray, construction: str, mode: str) -> np.ndarray:
  """cripser's table for one image. mode "full": maxdim=d-1 (in 3D filtered to
  dims 0 and 2 afterwards); "top": maxdim=0 plus top_dim=True (dims 0 and d-1)."""
  import cripser  # pylint: disable=import-outside-toplevel
  x = image.astype(np.float64)
  d = image.ndim
  if mode == "full":
    rows = cripser.compute_ph(x, filtration=construction, maxdim=d - 1)
    return rows[(rows[:, 0] == 0) | (rows[:, 0] == d - 1)] if d == 3 else rows
  h0 = cripser.compute_ph(x, filtration=construction, maxdim=0)
  top = cripser.compute_ph(x, filtration=construction, maxdim=d - 1, top_dim=True)
  return np.concatenate([h0, top])


def gudhi_complex(image: np.ndarray, construction: str):
  """GUDHI's persistence of one image, with the critical cells as a user gets them."""
  import gudhi  # pylint: disable=import-outside-toplevel
  if construction == "V":
    complex_ = gudhi.CubicalComplex(vertices=image)
    complex_.compute_persistence()
    return complex_, complex_.vertices_of_persistence_pairs()
  complex_ = gudhi.CubicalComplex(top_dimensional_cells=image)
  complex_.compute_persistence()
  return complex_, complex_.cofaces_of_persistence_pairs()


def loop(fn, images):
  return lambda: [fn(image) for image in images]


def threaded(fn, images, pool):
  return lambda: list(pool.map(fn, images))


# --- exactness check ----------------------------------------------------------

def _multiset(rows: np.ndarray) -> np.ndarray:
  """(dim, birth, death) rows sorted, for exact comparison as multisets."""
  rows = np.asarray(rows, np.float64)[:, :3]
  return rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]


def _compare(ours: np.ndarray, theirs: np.ndarray) -> str:
  ours, theirs = _multiset(ours), _multiset(theirs)
  fin_o, fin_t = np.isfinite(ours[:, 2]), np.isfinite(theirs[:, 2])
  finite = ours[fin_o].shape == theirs[fin_t].shape and np.array_equal(ours[fin_o], theirs[fin_t])
  essential = np.array_equal(ours[~fin_o], theirs[~fin_t])
  if finite and essential:
    return "OK"
  return (f"MISMATCH (finite pairs {'equal' if finite else 'differ'}: {int(fin_o.sum())} vs "
          f"{int(fin_t.sum())}; essential {'equal' if essential else 'differ'})")


def check(diagram, image: np.ndarray, construction: str, dims, with_gudhi: bool) -> None:
  """Image 0 of the batched topojax output vs cripser (and GUDHI), printed."""
  ours = diagram.to_numpy()
  counts = ", ".join(f"dim {d}: {int(np.sum((ours[:, 0] == d) & np.isfinite(ours[:, 2])))}"
                     for d in dims)
  full = cripser_rows(image, construction, "full")
  results = [f"cripser maxdim={image.ndim - 1}: {_compare(ours, full)}"]
  if image.ndim == 3:
    results.append(f"cripser maxdim=0 + top_dim: "
                   f"{_compare(ours, cripser_rows(image, construction, 'top'))}")
  if with_gudhi:
    complex_, _ = gudhi_complex(image, construction)
    rows = [(d, b, e) for d in dims for b, e in complex_.persistence_intervals_in_dimension(d)]
    results.append(f"gudhi: {_compare(ours, np.array(rows))}")
  print(f"check image 0 (finite pairs {counts}; overflow {bool(diagram.overflow)}): "
        + "; ".join(results))


# --- timing -------------------------------------------------------------------

def print_table(title: str, batch: int, compile_s: float, ours: Timing,
                rows: list[tuple[Timing, int]]) -> None:
  """`rows`: (timing, images per call); the ratio compares per-image medians."""
  print(f"\n{title}\n{machine_line()}")
  print(f"topojax trace + compile (excluded below): {compile_s:.2f} s; "
        f"1-min load average now {os.getloadavg()[0]:.2f}")
  print(f"{'implementation':<62} {'call ms':>10} {'min ms':>9} {'max ms':>9} "
        f"{'ms/image':>9} {'anchor/topojax':>15}")
  per_image = ours.median_s / batch
  for t, images in [(ours, batch), *rows]:
    name = t.name if images == batch else f"{t.name} [{images} image per call]"
    print(f"{name:<62} {1e3 * t.median_s:>10.1f} {1e3 * t.min_s:>9.1f} {1e3 * t.max_s:>9.1f} "
          f"{1e3 * t.median_s / images:>9.2f} {t.median_s / images / per_image:>14.2f}x")


def run_case(name: str, case: Case, construction: str, batch: int, runs: int, warmup: int,
             with_gudhi: bool, with_single: bool, pool, seed: int) -> None:
  images = make_batch(case, batch, seed)
  dims = (0, case.ndim - 1)
  fn = jax.jit(jax.vmap(functools.partial(cubical_persistence, construction=construction,
                                          dims=dims)))
  x = jax.device_put(images)
  start = time.perf_counter()
  compiled = fn.lower(x).compile()
  compile_s = time.perf_counter() - start

  title = (f"[{name}] {case.label}, batch {batch}, construction {construction}, "
           f"topojax dims {dims}, {runs} runs after {warmup} warm-up")
  print(f"\n== {title}", flush=True)
  diagrams = compiled(x)
  check(jax.tree.map(lambda a: a[0], diagrams), images[0], construction, dims, with_gudhi)

  ours = time_fn("topojax jit(vmap(cubical_persistence))", lambda: compiled(x),
                 warmup=warmup, runs=runs)
  anchors = []
  full = functools.partial(cripser_rows, construction=construction, mode="full")
  top = functools.partial(cripser_rows, construction=construction, mode="top")
  workers = pool._max_workers  # pylint: disable=protected-access
  if case.ndim == 2:
    anchors.append(time_fn("cripser compute_ph maxdim=1, loop", loop(full, images),
                           warmup=warmup, runs=runs))
    anchors.append(time_fn(f"cripser compute_ph maxdim=1, {workers} threads",
                           threaded(full, images, pool), warmup=warmup, runs=runs))
  else:
    anchors.append(time_fn("cripser maxdim=2 (dims 0,1,2), loop", loop(full, images),
                           warmup=warmup, runs=runs))
    anchors.append(time_fn(f"cripser maxdim=2 (dims 0,1,2), {workers} threads",
                           threaded(full, images, pool), warmup=warmup, runs=runs))
    anchors.append(time_fn("cripser maxdim=0 + top_dim=True (dims 0,2), loop",
                           loop(top, images), warmup=warmup, runs=runs))
    anchors.append(time_fn(f"cripser maxdim=0 + top_dim=True, {workers} threads",
                           threaded(top, images, pool), warmup=warmup, runs=runs))
  if with_gudhi:
    kind = "vertices" if construction == "V" else "top_dimensional_cells"
    gudhi_one = functools.partial(gudhi_complex, construction=construction)
    anchors.append(time_fn(f"gudhi CubicalComplex({kind}) + pairs, loop",
                           loop(gudhi_one, images), warmup=warmup, runs=runs))
  rows = [(t, batch) for t in anchors]
  if with_single:
    # The same function on one image, without vmap (a batch of one inside).
    single = jax.jit(functools.partial(cubical_persistence, construction=construction, dims=dims))
    one = jax.device_put(images[0])
    single = single.lower(one).compile()
    rows.insert(0, (time_fn("topojax jit(cubical_persistence), no vmap", lambda: single(one),
                            warmup=warmup, runs=min(runs, 3)), 1))
  print_table(title, batch, compile_s, ours, rows)


# --- memory -------------------------------------------------------------------

def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_section(kind: str, runs: int) -> None:
  """One 1024x1024 image and one 128^3 volume through `jax.jit(cubical_persistence)`.

  Buffers have static shapes (capacities depend on the shape only), so XLA's
  memory analysis holds for any input of that shape; `kind` picks the values
  timed (uniform noise, the most pairs, is much slower than smoothed maps).
  """
  print(f"\nMemory check: one image per call, jax.jit(cubical_persistence) (no vmap), "
        f"default capacities, {kind} input\n{machine_line()}")
  print(f"peak RSS after imports: {peak_rss_mib():.0f} MiB; "
        f"1-min load average {os.getloadavg()[0]:.2f}")
  for seed, (case, dims) in enumerate([(Case(kind, 1024, 2, 2.0), (0, 1)),
                                       (Case(kind, 128, 3, 2.0), (0, 2))]):
    image = make_batch(case, 1, seed)[0]
    x = jax.device_put(image)
    fn = jax.jit(functools.partial(cubical_persistence, dims=dims))
    start = time.perf_counter()
    compiled = fn.lower(x).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    diagram = jax.block_until_ready(compiled(x))
    first_s = time.perf_counter() - start
    samples = []
    for _ in range(runs):
      start = time.perf_counter()
      jax.block_until_ready(compiled(x))
      samples.append(time.perf_counter() - start)
    again = f", {runs} more: median {statistics.median(samples):.2f} s" if samples else ""
    print(f"\n{case.label}, dims {dims}: compile {compile_s:.2f} s, first call {first_s:.2f} s"
          f"{again}; capacity {diagram.capacity} slots, {int(diagram.num_pairs)} pairs, "
          f"overflow {bool(diagram.overflow)}; 1-min load average {os.getloadavg()[0]:.2f}")
    print(f"  peak process RSS so far: {peak_rss_mib():.0f} MiB")
    try:
      analysis, reason = compiled.memory_analysis(), "returned None"
    except Exception as error:  # pylint: disable=broad-exception-caught
      analysis, reason = None, repr(error)
    if analysis is None:
      print(f"  XLA memory_analysis: not available ({reason})")
    else:
      mib = lambda n: n / 2**20  # noqa: E731
      total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
               + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
      print(f"  XLA memory_analysis: arguments {mib(analysis.argument_size_in_bytes):.1f} MiB, "
            f"outputs {mib(analysis.output_size_in_bytes):.1f} MiB, "
            f"temporaries {mib(analysis.temp_size_in_bytes):.1f} MiB, "
            f"aliased {mib(analysis.alias_size_in_bytes):.1f} MiB, "
            f"generated code {mib(analysis.generated_code_size_in_bytes):.1f} MiB; "
            f"arguments + outputs + temporaries {mib(total):.1f} MiB")
    # Same pairs as cripser (its dims 0 and d-1 path), after the RSS figure.
    mode = "top" if image.ndim == 3 else "full"
    print(f"  check vs cripser: {_compare(diagram.to_numpy(), cripser_rows(image, 'V', mode))}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cases", nargs="+", choices=list(CASES), default=None,
                      help="default: all (with --quick: the quick ones)")
  parser.add_argument("--constructions", nargs="+", choices=("V", "T"), default=["V"])
  parser.add_argument("--batch", type=int, default=16, help="images per 2D batch")
  parser.add_argument("--batch3d", type=int, default=4, help="volumes per 3D batch")
  parser.add_argument("--runs", type=int, default=5, help="timed runs, 256x256 cases")
  parser.add_argument("--large_runs", type=int, default=3, help="timed runs, 512x512 and 3D")
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="thread pool size for the threaded cripser rows")
  parser.add_argument("--no_gudhi", action="store_true", help="skip the GUDHI rows")
  parser.add_argument("--no_single", action="store_true",
                      help="skip the topojax row on one image without vmap")
  parser.add_argument("--memory_input", choices=("smooth", "noise"), default="smooth",
                      help="--memory inputs: smoothed maps (sigma 2) or uniform noise (slow)")
  parser.add_argument("--quick", action="store_true",
                      help=f"smoke run: cases {', '.join(QUICK_CASES)}, batch 4 (3D: 2), 2 runs")
  parser.add_argument("--memory", action="store_true",
                      help="only the memory check: 1024x1024 and 128^3, peak RSS and XLA analysis")
  args = parser.parse_args()

  if args.memory:
    memory_section(args.memory_input, runs=0 if args.quick else 1)
    return
  if args.cases is None:
    args.cases = list(QUICK_CASES if args.quick else CASES)
  if args.quick:
    args.batch, args.batch3d, args.runs, args.large_runs = 4, 2, 2, 2

  import cripser  # pylint: disable=import-outside-toplevel
  import gudhi  # pylint: disable=import-outside-toplevel
  print(f"cripser {cripser.__version__}, gudhi {gudhi.__version__}, "
        f"XLA CPU threads: default; cripser n_threads=1 per call")
  with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as pool:
    for construction in args.constructions:
      for seed, name in enumerate(CASES):
        if name not in args.cases:
          continue
        case = CASES[name]
        run_case(name, case, construction,
                 batch=args.batch3d if case.ndim == 3 else args.batch,
                 runs=args.large_runs if case.large else args.runs, warmup=args.warmup,
                 with_gudhi=not args.no_gudhi, with_single=not args.no_single, pool=pool,
                 seed=seed)


if __name__ == "__main__":
  main()
