"""The final evaluation report: per-image segmentation metrics, a metrics table
(text and CSV) and a PNG grid of example predictions with their soft skeletons."""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from topojax import metrics
from topojax.skeleton import soft_skeleton

# Images per call of the Betti matching error: every call has this many images
# (the last chunk is padded), so it compiles once per image size.
_BETTI_MATCHING_CHUNK = 8


def segmentation_metrics(pred, gt, *, betti_matching: bool = True) -> dict[str, np.ndarray]:
  r"""TopoMortar's per-image metrics of binary masks, plus the Betti matching error.

  - `dice`, `cldice`: `topojax.metrics.dice` / `cldice` (clDice is NaN where
    a skeleton is empty).
  - `betti0_error`, `betti1_error`: $|\beta_k(G) - \beta_k(P)|$ of
    `topojax.metrics.betti_errors` (foreground 8-connected, background
    4-connected, an empty mask has $\beta_0 = 1$), as TopoMortar.
  - `betti_matching_error`: `topojax.metrics.betti_matching_error` with
    `filtration="superlevel"` (the foreground, value 1, enters first, so the
    bars are the components and holes of each mask) and
    `comparison="union"`, dimensions 0 and 1, essential class not counted.
    Its cubical complex is the V-construction, so here the foreground is
    4-connected (unlike the Betti errors). Computed on the device in chunks of
    a fixed number of images (one compilation per image size).
  - `hd95`: `topojax.metrics.hd95`; where the prediction (or the label) is
    empty it is the image diagonal $\sqrt{(H-1)^2 + (W-1)^2}$, which is
    TopoMortar's 722.663 at 512 x 512.

  Args:
    pred: `[N, H, W]` binary predictions (bool, or 0/1 integers or floats).
    gt: `[N, H, W]` binary ground truth.
    betti_matching: whether to compute `betti_matching_error` (its first
      call per image size compiles for tens of seconds on a CPU).

  Returns:
    `{name: [N] float64}` for dice, cldice, betti0_error, betti1_error,
    betti_matching_error (unless `betti_matching=False`) and hd95, in that
    order.

  Raises:
    ValueError: if the masks are not `[N, H, W]` of the same shape or not binary.

  Examples:
    >>> import numpy as np
    >>> from topojax.train.report import segmentation_metrics
    >>> gt = np.ones((1, 5, 5), np.int32); gt[0, 2, 2] = 0   # a ring
    >>> pred = np.ones((1, 5, 5), np.int32)                  # its hole filled
    >>> per_image = segmentation_metrics(pred, gt)
    >>> list(per_image)
    ['dice', 'cldice', 'betti0_error', 'betti1_error', 'betti_matching_error', 'hd95']
    >>> [round(float(values[0]), 2) for values in per_image.values()]
    [0.98, 1.0, 0.0, 1.0, 1.0, 1.0]
  """
  pred, gt = np.asarray(pred), np.asarray(gt)
  if pred.ndim != 3 or pred.shape != gt.shape:
    raise ValueError(f"`pred` and `gt` must be [N, H, W] of the same shape, got "
                     f"{pred.shape} and {gt.shape}.")
  betti = metrics.betti_errors(pred, gt)  # also checks that both are binary
  out = {
      "dice": metrics.dice(pred, gt).astype(np.float64),
      "cldice": metrics.cldice(pred, gt).astype(np.float64),
      "betti0_error": betti[:, 0].astype(np.float64),
      "betti1_error": betti[:, 1].astype(np.float64),
  }
  if betti_matching:
    out["betti_matching_error"] = _betti_matching_errors(pred, gt)
  out["hd95"] = metrics.hd95(pred, gt).astype(np.float64)
  return out


def _betti_matching_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """`[N]` Betti matching errors, a fixed-size chunk of images per call."""
  count = len(pred)
  chunk = min(_BETTI_MATCHING_CHUNK, count)
  out = []
  for start in range(0, count, chunk):
    p = pred[start:start + chunk].astype(np.float32)
    g = gt[start:start + chunk].astype(np.float32)
    filled = len(p)
    if filled < chunk:  # pad with empty masks, whose error (0) is dropped
      pad = np.zeros((chunk - filled,) + p.shape[1:], np.float32)
      p, g = np.concatenate([p, pad]), np.concatenate([g, pad])
    errors = metrics.betti_matching_error(p, g, filtration="superlevel",
                                          comparison="union")
    out.append(np.asarray(errors)[:filled])
  return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


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
