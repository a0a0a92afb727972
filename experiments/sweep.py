r"""Runs every run of a config's `sweep()` one after another; every run resumes.

  python -m experiments.sweep \
      --config configs/topomortar.py:runlocal,data_dir=../shared/data/topomortar \
      --workdir workdirs/topomortar_sweep

A config file that defines `sweep(arg=None) -> list[dict]` (beside
`get_config`) lists its runs, each a dict of `key=value` config args, e.g.
`{"loss": "cldice", "label": "noisy", "seed": 0}`; run `i` uses
`get_config("<arg>,loss=cldice,label=noisy,seed=0")`, `<arg>` being the text
after `:`. Each run trains in `<workdir>/<name>`, the name spelled from its
overrides (`loss=cldice,label=noisy,seed=0`), with the config's `trainer`
module (default `experiments.train`); `<workdir>/sweep.json` lists the runs.
A finished run gets a `DONE` marker (JSON: final step, wall time, overrides,
eval means) and is skipped next time; an interrupted one resumes from its
latest checkpoint. So after a kill, the same command finishes the sweep. At
the end `experiments.evaluate.write_report(workdir)` writes the report
(`--report=false` skips it).

For a cluster, print one launch command per unfinished run instead:

  python -m experiments.sweep --config configs/topomortar.py:data_dir=/data/TopoMortar \
      --workdir workdirs/topomortar_sweep --print_commands

(`python -m experiments.train --config ... --workdir <run dir>` lines), or,
with `--tpu=NAME --zone=ZONE`, `tpu/run_tpu.sh` lines that run each on all
hosts of a TPU pod. Those commands write no `DONE`: run this script again
afterwards; it finds every run trained, only evaluates each (seconds), marks
it done and writes the report. Alternatively run the whole sweep on a pod,
every host the same sequence of SPMD runs:

  tpu/run_tpu.sh --module=experiments.sweep NAME ZONE \
      --config configs/topomortar.py:data_dir=... --workdir /mnt/bucket/sweep

`TOPOJAX_JAX_INIT=1` makes it call `jax.distributed.initialize()` first (see
`experiments._cli.maybe_initialize_distributed`); process 0 decides which
runs are pending and writes `sweep.json` and the markers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shlex
import time
import traceback
from collections.abc import Mapping
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from experiments import _cli
from topojax.train import loop

DONE_FILE = "DONE"
SWEEP_FILE = "sweep.json"
COMPILATION_CACHE = ".jax_cache"
DEFAULT_TRAINER = "experiments.train"
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._=,+-]")
_MAX_NAME_LENGTH = 200  # below the 255 bytes of most file systems


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep.

  Attributes:
    name: the folder name, spelled from `overrides`.
    overrides: the `key=value` config args of this run.
    arg: the whole config arg, the sweep's base arg then the overrides.
    run_dir: `<workdir>/<name>`.
  """
  name: str
  overrides: dict[str, Any]
  arg: str
  run_dir: str


# ----------------------------------------------------------------------------
# Config files and run names.
# ----------------------------------------------------------------------------


def split_config_spec(spec: str) -> tuple[str, str | None]:
  """`"configs/x.py:runlocal,k=v"` -> `("configs/x.py", "runlocal,k=v")`."""
  path, colon, arg = spec.partition(":")
  if not path.endswith(".py"):
    raise ValueError(f"`config` must be a .py file, optionally `:arg`; got {spec!r}.")
  return path, (arg if colon else None)


def load_config_module(path: str) -> ModuleType:
  """Imports a config file by path; it must define `get_config` and `sweep`."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Config file {path!r} does not exist.")
  stem = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f"_topojax_sweep_config_{stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name in ("get_config", "sweep"):
    if not callable(getattr(module, name, None)):
      raise ValueError(f"Config file {path!r} defines no `{name}()`; a sweep needs both.")
  return module


def _format_value(key: str, value: Any) -> str:
  text = str(value)
  if "," in text or not text:
    raise ValueError(
        f"Sweep override {key}={value!r}: values must be non-empty and free of ',' "
        "(they are spelled into the comma-separated config arg).")
  return text


def override_arg(overrides: Mapping[str, Any]) -> str:
  """`{"loss": "cldice", "seed": 0}` -> `"loss=cldice,seed=0"` (in dict order)."""
  for key in overrides:
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key):
      raise ValueError(f"Sweep override key {key!r} is not an identifier.")
  return ",".join(f"{k}={_format_value(k, v)}" for k, v in overrides.items())


def join_args(base_arg: str | None, overrides: Mapping[str, Any]) -> str:
  """The run's config arg: the base arg, then the overrides (later ones win)."""
  return ",".join(part for part in (base_arg, override_arg(overrides)) if part)


