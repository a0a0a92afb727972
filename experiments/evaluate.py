r"""Evaluates finished TopoMortar runs per test image, then writes the sweep's report.

Evaluate every finished run of a sweep that has no up-to-date per-image CSV,
then write the report:

  python -m experiments.evaluate --sweep_dir workdirs/topomortar_sweep

One run only (its `eval/per_image.csv` and `eval/examples.npz`):

  python -m experiments.evaluate --run_dir workdirs/topomortar_sweep/loss=cldice,label=noisy

Only the report, from the CSVs already written:

  python -m experiments.evaluate --sweep_dir workdirs/topomortar_sweep --evaluate=false

A run directory (see `experiments.sweep`) holds `config.json` (with
`config.setting` = loss, label, training_set, framework, seed), `checkpoints/`,
`train_cost.json` and, once finished, a `DONE` marker. `evaluate_run` restores
the final model (`experiments.train.train` restores a finished run without
training), predicts the test split (`experiments.train.load_test_split`: every TopoMortar test
group present) and writes, under `<run>/eval/`:

- `per_image.csv`: id, group, dice, cldice, betti0_error, betti1_error,
  betti_matching_error, hd95 (`topojax.train.report.segmentation_metrics`);
- `examples.npz`: `ids`, `groups`, `images` (uint8 `[k, H, W, 3]`), `labels`
  (uint8 `[k, H, W]`) and `foreground_prob` (uint8, probability x 255) of a
  few fixed test images (the first of each group), for the report's figure.

`write_report` reads every run's CSV, `train_cost.json` and `config.json` and
writes `<sweep>/report.md` with `betti_errors_<setting>.png` and
`examples_<setting>.png`: per setting (label x training set x framework)
mean +/- std per loss on ID, OOD and each group, marked where a paired
permutation test against CE+Dice is significant, and the cost per training step
of each loss relative to CE+Dice.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from configs import topomortar as topomortar_config
from experiments import train as trainer
from experiments.sweep import COMPILATION_CACHE
from experiments.sweep import DONE_FILE
from topojax.data._topomortar import TEST_GROUPS
from topojax.train import report
from topojax.train.metric_writer import CONFIG_FILE
from topojax.train.stats import paired_permutation_test

EVAL_DIR = "eval"
PER_IMAGE_CSV = "per_image.csv"
EXAMPLES_FILE = "examples.npz"
TRAIN_COST_FILE = "train_cost.json"
REPORT_FILE = "report.md"

METRICS = ("dice", "cldice", "betti0_error", "betti1_error", "betti_matching_error", "hd95")
CSV_COLUMNS = ("id", "group") + METRICS
HIGHER_IS_BETTER = frozenset({"dice", "cldice"})  # errors and HD95: lower is better
METRIC_TITLES = {"dice": "Dice", "cldice": "clDice", "betti0_error": "β0 error",
                 "betti1_error": "β1 error", "betti_matching_error": "BM error",
                 "hd95": "HD95"}
BASELINE = "cedice"
ID_GROUP = "indistr"
OOD_GROUPS = tuple(g for g in TEST_GROUPS if g != ID_GROUP)
NUM_EXAMPLES = 3
NUM_PERMUTATIONS = 10_000
SIGNIFICANCE = 0.05
MAX_COST_RATIO = 2.0  # the target: a topology loss costs <= 2x CE+Dice per step


# ----------------------------------------------------------------------------
# One run: restore, predict, score each test image.
# ----------------------------------------------------------------------------


def read_config(run_dir: str | os.PathLike[str]) -> ml_collections.ConfigDict:
  """The run's config from its `config.json` (lists where tuples were)."""
  with open(os.path.join(os.fspath(run_dir), CONFIG_FILE)) as f:
    return ml_collections.ConfigDict(json.load(f))


