"""The final evaluation report: a metrics table (text and CSV) and a PNG grid
of example predictions with their soft skeletons."""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from topojax.skeleton import soft_skeleton


@dataclasses.dataclass(frozen=True)
class MetricSummary:
  """Mean and std over the images where a metric is defined (not NaN)."""
  name: str
  mean: float
  std: float
  count: int


def summarize(per_image: Mapping[str, np.ndarray]) -> list[MetricSummary]:
  """One summary per metric from `{name: [N] per-image values}` (NaN skipped)."""
  rows = []
  for name, values in per_image.items():
    values = np.asarray(values, np.float64).ravel()
    defined = values[np.isfinite(values)]
    mean, std = ((float(defined.mean()), float(defined.std())) if defined.size
                 else (float("nan"), float("nan")))
    rows.append(MetricSummary(name, mean, std, int(defined.size)))
  return rows


_HEADER = ("metric", "mean", "std", "n")


def _cells(row: MetricSummary) -> tuple[str, ...]:
  return (row.name, f"{row.mean:.4f}", f"{row.std:.4f}", str(row.count))


def format_table(rows: Sequence[MetricSummary]) -> str:
  """A plain text table, names left-aligned and numbers right-aligned."""
  lines = [_HEADER] + [_cells(r) for r in rows]
  widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADER))]
  fmt = lambda line: "  ".join(
      cell.ljust(w) if i == 0 else cell.rjust(w)
      for i, (cell, w) in enumerate(zip(line, widths)))
  rule = "  ".join("-" * w for w in widths)
  return "\n".join([fmt(lines[0]), rule] + [fmt(line) for line in lines[1:]])


def write_csv(path: str | os.PathLike[str], rows: Sequence[MetricSummary]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(_HEADER)
    writer.writerows([r.name, repr(r.mean), repr(r.std), r.count] for r in rows)


def save_prediction_grid(path: str | os.PathLike[str], images: np.ndarray,
                         labels: np.ndarray, foreground_prob: np.ndarray, *,
                         num_examples: int = 4, skeleton_iter: int = 10) -> None:
  """One row per example: image, ground truth, prediction, and the soft
  skeletons of the predicted foreground probability and of the ground truth.

  Args:
    path: where to write the PNG.
    images: `[N, H, W, C]` (C = 1 or 3) values in [0, 1].
    labels: `[N, H, W]` binary ground truth.
    foreground_prob: `[N, H, W]` predicted foreground probability.
    num_examples: rows to draw (at most N).
    skeleton_iter: `num_iter` of `topojax.skeleton.soft_skeleton`.
  """
  n = min(num_examples, len(images))
  images, labels, prob = images[:n], labels[:n].astype(np.float32), foreground_prob[:n]
  skeleton = lambda x: np.asarray(
      soft_skeleton(jnp.asarray(x, jnp.float32), num_iter=skeleton_iter, ndim=2))
  columns = [
      ("image", np.clip(images, 0.0, 1.0)),
      ("ground truth", labels),
      ("prediction", (prob > 0.5).astype(np.float32)),
      ("soft skeleton (prediction)", skeleton(prob)),
      ("soft skeleton (ground truth)", skeleton(labels)),
  ]
  fig = Figure(figsize=(2.2 * len(columns), 2.2 * n), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(n, len(columns), squeeze=False)
  for row in range(n):
    for col, (title, panel) in enumerate(columns):
      ax = axes[row, col]
      picture = panel[row]
      if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture[..., 0]
      ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(title, fontsize=8)
  fig.savefig(path, dpi=100)
