"""`experiments.evaluate`: the report of a fake sweep, and one tiny real run end to end."""

from __future__ import annotations

import csv
import json
import os
import time

import jax
import numpy as np
import pytest

from configs import bricks
from experiments import evaluate
from experiments import train as trainer
from topojax import data

SETTING = ("accurate", "large", "supervised")
NUM_PER_GROUP = 20


def open_text(path) -> str:
  with open(path) as f:
    return f.read()


def _write_run(sweep_dir, name, *, loss, seed, per_image, seconds_per_step, memory_mib,
               examples=False, setting=SETTING):
  """A finished, evaluated run folder as the sweep and `evaluate_run` leave it."""
  run_dir = sweep_dir / name
  (run_dir / "eval").mkdir(parents=True)
  label, training_set, framework = setting
  config = {"setting": {"loss": loss, "label": label, "training_set": training_set,
                        "framework": framework, "seed": seed},
            "data": {"name": "topomortar", "data_dir": "", "size": 16, "seed": 0},
            "eval": {"batch_size": 8}}
  (run_dir / "config.json").write_text(json.dumps(config))
  (run_dir / "train_cost.json").write_text(json.dumps({
      "seconds_per_step": seconds_per_step, "late_seconds_per_step": 2 * seconds_per_step,
      "compile_seconds": 3.0, "steps_timed": 10,
      "step_memory_bytes": int(memory_mib * 2**20), "devices": 8, "platform": "cpu"}))
  (run_dir / "DONE").write_text("{}")
  ids, groups = per_image["ids"], per_image["groups"]
  evaluate.write_per_image_csv(run_dir / "eval" / "per_image.csv", ids, groups,
                               {m: per_image[m] for m in evaluate.METRICS})
  if examples:
    k = 2
    np.savez_compressed(
        run_dir / "eval" / "examples.npz", ids=np.array(ids[:k]), groups=np.array(groups[:k]),
        images=np.zeros((k, 16, 16, 3), np.uint8), labels=np.ones((k, 16, 16), np.uint8),
        foreground_prob=np.full((k, 16, 16), 200, np.uint8))
  return run_dir


def _per_image(rng, *, betti0_shift=0.0, dice_shift=0.0, base_seed=0):
  """Per-image metrics on indistr + angles; the image effect is shared across
  losses (same base_seed), so paired tests see the shifts."""
  n = 2 * NUM_PER_GROUP
  base = np.random.default_rng(base_seed)
  image_dice = base.uniform(0.85, 0.95, n)
  image_betti0 = base.integers(2, 10, n).astype(float)
  noise = lambda scale: rng.normal(0.0, scale, n)
  cldice = np.full(n, 0.97)
  cldice[3] = np.nan  # an empty skeleton
  return {
      "ids": [f"{i + 71:03d}" for i in range(n)],
      "groups": ["indistr"] * NUM_PER_GROUP + ["angles"] * NUM_PER_GROUP,
      "dice": image_dice + dice_shift + noise(0.002),
      "cldice": cldice,
      "betti0_error": image_betti0 + betti0_shift + noise(0.1),
      "betti1_error": image_betti0 / 2,
      "betti_matching_error": image_betti0 * 2,
      "hd95": np.full(n, 2.0),
  }


@pytest.fixture(scope="module")
def fake_sweep(tmp_path_factory):
  sweep_dir = tmp_path_factory.mktemp("sweep")
  rng = np.random.default_rng(0)
  for seed in (0, 1):
    _write_run(sweep_dir, f"loss=cedice,seed={seed}", loss="cedice", seed=seed,
               per_image=_per_image(rng), seconds_per_step=0.1, memory_mib=100,
               examples=seed == 0)
    # clDice: fewer components wrong (better), lower Dice (worse).
    _write_run(sweep_dir, f"loss=cldice,seed={seed}", loss="cldice", seed=seed,
               per_image=_per_image(rng, betti0_shift=-1.0, dice_shift=-0.01),
               seconds_per_step=0.15, memory_mib=150, examples=seed == 0)
  # TopoLoss: the baseline's numbers exactly, but 3x slower.
  cedice = _per_image(np.random.default_rng(0))
  _write_run(sweep_dir, "loss=topoloss,seed=0", loss="topoloss", seed=0,
             per_image={**cedice, "betti0_error": np.round(cedice["betti0_error"])},
             seconds_per_step=0.3, memory_mib=120)
  # A run still training: listed, not evaluated.
  (sweep_dir / "loss=warping,seed=0").mkdir()
  (sweep_dir / "loss=warping,seed=0" / "config.json").write_text(json.dumps(
      {"setting": {"loss": "warping", "label": "accurate", "training_set": "large",
                   "framework": "supervised", "seed": 0}}))
  path = evaluate.write_report(sweep_dir)
  return sweep_dir, open_text(path)


def _table_row(report, loss):
  """The first table row of `loss` (the main table of the only setting)."""
  return next(line for line in report.splitlines() if line.startswith(f"| {loss} |"))


def test_report_lists_groups_and_unfinished_runs(fake_sweep):
  _, report = fake_sweep
  assert "Test groups present: indistr (20 images), angles (20 images)." in report
  assert "Test groups missing: colors, graffiti, objects, shadows, occlusion." in report
  assert "OOD here averages 1 of the 6 OOD groups." in report
  assert "`loss=warping,seed=0`: not finished" in report
  assert "## accurate labels, large training set, supervised" in report


