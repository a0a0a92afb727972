"""Rips H0 of random point clouds: topojax `rips_h0` vs giotto-ph and scipy's MST.

Run: `python -m benchmarks.ph_rips [--sizes 500 1000 2000 --dim 3 --batch 8 --runs 10]`.
All figures are per point cloud (N points, uniform in [0, 1]^dim, float32):

* topojax, one cloud: `jax.jit(lambda x: rips_h0(x).death)`;
* topojax, a batch of `--batch` clouds in one call (`rips_h0` maps over the
  leading axis with `vmap`), time divided by the batch size;
* giotto-ph: `gph.ripser_parallel(x, maxdim=0)` (its default `n_threads=1`);
* scipy: `cdist` + `minimum_spanning_tree`, the MST edge lengths (the H0 deaths).
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import numpy as np

from benchmarks._harness import Timing, report, time_fn
from topojax import ph


def per_cloud(t: Timing, batch: int) -> Timing:
  """A timing of a whole batch, expressed per cloud."""
  return dataclasses.replace(t, median_s=t.median_s / batch, min_s=t.min_s / batch,
                             max_s=t.max_s / batch)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
  parser.add_argument("--dim", type=int, default=3)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--runs", type=int, default=10)
  args = parser.parse_args()

  import gph
  import scipy
  from scipy.sparse.csgraph import minimum_spanning_tree
  from scipy.spatial.distance import cdist

  deaths = jax.jit(lambda x: ph.rips_h0(x).death)
  rng = np.random.default_rng(0)
  for n in args.sizes:
    clouds = rng.random((args.batch, n, args.dim), dtype=np.float32)
    one, batch = jax.device_put(clouds[0]), jax.device_put(clouds)

    # Same H0 from all three before timing them.
    ours_deaths = np.sort(np.asarray(deaths(one)))[:-1]
    gph_deaths = gph.ripser_parallel(clouds[0], maxdim=0)["dgms"][0][:-1, 1]
    mst = minimum_spanning_tree(cdist(clouds[0], clouds[0])).data
    np.testing.assert_allclose(ours_deaths, np.sort(gph_deaths), rtol=1e-5)
    np.testing.assert_allclose(ours_deaths, np.sort(mst), rtol=1e-5)

    ours = time_fn("topojax rips_h0 (jit, one cloud)", lambda: deaths(one), runs=args.runs)
    batched = per_cloud(time_fn(f"topojax rips_h0 (jit, vmap over {args.batch})",
                                lambda: deaths(batch), runs=args.runs), args.batch)
    anchors = [
        batched,
        time_fn("giotto-ph ripser_parallel maxdim=0",
                lambda: gph.ripser_parallel(clouds[0], maxdim=0), runs=args.runs),
        time_fn("scipy cdist + minimum_spanning_tree",
                lambda: minimum_spanning_tree(cdist(clouds[0], clouds[0])), runs=args.runs),
    ]
    report(f"Rips H0 per cloud, N={n} points in R^{args.dim} (float32), "
           f"giotto-ph {gph.__version__}, scipy {scipy.__version__}", ours, anchors)


if __name__ == "__main__":
  main()
