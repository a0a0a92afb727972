"""Timing helpers: warm-up, then the median of several runs, in one process.

Machines are noisy, so every benchmark prints the ratio of medians of topojax and
its anchor measured back to back, not absolute times alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
  name: str
  median_s: float
  min_s: float
  max_s: float
  runs: int


def _block(result):
  """Waits for JAX arrays (async dispatch); other results are already final."""
  jax.tree_util.tree_map(lambda x: x.block_until_ready() if isinstance(x, jax.Array) else x, result)


def time_fn(name: str, fn: Callable[[], object], *, warmup: int = 2, runs: int = 10) -> Timing:
  """Median wall time of `fn()` after `warmup` untimed calls (compilation included there)."""
  return time_interleaved({name: fn}, warmup=warmup, runs=runs)[0]


def time_interleaved(fns: dict[str, Callable[[], object]], *, warmup: int = 2,
                     runs: int = 10) -> list[Timing]:
  """Median wall times of several functions after `warmup` untimed calls,
  called in turn within each run: on a machine whose speed drifts (shared
  cores), every function sees the same drift, so their ratio is steadier
  than that of medians taken one after the other."""
  for _ in range(warmup):
    for fn in fns.values():
      _block(fn())
  samples = {name: [] for name in fns}
  for _ in range(runs):
    for name, fn in fns.items():
      start = time.perf_counter()
      _block(fn())
      samples[name].append(time.perf_counter() - start)
  return [Timing(name, statistics.median(s), min(s), max(s), runs) for name, s in samples.items()]


def machine_line() -> str:
  devices = jax.devices()
  return (f"{datetime.date.today().isoformat()} | {platform.machine()} {os.cpu_count()} cores | "
          f"jax {jax.__version__} on {devices[0].platform} x{len(devices)} ({devices[0].device_kind})")


def report(title: str, ours: Timing, anchors: list[Timing]) -> None:
  """Prints a small table: each timing and the anchor/topojax ratio (speed-up)."""
  print(f"\n{title}\n{machine_line()}")
  print(f"{'implementation':<48} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'speed-up':>9}")
  for t in [ours, *anchors]:
    ratio = t.median_s / ours.median_s
    print(f"{t.name:<48} {1e3 * t.median_s:>10.2f} {1e3 * t.min_s:>9.2f} {1e3 * t.max_s:>9.2f} {ratio:>8.2f}x")