def test_report_tables_and_significance(fake_sweep):
  _, report = fake_sweep
  header = next(line for line in report.splitlines() if line.startswith("| Loss | seeds"))
  assert "Dice ID | Dice OOD" in header and "BM error OOD" in header
  cedice, cldice, topoloss = (_table_row(report, loss).split(" | ")
                              for loss in ("cedice", "cldice", "topoloss"))
  assert cedice[1] == "2" and cldice[1] == "2" and topoloss[1] == "1"  # seeds
  assert not any("▲" in c or "▼" in c for c in cedice)  # the baseline itself
  dice_id, dice_ood, _, _, betti0_id, betti0_ood = cldice[2:8]
  assert dice_id.endswith("▼") and dice_ood.endswith("▼")  # significantly worse
  assert betti0_id.startswith("**") and betti0_id.endswith("▲")  # significantly better
  assert betti0_ood.endswith("▲")
  assert not any("▲" in c or "▼" in c for c in topoloss[2:])  # rounding: not significant
  # clDice's NaN image is left out: mean over the other values.
  assert cldice[4].startswith("0.970 ± 0.000")
  # Per-group tables, one per metric.
  assert "Per test group:" in report and "| Loss | indistr | angles |" in report


def test_report_cost_table(fake_sweep):
  _, report = fake_sweep
  section = report[report.index("## Training cost per step"):]
  rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in section.splitlines()
          if line.startswith("| ") and not line.startswith("| Loss")}
  assert rows["cedice"][3] == "1.00" and rows["cedice"][9].startswith("yes")
  assert rows["cldice"][3] == rows["cldice"][5] == rows["cldice"][7] == "1.50"
  assert rows["cldice"][9].startswith("yes")
  assert rows["topoloss"][3] == "3.00"
  assert rows["topoloss"][9].startswith("no (time, late time)")
  assert rows["cldice"][2] == "150.0" and rows["cldice"][4] == "300.0"  # ms per step


def test_report_writes_pngs(fake_sweep):
  sweep_dir, report = fake_sweep
  for name in ("betti_errors_accurate_large_supervised.png",
               "examples_accurate_large_supervised.png"):
    assert (sweep_dir / name).stat().st_size > 1000
    assert f"]({name})" in report


def test_example_indices_take_one_per_group_first():
  ids = ["071", "072", "073", "121", "122", "371"]
  groups = ["indistr"] * 3 + ["angles"] * 2 + ["occlusion"]
  assert evaluate.example_indices(ids, groups, 3) == [0, 3, 5]
  assert evaluate.example_indices(ids[:3], groups[:3], 2) == [0, 1]


def test_evaluate_run_skips_unfinished(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  assert evaluate.evaluate_run(tmp_path) is None


def _tiny_config():
  config = bricks.get_config("runlocal,schedule=constant")
  config.data.height = config.data.width = 16
  config.data.num_train = 8
  config.model.features = (4, 8)
  config.batch_size = 8
  config.total_steps = 2
  config.log_every = 1
  config.checkpoint_every = 2
  config.eval.batch_size = 8
  if "augment" in config.data:
    config.data.augment = False
  config.setting = {"loss": "cedice", "label": "accurate", "training_set": "large",
                    "framework": "supervised", "seed": 0}
  return config


def test_evaluate_run_end_to_end(tmp_path, monkeypatch):
  run_dir = tmp_path / "loss=cedice"
  # One device compiles faster; evaluate_run restores onto all 8.
  trainer.train(_tiny_config(), os.fspath(run_dir), devices=jax.devices()[:1])
  (run_dir / "DONE").write_text("{}")
  time.sleep(0.01)  # the CSV must be strictly newer than DONE

  images, labels = data.brick_walls(10, seed=3, config=data.BrickWallConfig().resized(16, 16))
  ids = tuple(f"{i:03d}" for i in range(71, 81))
  groups = ("indistr",) * 6 + ("angles",) * 4
  monkeypatch.setattr(evaluate.trainer, "load_test_split",
                      lambda config: data.TopoMortarSplit(images, labels, ids, groups))
  csv_path = evaluate.evaluate_run(run_dir)

  with open(csv_path, newline="") as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == evaluate.CSV_COLUMNS
  assert [r["id"] for r in rows] == list(ids) and [r["group"] for r in rows] == list(groups)
  dice = np.array([float(r["dice"]) for r in rows])
  assert np.all((dice >= 0) & (dice <= 1))
  for metric in ("betti0_error", "betti1_error", "betti_matching_error", "hd95"):
    values = np.array([float(r[metric]) for r in rows])
    assert np.all(values >= 0), metric
  with np.load(run_dir / "eval" / "examples.npz") as npz:
    assert list(npz["ids"]) == ["071", "072", "077"]  # first of each group, then indistr
    assert npz["foreground_prob"].shape == (3, 16, 16)
    assert npz["foreground_prob"].dtype == np.uint8 and npz["images"].shape == (3, 16, 16, 3)

  # Idempotent: a CSV newer than DONE is kept without restoring the model.
  monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("recomputed"))
  assert evaluate.evaluate_run(run_dir) == csv_path

  report = open_text(evaluate.write_report(tmp_path))
  assert "| cedice | 1 |" in report
