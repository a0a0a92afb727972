"""Process-0 metric logging: `metrics.jsonl` (one JSON object a line) and
`config.json` in the workdir. Other processes write nothing."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


def _to_json_number(value: Any) -> Any:
  """Python scalars for JSON; NaN/Inf as strings (JSON has no such numbers)."""
  value = np.asarray(value).item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricWriter:
  """Appends `{"step": s, name: value, ...}` lines; resuming keeps appending."""

  def __init__(self, workdir: str | os.PathLike[str]):
    self.workdir = os.fspath(workdir)
    self.enabled = jax.process_index() == 0
    if self.enabled:
      os.makedirs(self.workdir, exist_ok=True)

  @property
  def metrics_path(self) -> str:
    return os.path.join(self.workdir, METRICS_FILE)

  def write_config(self, config: Mapping[str, Any]) -> None:
    """Writes the run's config (a plain dict, e.g. `ConfigDict.to_dict()`)."""
    if self.enabled:
      with open(os.path.join(self.workdir, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True, default=str)
        f.write("\n")

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Appends one line of scalar metrics (device or host scalars)."""
    if not self.enabled:
      return
    record = {"step": int(step)}
    record.update({k: _to_json_number(v) for k, v in metrics.items()})
    with open(self.metrics_path, "a") as f:
      f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str | os.PathLike[str]) -> list[dict[str, Any]]:
  """All records of `metrics.jsonl` in `workdir`, in order."""
  with open(os.path.join(os.fspath(workdir), METRICS_FILE)) as f:
    return [json.loads(line) for line in f if line.strip()]