def run_name(overrides: Mapping[str, Any]) -> str:
  """A deterministic, file-system-safe folder name, e.g. `loss=cldice,seed=0`.

  Characters other than letters, digits and `._=,+-` become `_`; a name over
  200 characters is cut and ends in a hash of the whole, so names stay unique.
  """
  name = _UNSAFE_CHARS.sub("_", override_arg(overrides)) or "default"
  if len(name) > _MAX_NAME_LENGTH:
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    name = f"{name[:_MAX_NAME_LENGTH - 13]}-{digest}"
  return name


def plan(config_spec: str, workdir: str) -> list[Run]:
  """The runs of `config_spec`'s `sweep(arg)`, each with its folder under `workdir`.

  Raises:
    ValueError: no runs, an override that is not a dict, or two runs with the
      same name.
  """
  path, base_arg = split_config_spec(config_spec)
  module = load_config_module(path)
  runs, seen = [], {}
  for index, overrides in enumerate(module.sweep(base_arg)):
    if not isinstance(overrides, Mapping):
      raise ValueError(f"{path}: sweep() item {index} is {overrides!r}, not a dict.")
    overrides = dict(overrides)
    name = run_name(overrides)
    if name in seen:
      raise ValueError(f"{path}: sweep() items {seen[name]} and {index} are both {name!r}.")
    seen[name] = index
    runs.append(Run(name, overrides, join_args(base_arg, overrides),
                    os.path.join(workdir, name)))
  if not runs:
    raise ValueError(f"{path}: sweep({base_arg!r}) returned no runs.")
  return runs


def default_workdir(config_spec: str) -> str:
  """`workdirs/<config file stem>_sweep`."""
  path, _ = split_config_spec(config_spec)
  return os.path.join("workdirs", os.path.splitext(os.path.basename(path))[0] + "_sweep")


# ----------------------------------------------------------------------------
# Markers: `sweep.json` and each run's `DONE` (epath, so a gs:// workdir works).
# ----------------------------------------------------------------------------


def _write_json_atomic(path: str, payload: Any) -> None:
  """Writes then renames, so a kill leaves the old file or the new, never half."""
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  temporary = target.parent / f".{target.name}.tmp"
  temporary.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
  temporary.replace(target)


def is_done(run_dir: str) -> bool:
  """Whether `run_dir` holds a `DONE` marker."""
  return (epath.Path(run_dir) / DONE_FILE).exists()


def read_done(run_dir: str) -> dict[str, Any]:
  """The `DONE` marker of a finished run."""
  return json.loads((epath.Path(run_dir) / DONE_FILE).read_text())


def write_sweep_json(workdir: str, config_spec: str, runs: Sequence[Run]) -> None:
  """Records the sweep in `<workdir>/sweep.json`; refuses another config's workdir.

  Raises:
    ValueError: `workdir` already holds a sweep of another config file or
      base arg (its finished runs would be skipped as if they were this one's).
  """
  path, base_arg = split_config_spec(config_spec)
  sweep_file = epath.Path(workdir) / SWEEP_FILE
  if sweep_file.exists():
    previous = json.loads(sweep_file.read_text())
    if (os.path.normpath(previous.get("config", "")), previous.get("arg")) != (
        os.path.normpath(path), base_arg):
      raise ValueError(
          f"`workdir` {workdir!r} holds a sweep of {previous.get('config')}:"
          f"{previous.get('arg')}, not {config_spec}; choose another --workdir.")
  _write_json_atomic(os.fspath(sweep_file), {
      "config": path,
      "arg": base_arg,
      "runs": [{"name": r.name, "overrides": r.overrides, "arg": r.arg} for r in runs],
  })


