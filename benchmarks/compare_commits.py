#!/usr/bin/env python
"""Did a change make tandem slower? The same speed benchmark run from two checkouts (before
and after), interleaved in pairs, reported as the median after/before ratio.

    git worktree add /tmp/before <commit>
    python benchmarks/compare_commits.py --before /tmp/before --pairs 3

Each run is the checkout's own ``benchmarks/<name>.py`` with that checkout's ``src`` first on
PYTHONPATH, tandem's runs only, shortened (``BENCHMARKS`` below); the pairs alternate which
side runs first. Run on an idle machine: the script records the load average around each run.
The figure per benchmark is the compile-free training steps/s that the benchmark itself
reports (SAC: the second half of the run; PPO and compiled PPO: ``time/sps``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PUREJAXRL = os.environ.get("PUREJAXRL_DIR", "")


def _sac(result: dict) -> float:
    row = next(r for r in result["table"] if r["lib"] == "tandem")
    return row["sps_2nd_half"]["mean"]


BENCHMARKS = {
    "sac_speed": (["--libs", "tandem", "--envs", "Pendulum-v1", "--seeds", "0",
                   "--steps-pendulum", "6000", "--no-ceiling"], _sac),
    "ppo_speed": (["--libs", "tandem", "--seeds", "0", "--steps", "50000"],
                  lambda r: r["table"]["tandem"]["sps"]["mean"]),
    "ppo_compiled": (["--seeds", "0", "--steps", "300000", "--purejaxrl-dir", PUREJAXRL],
                     lambda r: r["table"]["tandem"]["sps"][0]),
}


def run_one(checkout: Path, name: str) -> dict:
    args, metric = BENCHMARKS[name]
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "JAX_PLATFORMS": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(checkout / "benchmarks" / f"{name}.py"),
                               *args, "--out", str(out)], env=env, cwd=checkout,
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode or not out.is_file():
            raise RuntimeError(f"{checkout} {name}: {proc.stderr[-2000:]}")
        return {"sps": metric(json.loads(out.read_text())), "load_before": load,
                "wall_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="checkout of the commit before the change")
    p.add_argument("--after", default=str(HERE.parent), help="checkout after (default: this)")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--only", default=",".join(BENCHMARKS))
    p.add_argument("--out", default=str(HERE / "results" / "compare_commits.json"))
    a = p.parse_args(argv)
    sides = {"before": Path(a.before).resolve(), "after": Path(a.after).resolve()}
    result = {"sides": {k: str(v) for k, v in sides.items()}, "pairs": a.pairs,
              "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
              "benchmarks": {}}
    for name in a.only.split(","):
        runs = {"before": [], "after": []}
        for i in range(a.pairs):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for side in order:
                r = run_one(sides[side], name)
                runs[side].append(r)
                print(f"{name} pair {i} {side:6s}: {r['sps']:10.1f} steps/s "
                      f"(load before {r['load_before']:.2f})", flush=True)
        ratios = [b["sps"] / a_["sps"] for a_, b in zip(runs["before"], runs["after"])]
        result["benchmarks"][name] = {"args": BENCHMARKS[name][0], "runs": runs,
                                      "ratios_after_over_before": ratios,
                                      "median_ratio": statistics.median(ratios)}
        print(f"{name}: after/before ratios {[round(x, 3) for x in ratios]}, median "
              f"{statistics.median(ratios):.3f}", flush=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