def example_indices(ids: Sequence[str], groups: Sequence[str], count: int = NUM_EXAMPLES
                    ) -> list[int]:
  """Fixed examples: the first image of each group (TopoMortar order), then
  the next in-distribution ones, `count` in all."""
  order = sorted(range(len(ids)), key=lambda i: (_group_rank(groups[i]), ids[i]))
  chosen, seen = [], set()
  for i in order:
    if groups[i] not in seen:
      chosen.append(i)
      seen.add(groups[i])
  chosen += [i for i in order if i not in chosen]
  return sorted(chosen[:count], key=lambda i: (_group_rank(groups[i]), ids[i]))


def _group_rank(group: str) -> tuple[int, str]:
  return (TEST_GROUPS.index(group) if group in TEST_GROUPS else len(TEST_GROUPS), group)


def _is_fresh(output: str, marker: str) -> bool:
  return os.path.exists(output) and os.path.getmtime(output) > os.path.getmtime(marker)


def write_per_image_csv(path: str | os.PathLike[str], ids: Sequence[str],
                        groups: Sequence[str], per_image: dict[str, np.ndarray]) -> None:
  """Writes the `CSV_COLUMNS` table (NaN as "nan"), atomically."""
  path = os.fspath(path)
  temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
  with open(temporary, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for i, (image_id, group) in enumerate(zip(ids, groups)):
      writer.writerow([image_id, group] + [repr(float(per_image[m][i])) for m in METRICS])
  os.replace(temporary, path)


def evaluate_run(run_dir: str | os.PathLike[str], *,
                 trained: dict[str, Any] | None = None) -> str | None:
  """Scores a finished run on its test split, once.

  Restores the final model (or takes `trained`'s), predicts the test images,
  and writes `eval/per_image.csv` and `eval/examples.npz` (process 0). A run
  whose CSV is newer than its `DONE` marker is not recomputed.

  Args:
    run_dir: the run's folder (`config.json`, `checkpoints/`, `DONE`).
    trained: `experiments.train.train`'s result for this run (its `model`
      and `mesh`), to score a model still in memory without restoring it.

  Returns:
    The CSV's path, or None for an unfinished run (no `DONE`; skipped with a
    logged warning).
  """
  run_dir = os.fspath(run_dir)
  marker = os.path.join(run_dir, DONE_FILE)
  csv_path = os.path.join(run_dir, EVAL_DIR, PER_IMAGE_CSV)
  if not os.path.exists(marker):
    logging.warning("Skipping %s: no %s marker, the run is not finished.", run_dir, DONE_FILE)
    return None
  if _is_fresh(csv_path, marker):
    logging.info("%s is up to date.", csv_path)
    return csv_path

  config = read_config(run_dir)
  restored = trained or trainer.train(config, run_dir)  # a finished run: restore only
  split = trainer.load_test_split(config)
  prob = trainer.predict_foreground(restored["model"], split.images, mesh=restored["mesh"],
                            batch_size=config.eval.batch_size)
  per_image = report.segmentation_metrics((prob > 0.5).astype(np.int32), split.labels)
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
    chosen = example_indices(split.ids, split.groups)
    np.savez_compressed(
        os.path.join(run_dir, EVAL_DIR, EXAMPLES_FILE),
        ids=np.array([split.ids[i] for i in chosen]),
        groups=np.array([split.groups[i] for i in chosen]),
        images=_to_uint8(split.images[chosen]),
        labels=np.asarray(split.labels[chosen], np.uint8),
        foreground_prob=_to_uint8(prob[chosen]))
    write_per_image_csv(csv_path, split.ids, split.groups, per_image)  # last: marks done
    summary = {m: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
               for m, v in per_image.items()}
    logging.info("Evaluated %s on %d test images: %s", run_dir, len(split.ids), summary)
  return csv_path


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255).astype(np.uint8)


def find_runs(sweep_dir: str | os.PathLike[str]) -> list[str]:
  """The run folders of a sweep: its subfolders holding a `config.json`."""
  sweep_dir = os.fspath(sweep_dir)
  return sorted(os.path.join(sweep_dir, name) for name in os.listdir(sweep_dir)
                if os.path.isfile(os.path.join(sweep_dir, name, CONFIG_FILE)))