def _json_scalars(values: Mapping[str, Any]) -> dict[str, Any]:
  result = {}
  for key, value in values.items():
    try:
      result[key] = float(value)
    except (TypeError, ValueError):
      continue
  return result


def write_done(run: Run, result: Any, wall_time_s: float, trainer: str) -> None:
  """Marks `run` finished: final step, wall time, overrides and eval means."""
  result = result if isinstance(result, Mapping) else {}
  _write_json_atomic(os.path.join(run.run_dir, DONE_FILE), {
      "name": run.name,
      "overrides": run.overrides,
      "arg": run.arg,
      "trainer": trainer,
      "step": int(result["step"]) if "step" in result else None,
      "wall_time_s": round(wall_time_s, 3),
      "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "eval": _json_scalars(result.get("eval", {})),
  })


# ----------------------------------------------------------------------------
# Launch commands for a cluster or a TPU pod.
# ----------------------------------------------------------------------------


def launch_commands(config_spec: str, runs: Sequence[Run], *, tpu: str | None = None,
                    zone: str | None = None) -> list[str]:
  """One shell command per run: `python -m <trainer> --config ... --workdir ...`.

  With `tpu` and `zone`, `tpu/run_tpu.sh` commands that run each on every
  host of that TPU VM (the run dirs should then be on a shared bucket mount).

  Raises:
    ValueError: only one of `tpu` and `zone`.
  """
  if bool(tpu) != bool(zone):
    raise ValueError(f"Give both `tpu` and `zone` or neither; got tpu={tpu!r}, zone={zone!r}.")
  path, _ = split_config_spec(config_spec)
  module = load_config_module(path)
  lines = []
  for run in runs:
    trainer = _trainer_name(module.get_config(run.arg))
    flags = ["--config", f"{path}:{run.arg}", "--workdir", run.run_dir]
    if tpu:
      command = ["tpu/run_tpu.sh", f"--module={trainer}", tpu, zone, *flags]
    else:
      command = ["python", "-m", trainer, *flags]
    lines.append(shlex.join(command))
  return lines


# ----------------------------------------------------------------------------
# Running the sweep in this process.
# ----------------------------------------------------------------------------


def _trainer_name(config) -> str:
  return str(config.get("trainer", None) or DEFAULT_TRAINER)


def _pending_on_process_0(runs: Sequence[Run]) -> list[bool]:
  """Which runs lack `DONE`, as process 0 sees it, so all hosts agree."""
  pending = [not is_done(run.run_dir) for run in runs]
  if jax.process_count() > 1:
    pending = [bool(p) for p in multihost_utils.broadcast_one_to_all(
        np.asarray(pending, np.int32))]
  return pending


