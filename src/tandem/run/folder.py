"""The run-folder format, in one place.

A run folder holds ``config.json`` (the record: algorithm, env, seed(s), steps asked, full
config, env spec, step unit, versions), ``summary.json``, ``metrics.csv``, ``tb/``,
``checkpoints/`` (and ``replay/`` segments, ``best/`` and ``best.json`` where used). Vmapped
seeds keep ``metrics.csv``, ``tb/`` and ``summary.json`` per seed in ``seed_<s>/``; a
Gymnasium sweep of seeds is a folder of ordinary run folders ``seed_<s>/`` plus an aggregate
``summary.json``. Folders written before this module (issue 14) still read: their record
lacks ``driver`` and ``step_unit``, which default to what those versions wrote.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from tandem.errors import CheckpointError, ConfigError
from tandem.run.checkpoint import atomic_write_text, latest_checkpoint
from tandem.version import __version__

log = logging.getLogger("tandem")

CONFIG, SUMMARY, BEST = "config.json", "summary.json", "best.json"
_PACKAGES = ("jax", "flax", "optax", "gymnasium", "numpy")


def versions() -> dict:
    """Versions of tandem and the libraries a run depends on (read without importing them)."""
    out = {"tandem": __version__}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def machine_info(backend: str | None = None) -> dict:
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    if backend is not None:
        info["jax_backend"] = backend
    return info


# ---------------------------------------------------------------------------- the record
def read_run(run_dir: Path) -> dict:
    """The record (config.json) of a run folder; CheckpointError naming what is wrong."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder '{run_dir}' does not exist")
    if not path.is_file():
        parts = sorted(run_dir.glob(f"seed_*/{CONFIG}"))
        if parts:
            raise CheckpointError(f"'{run_dir}' is a sweep of {len(parts)} runs, one per seed; "
                                  f"pass one of them, e.g. {parts[0].parent}")
        raise CheckpointError(f"'{run_dir}' is not a tandem run folder (no {CONFIG})")
    try:
        run = json.loads(path.read_text())
        run["algo"], run["config"], run["env_spec"]
        if not isinstance(run["config"], dict) or not isinstance(run["env_spec"], dict):
            raise TypeError("config and env_spec must be objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"'{path}' is corrupt or not a tandem run config ({exc!r})") from None
    run.setdefault("driver", "compiled" if run.get("path") == "compiled" else "host")
    run.setdefault("step_unit", "env_steps")
    return run


def write_run(run_dir: Path, run: dict) -> None:
    atomic_write_text(Path(run_dir) / CONFIG, json.dumps(run, indent=1))


def default_out(algo: str, env_name: str | None, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = (env_name or "custom").replace("/", "_").replace(":", "_")
    return Path("runs") / f"{algo}_{name}_seed{seed}_{stamp}"


def claim(run_dir: Path) -> Path:
    """Create ``run_dir`` for a new run; ConfigError if it already holds one."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG).exists() or (run_dir / "checkpoints").exists():
        raise ConfigError(f"'{run_dir}' already holds a run; continue it with `tandem resume "
                          f"{run_dir}` or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@contextlib.contextmanager
def claimed(run_dir: Path):
    """:func:`claim` ``run_dir`` for the checks that precede a run (they may log into it);
    if one fails, a folder made here is removed again when it is still empty."""
    made = not Path(run_dir).exists()
    claim(run_dir)
    try:
        yield Path(run_dir)
    except BaseException:
        if made and not any(Path(run_dir).iterdir()):
            Path(run_dir).rmdir()
        raise


def restart_unstarted(run_dir: Path) -> None:
    """Clear a run that stopped before its first checkpoint, so it can start again."""
    for name in (CONFIG, "metrics.csv", SUMMARY, BEST):
        (run_dir / name).unlink(missing_ok=True)
    for folder in ("tb", "checkpoints", "best", "replay"):
        shutil.rmtree(run_dir / folder, ignore_errors=True)


def resume_target(run_dir: Path, run: dict, start: int, steps: int | None) -> int:
    """The step a resume trains to (``steps`` more, or the original total), recorded in
    config.json so that a later crash finishes the same total."""
    until = start + steps if steps is not None else int(run["steps"])
    if until <= start:
        raise ConfigError(f"the run is already at step {start} (asked total {run['steps']}); "
                          "pass --steps M to train M more steps")
    run["steps"] = until
    write_run(run_dir, run)
    return until


def kept_message(run_dir: Path) -> str:
    """What a user can continue from after an error (the last checkpoint, if any)."""
    try:
        ckpt = latest_checkpoint(run_dir)
    except CheckpointError:
        return f"No checkpoint was written yet in {run_dir}"
    step = int(ckpt.name.split("_")[-1])
    return (f"The last checkpoint is at step {step}; after fixing the cause, continue with "
            f"`tandem resume {run_dir}`")


# ---------------------------------------------------------------------------- results
def read_best(run_dir: Path) -> dict | None:
    path = Path(run_dir) / BEST
    return json.loads(path.read_text()) if path.is_file() else None


def write_best(run_dir: Path, best: dict) -> None:
    atomic_write_text(Path(run_dir) / BEST, json.dumps(best, indent=1))


def write_summary(folder: Path, summary: dict) -> None:
    atomic_write_text(Path(folder) / SUMMARY, json.dumps(summary, indent=1))


def read_summary(folder: Path) -> dict | None:
    path = Path(folder) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None


def write_sweep(folder: Path, record: dict) -> None:
    """``sweep.json`` of a ``tandem sweep`` folder (the grid, seeds and every run's result)."""
    atomic_write_text(Path(folder) / "sweep.json", json.dumps(record, indent=1))


def write_eval(run_dir: Path, result: dict, best: bool) -> None:
    atomic_write_text(Path(run_dir) / ("eval_best.json" if best else "eval.json"),
                      json.dumps(result, indent=1))


def write_perturb(run_dir: Path, result: dict) -> None:
    """perturb.json: the zero-shot robustness table of ``tandem eval --perturb``."""
    atomic_write_text(Path(run_dir) / "perturb.json", json.dumps(result, indent=1))


def eval_stats(returns: list, lengths: list | None) -> dict:
    """The ``eval/`` fields of one seed's evaluation (None, not NaN, with no episodes, so
    summary.json stays strict JSON)."""
    if not returns:
        return {"eval/return_mean": None, "eval/return_std": None, "eval/episodes": 0,
                "eval/length_mean": None, "eval/returns": []}
    r = np.asarray(returns, np.float64)
    out = {"eval/return_mean": float(r.mean()), "eval/return_std": float(r.std()),
           "eval/episodes": len(returns),
           "eval/length_mean": float(np.mean(lengths)) if lengths else None,
           "eval/returns": [float(x) for x in returns]}
    return out


def aggregate(summaries: list[dict]) -> dict:
    """Across-seed statistics of per-seed summaries (mean and std of the seeds' eval means)."""
    means = [s["eval/return_mean"] for s in summaries if s["eval/return_mean"] is not None]
    first = summaries[0]
    return {"algo": first["algo"], "env": first["env"], "steps": first["steps"],
            "step_unit": first.get("step_unit", "env_steps"),
            "seeds": [s["seed"] for s in summaries],
            "eval/return_mean": float(np.mean(means)) if means else None,
            "eval/return_std_across_seeds": float(np.std(means)) if means else None,
            "eval/return_per_seed": [s["eval/return_mean"] for s in summaries]}


def parse_seeds(spec: str | int | list[int] | None, seed: int = 0) -> list[int] | None:
    """``8`` -> 8 seeds from ``seed``; ``"0-9"`` -> 0..9; ``"1,3,5"`` -> [1, 3, 5]."""
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)):
        seeds = [int(s) for s in spec]
    else:
        text = str(spec).strip()
        try:
            if "," in text:
                seeds = [int(t) for t in text.split(",") if t.strip()]
            elif "-" in text.lstrip("-"):
                lo, hi = (int(t) for t in text.split("-", 1))
                seeds = list(range(lo, hi + 1))
            else:
                n = int(text)
                if n < 1:
                    raise ValueError
                seeds = list(range(seed, seed + n))
        except ValueError:
            raise ConfigError(f"--seeds {spec!r}: give a count (8), a range (0-9) or a list "
                              "(1,3,5)") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {spec!r}: seeds must be distinct integers >= 0")
    return seeds


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r}: must be an integer >= {minimum}")