def evaluate_sweep(sweep_dir: str | os.PathLike[str]) -> list[str]:
  """`evaluate_run` on every run of the sweep; returns the CSVs written or kept."""
  paths = [evaluate_run(run_dir) for run_dir in find_runs(sweep_dir)]
  return [p for p in paths if p is not None]


# ----------------------------------------------------------------------------
# The report: tables per setting, significance against CE+Dice, cost, figures.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
  name: str
  path: str
  loss: str
  setting: tuple[str, str, str]  # label, training_set, framework
  seed: int
  ids: np.ndarray | None = None  # [N] str
  groups: np.ndarray | None = None  # [N] str
  values: dict[str, np.ndarray] | None = None  # metric -> [N]
  cost: dict[str, Any] | None = None


def read_per_image_csv(path: str | os.PathLike[str]
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """`(ids, groups, {metric: [N] float64})` of a `per_image.csv`; a metric
  missing from the file (an older CSV) reads as NaN."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  ids = np.array([r["id"] for r in rows], dtype=str)
  groups = np.array([r["group"] for r in rows], dtype=str)
  values = {m: np.array([float(r.get(m) or "nan") for r in rows], np.float64)
            for m in METRICS}
  return ids, groups, values


def _read_runs(sweep_dir: str) -> tuple[list[_Run], list[str]]:
  """Runs with a `setting`, and notes on the folders left out."""
  runs, notes = [], []
  for path in find_runs(sweep_dir):
    name = os.path.basename(path)
    config = read_config(path)
    setting = config.get("setting", None)
    if setting is None:
      notes.append(f"`{name}`: no `config.setting`, left out.")
      continue
    run = _Run(name=name, path=path, loss=str(setting.loss),
               setting=(str(setting.label), str(setting.training_set),
                        str(setting.get("framework", "supervised"))),
               seed=int(setting.get("seed", 0)))
    csv_path = os.path.join(path, EVAL_DIR, PER_IMAGE_CSV)
    if os.path.exists(csv_path):
      run.ids, run.groups, run.values = read_per_image_csv(csv_path)
    else:
      finished = os.path.exists(os.path.join(path, DONE_FILE))
      notes.append(f"`{name}`: {'not evaluated yet' if finished else 'not finished'} "
                   "(no per-image CSV).")
    cost_path = os.path.join(path, TRAIN_COST_FILE)
    if os.path.exists(cost_path):
      with open(cost_path) as f:
        run.cost = json.load(f)
    runs.append(run)
  return runs, notes


def _rank(value: str, order: Sequence[str]) -> tuple[int, str]:
  return (order.index(value) if value in order else len(order), value)


def _loss_order(losses) -> list[str]:
  return sorted(set(losses), key=lambda loss: _rank(loss, topomortar_config.LOSSES))


def _setting_order(settings) -> list[tuple[str, str, str]]:
  return sorted(set(settings), key=lambda s: (
      _rank(s[2], topomortar_config.FRAMEWORKS), _rank(s[0], topomortar_config.LABELS),
      _rank(s[1], topomortar_config.TRAINING_SETS)))


def _setting_title(setting: tuple[str, str, str]) -> str:
  label, training_set, framework = setting
  return f"{label} labels, {training_set} training set, {framework}"


def _setting_slug(setting: tuple[str, str, str]) -> str:
  return "_".join(setting)


def _pooled(runs: Sequence[_Run], metric: str, groups: Sequence[str]) -> np.ndarray:
  """Every (image, seed) value of the groups, NaN dropped."""
  parts = [r.values[metric][np.isin(r.groups, groups)] for r in runs]
  values = np.concatenate(parts) if parts else np.zeros(0)
  return values[~np.isnan(values)]


def _mean_std(values: np.ndarray) -> tuple[float, float]:
  if values.size == 0:
    return math.nan, math.nan
  return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def _column_stats(runs: Sequence[_Run], metric: str, column: str,
                  ood_present: Sequence[str]) -> tuple[float, float]:
  """Mean and std of a column: one group, ID, or OOD (TopoMortar: the mean of
  the OOD groups' means and the mean of their stds)."""
  if column != "OOD":
    return _mean_std(_pooled(runs, metric, [ID_GROUP if column == "ID" else column]))
  stats = [_mean_std(_pooled(runs, metric, [g])) for g in ood_present]
  stats = [s for s in stats if not math.isnan(s[0])]
  if not stats:
    return math.nan, math.nan
  return float(np.mean([s[0] for s in stats])), float(np.mean([s[1] for s in stats]))


def _seed_means(runs: Sequence[_Run], metric: str, groups: Sequence[str]
                ) -> dict[str, float]:
  """Image id -> its value averaged over seeds (NaN seeds skipped)."""
  per_id: dict[str, list[float]] = {}
  for r in runs:
    keep = np.isin(r.groups, groups)
    for image_id, value in zip(r.ids[keep], r.values[metric][keep]):
      per_id.setdefault(str(image_id), []).append(float(value))
  return {i: (float(np.nanmean(v)) if not np.all(np.isnan(v)) else math.nan)
          for i, v in per_id.items()}


def _significance(runs: Sequence[_Run], baseline: Sequence[_Run], metric: str,
                  groups: Sequence[str]) -> tuple[float, int]:
  """(p-value, direction) of the paired test vs the baseline; direction +1 when
  `runs` is better on average, -1 when worse, 0 when equal or untestable."""
  mine, theirs = _seed_means(runs, metric, groups), _seed_means(baseline, metric, groups)
  shared = sorted(set(mine) & set(theirs))
  if not shared:
    return math.nan, 0
  a = np.array([mine[i] for i in shared])
  b = np.array([theirs[i] for i in shared])
  p = paired_permutation_test(a, b, num_permutations=NUM_PERMUTATIONS, seed=0)
  both = ~(np.isnan(a) | np.isnan(b))
  difference = float(np.mean(a[both] - b[both])) if both.any() else 0.0
  sign = (difference > 0) - (difference < 0)
  return p, sign if metric in HIGHER_IS_BETTER else -sign


def _decimals(metric: str) -> int:
  return 3 if metric in HIGHER_IS_BETTER else 2


def _cell(mean: float, std: float, metric: str, p: float, direction: int) -> str:
  if math.isnan(mean):
    return "–"
  d = _decimals(metric)
  text = f"{mean:.{d}f} ± {std:.{d}f}"
  if not math.isnan(p) and p < SIGNIFICANCE and direction:
    return f"**{text}** ▲" if direction > 0 else f"{text} ▼"
  return text


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines


def _group_sets(column: str, ood_present: Sequence[str]) -> list[str]:
  if column == "ID":
    return [ID_GROUP]
  if column == "OOD":
    return list(ood_present)
  return [column]


def _setting_section(setting, by_loss: dict[str, list[_Run]], groups_present: Sequence[str],
                     ood_present: Sequence[str]) -> tuple[list[str], dict]:
  """Markdown of one setting, and the ID/OOD Betti means for the bar plot."""
  losses = _loss_order(by_loss)
  baseline = by_loss.get(BASELINE)
  columns = (["ID"] if ID_GROUP in groups_present else []) + (["OOD"] if ood_present else [])
  lines = [f"## {_setting_title(setting)}", ""]
  if baseline is None:
    lines += [f"No {BASELINE} run in this setting: no significance tests.", ""]

  def cells(loss: str, metric: str, column: str) -> str:
    mean, std = _column_stats(by_loss[loss], metric, column, ood_present)
    p, direction = math.nan, 0
    if baseline is not None and loss != BASELINE:
      p, direction = _significance(by_loss[loss], baseline, metric,
                                   _group_sets(column, ood_present))
    return _cell(mean, std, metric, p, direction)

  header = ["Loss", "seeds"] + [f"{METRIC_TITLES[m]} {c}" for m in METRICS for c in columns]
  rows = [[loss, str(len(by_loss[loss]))] + [cells(loss, m, c) for m in METRICS for c in columns]
          for loss in losses]
  lines += _markdown_table(header, rows) + [""]

  if ood_present:
    lines += ["Per test group:", ""]
    for metric in METRICS:
      lines += [f"{METRIC_TITLES[metric]}:", ""]
      rows = [[loss] + [cells(loss, metric, g) for g in groups_present] for loss in losses]
      lines += _markdown_table(["Loss"] + list(groups_present), rows) + [""]

  betti = {loss: {metric: {c: _column_stats(by_loss[loss], metric, c, ood_present)
                           for c in columns}
                  for metric in ("betti0_error", "betti1_error")}
           for loss in losses}
  return lines, betti


def _median(values: Sequence[float]) -> float:
  values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  return float(np.median(values)) if values else math.nan


def _cost_section(runs: Sequence[_Run]) -> list[str]:
  with_cost = [r for r in runs if r.cost]
  lines = ["## Training cost per step", ""]
  if not with_cost:
    return lines + ["No run has a `train_cost.json`.", ""]
  lines += [f"Medians over the runs of each loss (all settings and seeds) of "
            f"`train_cost.json`: training time per step (the mean over the run after "
            f"compilation, as TopoMortar compares whole runs), the median step time in "
            f"the last 30 % of the run (where the late topology terms are on), and "
            f"XLA's memory estimate of the compiled step (temporaries + arguments + "
            f"outputs), relative to {BASELINE}. Target: every loss at most "
            f"{MAX_COST_RATIO:g}x {BASELINE} in all three.", ""]
  machines = sorted({(str(r.cost.get("platform", "?")), int(r.cost.get("devices", 0)))
                     for r in with_cost})
  for platform, devices in machines:
    here = [r for r in with_cost if (str(r.cost.get("platform", "?")),
                                     int(r.cost.get("devices", 0))) == (platform, devices)]
    if len(machines) > 1:
      lines += [f"On {platform} x {devices}:", ""]
    by_loss: dict[str, list[_Run]] = {}
    for r in here:
      by_loss.setdefault(r.loss, []).append(r)
    fields = ("seconds_per_step", "late_seconds_per_step", "step_memory_bytes",
              "compile_seconds")
    medians = {loss: [_median([r.cost.get(f) for r in rs]) for f in fields]
               for loss, rs in by_loss.items()}
    base = medians.get(BASELINE, [math.nan] * len(fields))
    rows = []
    for loss in _loss_order(by_loss):
      seconds, late, memory, compile_seconds = medians[loss]
      ratios = {"time": seconds / base[0], "late time": late / base[1],
                "memory": memory / base[2]}
      if all(math.isnan(r) for r in ratios.values()):
        check = "n/a"
      else:
        over = [what for what, ratio in ratios.items() if ratio > MAX_COST_RATIO]
        check = f"no ({', '.join(over)})" if over else "yes"
      rows.append([loss, str(len(by_loss[loss])), f"{seconds * 1e3:.1f}",
                   _ratio(ratios["time"]), f"{late * 1e3:.1f}", _ratio(ratios["late time"]),
                   f"{memory / 2**20:.1f}", _ratio(ratios["memory"]),
                   f"{compile_seconds:.1f}", check])
    lines += _markdown_table(["Loss", "runs", "ms / step", f"x {BASELINE}",
                              "ms / step, last 30 %", f"x {BASELINE}", "step memory (MiB)",
                              f"x {BASELINE}", "compile (s)", f"<= {MAX_COST_RATIO:g}x"],
                             rows) + [""]
  return lines


def _ratio(value: float) -> str:
  return "n/a" if math.isnan(value) else f"{value:.2f}"


def _plot_betti(path: str, setting, betti: dict) -> None:
  losses = list(betti)
  columns = sorted({c for loss in betti.values() for c in loss["betti0_error"]},
                   key=["ID", "OOD"].index)
  fig = Figure(figsize=(max(6.0, 1.1 * len(losses) + 2), 3.4), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, 2)
  x = np.arange(len(losses))
  width = 0.8 / max(1, len(columns))
  for ax, metric in zip(axes, ("betti0_error", "betti1_error")):
    for k, column in enumerate(columns):
      means = [betti[loss][metric][column][0] for loss in losses]
      stds = [betti[loss][metric][column][1] for loss in losses]
      ax.bar(x + (k - (len(columns) - 1) / 2) * width, means, width, yerr=stds,
             capsize=2, label=column)
    ax.set_xticks(x, losses, rotation=45, ha="right", fontsize=8)
    ax.set_title(METRIC_TITLES[metric], fontsize=9)
    ax.legend(fontsize=8)
  fig.suptitle(_setting_title(setting), fontsize=9)
  fig.savefig(path, dpi=100)


def _plot_examples(path: str, setting, by_loss: dict[str, list[_Run]]) -> bool:
  """Image, label and each loss's prediction (its lowest seed) on the fixed
  examples; False when no run of the setting has `examples.npz`."""
  examples = {}
  for loss in _loss_order(by_loss):
    for run in sorted(by_loss[loss], key=lambda r: r.seed):
      file = os.path.join(run.path, EVAL_DIR, EXAMPLES_FILE)
      if os.path.exists(file):
        with np.load(file) as npz:
          examples[loss] = {key: npz[key] for key in npz.files}
        break
  if not examples:
    return False
  first = next(iter(examples.values()))
  ids = [str(i) for i in first["ids"]]
  columns = ["image", "label"] + list(examples)
  fig = Figure(figsize=(1.9 * len(columns), 2.0 * len(ids)), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(len(ids), len(columns), squeeze=False)
  for row, image_id in enumerate(ids):
    for col, title in enumerate(columns):
      ax = axes[row, col]
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(title, fontsize=8)
      if col == 0:
        ax.set_ylabel(f"{image_id} ({first['groups'][row]})", fontsize=7)
      if title == "image":
        image = first["images"][row]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                  interpolation="nearest")
      elif title == "label":
        ax.imshow(first["labels"][row], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
      else:
        found = [str(i) for i in examples[title]["ids"]]
        if image_id in found:  # probability map, white = mortar
          ax.imshow(examples[title]["foreground_prob"][found.index(image_id)], cmap="gray",
                    vmin=0, vmax=255, interpolation="nearest")
  fig.suptitle(f"Foreground probability, {_setting_title(setting)}", fontsize=9)
  fig.savefig(path, dpi=100)
  return True


def write_report(sweep_dir: str | os.PathLike[str]) -> str:
  """Writes `report.md` and its PNGs from the sweep's per-image CSVs and costs.

  Per setting (label x training set x framework), a table with one row per
  loss: mean ± std of each metric over the in-distribution group (ID) and over
  the out-of-distribution groups (OOD = mean of the OOD group means, std the
  mean of their stds, as TopoMortar), then per group. Means and stds pool all
  (image, seed) values. A cell is marked where the loss differs from CE+Dice
  in the same setting by `paired_permutation_test` (values first averaged over
  seeds per image, paired by image id, 10 000 sign flips, two-sided,
  p < 0.05): bold with ▲ when better, ▼ when worse. Then the training cost per
  loss relative to CE+Dice and the figures.

  Args:
    sweep_dir: the sweep folder, one subfolder per run.

  Returns:
    The path of `report.md`.
  """
  sweep_dir = os.fspath(sweep_dir)
  runs, notes = _read_runs(sweep_dir)
  evaluated = [r for r in runs if r.values is not None]
  groups_present = sorted({str(g) for r in evaluated for g in r.groups}, key=_group_rank)
  ood_present = [g for g in groups_present if g != ID_GROUP]
  missing = [g for g in TEST_GROUPS if g not in groups_present]
  counts = {g: len({str(i) for r in evaluated for i, h in zip(r.ids, r.groups) if h == g})
            for g in groups_present}

  lines = ["# TopoMortar report", "",
           f"Sweep `{sweep_dir}`: {len(runs)} runs, {len(evaluated)} evaluated.", "",
           "Test groups present: " + (", ".join(f"{g} ({counts[g]} images)"
                                               for g in groups_present) or "none") + ".",
           "Test groups missing: " + (", ".join(missing) or "none") + ".", ""]
  if ood_present and len(ood_present) < len(OOD_GROUPS):
    lines += [f"OOD here averages {len(ood_present)} of the {len(OOD_GROUPS)} OOD groups.", ""]
  lines += [
      "Conventions: per-image metrics of `topojax.train.report.segmentation_metrics` "
      "(Betti errors with foreground 8-connected; Betti matching error superlevel, union "
      "comparison, V-construction; HD95 of an empty prediction = the image diagonal, "
      "722.663 at 512 x 512; clDice NaN on an empty skeleton, left out). "
      "ID = indistr; OOD = mean of the OOD group means. "
      f"Cells: mean ± std over all (image, seed) values. **bold ▲** / ▼: significantly "
      f"better / worse than {BASELINE} (paired sign-flip permutation test on per-image "
      f"values averaged over seeds, {NUM_PERMUTATIONS:,} permutations, two-sided, "
      f"p < {SIGNIFICANCE}). Higher is better for Dice and clDice, lower for the rest.", ""]
  if notes:
    lines += ["Runs without results:", ""] + [f"- {n}" for n in notes] + [""]

  by_setting: dict[tuple[str, str, str], dict[str, list[_Run]]] = {}
  for r in evaluated:
    by_setting.setdefault(r.setting, {}).setdefault(r.loss, []).append(r)
  for setting in _setting_order(by_setting):
    by_loss = by_setting[setting]
    section, betti = _setting_section(setting, by_loss, groups_present, ood_present)
    lines += section
    slug = _setting_slug(setting)
    betti_png = f"betti_errors_{slug}.png"
    _plot_betti(os.path.join(sweep_dir, betti_png), setting, betti)
    lines += [f"![Betti errors, {_setting_title(setting)}]({betti_png})", ""]
    examples_png = f"examples_{slug}.png"
    if _plot_examples(os.path.join(sweep_dir, examples_png), setting, by_loss):
      lines += [f"![Example predictions, {_setting_title(setting)}]({examples_png})", ""]

  lines += _cost_section(runs)
  path = os.path.join(sweep_dir, REPORT_FILE)
  with open(path, "w") as f:
    f.write("\n".join(lines))
  logging.info("Wrote %s.", path)
  return path


# ----------------------------------------------------------------------------
# Command line (flags defined only when run as a script: tests import this).
# ----------------------------------------------------------------------------


def main() -> None:
  """Defines the flags and evaluates a sweep (then reports) or one run."""
  from absl import app  # noqa: PLC0415
  from absl import flags  # noqa: PLC0415

  from experiments import _cli  # noqa: PLC0415
  from topojax.train import loop  # noqa: PLC0415

  flags.DEFINE_string("sweep_dir", None, "Sweep folder: evaluate its runs, write report.md.")
  flags.DEFINE_string("run_dir", None, "One run folder to evaluate.")
  flags.DEFINE_bool("evaluate", True, "With --sweep_dir: evaluate the runs lacking CSVs "
                    "first (false: only write the report).")

  def _main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    options = flags.FLAGS
    if (options.sweep_dir is None) == (options.run_dir is None):
      raise app.UsageError("Give exactly one of --sweep_dir and --run_dir.")
    logging.get_absl_handler().addFilter(loop.quiet_orbax)
    if options.sweep_dir and not jax.config.jax_compilation_cache_dir:
      # The same shapes compile the same programs for every run of the sweep.
      jax.config.update("jax_compilation_cache_dir",
                        os.path.join(options.sweep_dir, COMPILATION_CACHE))
    _cli.maybe_initialize_distributed()
    if options.run_dir:
      print(evaluate_run(options.run_dir))
      return
    if options.evaluate:
      evaluate_sweep(options.sweep_dir)
    if jax.process_index() == 0:
      print(write_report(options.sweep_dir))

  app.run(_main)


if __name__ == "__main__":
  main()