def run_sweep(config_spec: str, workdir: str | None = None, *, report: bool = True,
              keep_going: bool = False) -> list[Run]:
  """Trains every unfinished run of the sweep, in order, in this process.

  Args:
    config_spec: `path/to/config.py[:arg]`; the file defines `get_config` and
      `sweep`.
    workdir: the sweep folder (default `default_workdir(config_spec)`).
    report: write `experiments.evaluate.write_report(workdir)` at the end.
    keep_going: log a failed run and go on with the next (the sweep still
      raises at the end); by default the first failure stops the sweep.

  Returns:
    The runs, in order.

  Raises:
    RuntimeError: with `keep_going`, the names of the runs that failed.
  """
  workdir = workdir or default_workdir(config_spec)
  path, _ = split_config_spec(config_spec)
  module = load_config_module(path)
  runs = plan(config_spec, workdir)
  if jax.process_index() == 0:
    write_sweep_json(workdir, config_spec, runs)
  pending = _pending_on_process_0(runs)
  logging.info("Sweep %s in %s: %d runs, %d finished, %d to go.", config_spec, workdir,
               len(runs), pending.count(False), pending.count(True))

  sweep_start = time.monotonic()
  failed = []
  for index, (run, todo) in enumerate(zip(runs, pending), start=1):
    if not todo:
      logging.info("Run %d/%d %s: done before, skipped.", index, len(runs), run.name)
      continue
    config = module.get_config(run.arg)
    trainer = _trainer_name(config)
    logging.info("Run %d/%d %s: training with %s in %s.", index, len(runs), run.name,
                 trainer, run.run_dir)
    run_start = time.monotonic()
    try:
      result = importlib.import_module(trainer).train_and_evaluate(config, run.run_dir)
      elapsed = time.monotonic() - run_start
      if jax.process_index() == 0:
        write_done(run, result, elapsed, trainer)
      if report and trainer == DEFAULT_TRAINER:  # score the model in memory, no restore
        from experiments import evaluate  # noqa: PLC0415 (imports this module)
        evaluate.evaluate_run(run.run_dir, trained=result)
    except Exception:  # noqa: BLE001 (any failure: log it and go on)
      if not keep_going:
        raise
      logging.error("Run %d/%d %s failed:\n%s", index, len(runs), run.name,
                    traceback.format_exc())
      failed.append(run.name)
      continue
    finally:
      jax.clear_caches()  # compiled programs of finished runs only hold memory
    logging.info("Run %d/%d %s: done in %.1f s (sweep %.1f s).", index, len(runs),
                 run.name, elapsed, time.monotonic() - sweep_start)
  if failed:
    raise RuntimeError(f"{len(failed)} of {len(runs)} runs failed: {failed}; rerun to retry.")

  if report:
    from experiments import evaluate  # noqa: PLC0415 (imports this module)
    evaluate.evaluate_sweep(workdir)  # runs trained elsewhere (--print_commands); all hosts
  if report and jax.process_index() == 0:
    report_path = evaluate.write_report(workdir)
    logging.info("Report: %s", report_path)
    print(f"Report: {report_path}")
  return runs


# ----------------------------------------------------------------------------
# Command line (flags defined only when run as a script: tests import this).
# ----------------------------------------------------------------------------


def main() -> None:
  """Defines the flags and runs the sweep (or prints its launch commands)."""
  flags.DEFINE_string("config", None,
                      "Config file with get_config and sweep, optionally :arg, e.g. "
                      "configs/topomortar.py:runlocal,data_dir=../shared/data/topomortar.")
  flags.DEFINE_string("workdir", None,
                      "Sweep folder, one subfolder per run (default workdirs/<config>_sweep).")
  flags.DEFINE_bool("print_commands", False,
                    "Print one launch command per unfinished run instead of running them.")
  flags.DEFINE_string("tpu", None, "With --print_commands: tpu/run_tpu.sh lines for this TPU VM.")
  flags.DEFINE_string("zone", None, "With --tpu: its zone.")
  flags.DEFINE_bool("report", True, "After the runs, write experiments.evaluate's report.")
  flags.DEFINE_bool("keep_going", False, "Go on after a failed run (exit non-zero at the end).")
  flags.DEFINE_bool("compilation_cache", True,
                    f"Share compiled programs between runs in <workdir>/{COMPILATION_CACHE} "
                    "(unless JAX_COMPILATION_CACHE_DIR is set).")
  flags.mark_flags_as_required(["config"])

  def _main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    options = flags.FLAGS
    workdir = options.workdir or default_workdir(options.config)
    if options.print_commands:
      runs = plan(options.config, workdir)
      write_sweep_json(workdir, options.config, runs)
      todo = [run for run in runs if not is_done(run.run_dir)]
      if len(todo) < len(runs):
        logging.info("%d of %d runs are done; printing the other %d.", len(runs) - len(todo),
                     len(runs), len(todo))
      for line in launch_commands(options.config, todo, tpu=options.tpu, zone=options.zone):
        print(line)
      return
    if options.tpu or options.zone:
      raise app.UsageError("--tpu and --zone only go with --print_commands.")
    logging.get_absl_handler().addFilter(loop.quiet_orbax)
    if options.compilation_cache and not jax.config.jax_compilation_cache_dir:
      # Runs that differ only in seed or labels compile the same train step.
      jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, COMPILATION_CACHE))
    _cli.maybe_initialize_distributed()
    run_sweep(options.config, workdir, report=options.report, keep_going=options.keep_going)

  app.run(_main)


if __name__ == "__main__":
  main()
