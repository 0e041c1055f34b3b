"""``tandem sweep``: a grid of configurations x seeds, each run a Ray task.

Layout of the sweep folder (what ``tandem report`` reads)::

    OUT/sweep.json                 the grid, the seeds, every run's folder and result
    OUT/<point>/seed_<s>/          one ordinary run folder per (grid point, seed)
    OUT/<point>/summary.json       the point's seeds aggregated (as ``train --seeds``)

``<point>`` names the grid values, e.g. ``learning_rate=0.001,gamma=0.98`` (``default`` for
an empty grid), and ``tandem report OUT`` compares the points. Each task reserves
``cpus_per_run`` CPUs; Ray runs as many at once as the cluster holds. A task whose process
dies is retried by Ray and resumes its run from the last checkpoint; a run that fails with
an error is recorded in sweep.json and the others go on.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

from tandem.algos import get_algo
from tandem.api import resume, train
from tandem.config import Config
from tandem.distributed.cluster import init_ray
from tandem.errors import ConfigError, TandemError
from tandem.run import folder as rf

log = logging.getLogger("tandem")


def parse_grid(specs: list[str], config_cls: type) -> dict[str, list]:
    """['learning_rate=1e-3,3e-4', 'gamma=0.98,0.99'] -> {field: [values]} (parsed and
    checked against ``config_cls``)."""
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or not values.strip():
            raise ConfigError(f"--grid {spec!r}: write field=v1,v2 (e.g. "
                              "learning_rate=1e-3,3e-4)")
        if key in grid:
            raise ConfigError(f"--grid names '{key}' twice")
        # tuple-valued fields use 'x' between entries (hidden_sizes=64x64,256x256)
        grid[key] = [config_cls.parse_value(key, v.strip()) for v in values.split(",")
                     if v.strip()]
    return grid


def point_name(point: dict) -> str:
    if not point:
        return "default"
    text = ",".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, tuple) else v}"
                    for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def _run_one(algo: str, cfg_dict: dict, env: str, steps: int, seed: int, run_dir: str,
             env_kwargs: dict | None) -> dict:
    """One run in a Ray task; if a previous attempt of this task died, resume it."""
    logging.basicConfig(level=logging.WARNING)
    path = Path(run_dir)
    try:
        done = rf.read_summary(path)
        if done is not None:   # finished before the task was retried
            return done
        if (path / "checkpoints").is_dir() and any((path / "checkpoints").iterdir()):
            return resume(path, progress=False).summary
        cfg = get_algo(algo).config_cls.from_dict(cfg_dict)
        summary = train(cfg, env, steps=steps, seed=seed, out=path, progress=False,
                        env_kwargs=env_kwargs).summary
        summary.setdefault("seed", seed)  # a JAX-native env's one-seed sweep names "seeds"
        return summary
    except TandemError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def sweep(base: Config, env: str, steps: int, seeds: list[int], grid: dict[str, list],
          out: str | Path, cpus_per_run: float = 1.0, ray_address: str | None = None,
          env_kwargs: dict | None = None) -> dict:
    """Train ``base`` with every combination of ``grid`` for every seed as Ray tasks;
    returns (and writes to ``out/sweep.json``) the record of every run."""
    if not isinstance(env, str):
        raise ConfigError("a sweep runs in other processes: pass the env as a registered id")
    out = Path(out)
    if (out / "sweep.json").exists():
        previous = json.loads((out / "sweep.json").read_text())
        if previous.get("grid") != _jsonable(grid) or previous.get("seeds") != seeds:
            raise ConfigError(f"'{out}' holds a different sweep; choose another --out")
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    configs = [base.replace(**p) for p in points]  # every point is validated before any run
    ray = init_ray(ray_address)
    task = ray.remote(num_cpus=cpus_per_run, max_retries=3)(_run_one)
    jobs = []
    for point, cfg in zip(points, configs):
        for s in seeds:
            run_dir = out / point_name(point) / f"seed_{s}"
            ref = task.remote(cfg.algo, cfg.to_dict(), env, steps, s, str(run_dir), env_kwargs)
            jobs.append((point, s, run_dir, ref))
    log.info("sweep: %d runs (%d grid points x %d seeds) as Ray tasks -> %s", len(jobs),
             len(points), len(seeds), out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"algo": base.algo, "env": env, "steps": steps, "seeds": seeds,
              "grid": _jsonable(grid), "base_config": base.to_dict(), "runs": []}
    for point, s, run_dir, ref in jobs:
        try:
            summary = ray.get(ref)
        except ray.exceptions.RayError as exc:  # retries exhausted
            summary = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
        record["runs"].append({"point": _jsonable(point), "seed": s, "dir": str(run_dir),
                               **({"error": summary["error"]} if "error" in summary else
                                  {"summary": summary})})
        if "error" in summary:
            log.warning("sweep: %s seed %d failed: %s", point_name(point), s, summary["error"])
    _aggregate_points(out, record)
    rf.write_sweep(out, record)
    return record


def _aggregate_points(out: Path, record: dict) -> None:
    by_point: dict[str, list[dict]] = {}
    for r in record["runs"]:
        if "summary" in r:
            by_point.setdefault(point_name(r["point"]), []).append(r["summary"])
    for name, summaries in by_point.items():
        agg = rf.aggregate(summaries)
        agg["path"] = "sweep"
        rf.write_summary(out / name, agg)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=list))
