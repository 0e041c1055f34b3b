#!/usr/bin/env python
"""Scaling of Ray rollout workers on a slow simulator: env steps/s with 1, 2, 4, 8 (, 16)
workers and the scaling efficiency sps(W) / (W * sps(1)).

The env is CartPole-v1 whose ``step`` also sleeps 5 ms, a stand-in for a physics code or a
crop model: sleeping uses no CPU, so workers can outnumber cores, and one worker can never
exceed 1 / 5 ms = 200 steps/s. Each worker steps one env (``envs_per_worker=1``), so any
flattening of the curve is the learner or the machine, not the env.

Measured per W, each in a fresh process with its own local Ray:

  steps/s      env steps learned per second between the first and the last log line (worker
               start-up and compilation excluded)
  efficiency   steps/s / (W x steps/s at W=1)
  ideal        W / (5 ms + the measured per-step cost of a worker outside the sleep)
  learner busy fraction of that time the learner spent in its jitted update (near 1 means
               learner-bound)
  worker step  seconds per env step inside a worker (5 ms is the sleep; more is the policy
               call and Python, or waiting for a core when workers outnumber cores)

    python benchmarks/ray_scaling.py                       # IMPALA, W = 1, 2, 4, 8, 16
    python benchmarks/ray_scaling.py --algo sac --workers 1,2,4,8   # SAC fed by workers
    python benchmarks/ray_scaling.py --workers 1,2 --seconds 10 --out /tmp/s.json  # smoke

Run it on an idle machine: the load average before and after is recorded in the JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SLEEP_S = 0.005


def child(algo: str, workers: int, seconds: float, out: str) -> dict:
    import gymnasium as gym

    from tandem import IMPALAConfig, SACConfig, train

    class SlowSim(gym.Wrapper):
        """The env, plus 5 ms of (CPU-free) waiting per step."""

        def step(self, action):
            time.sleep(SLEEP_S)
            return self.env.step(action)

    base = "CartPole-v1" if algo == "impala" else "Pendulum-v1"
    # registered with a class defined here: tandem sends the spec (class by value) to workers
    gym.register("tandem-bench/Slow-v0",
                 entry_point=lambda **kw: SlowSim(gym.make(base, **kw)))
    ideal_one = 1.0 / SLEEP_S
    steps = int(seconds * workers * ideal_one)
    log_every = max(1, steps // 10)
    if algo == "impala":
        cfg = IMPALAConfig(workers=workers, envs_per_worker=1, n_steps=20,
                           rollouts_per_update=1, log_every=log_every, checkpoint_every=0,
                           eval_episodes=0)
    else:
        cfg = SACConfig(workers=workers, worker_steps=20, hidden_sizes=(64, 64),
                        learning_starts=200, log_every=log_every, checkpoint_every=0,
                        eval_episodes=0, worker_cpus=0.1)
    t0 = time.perf_counter()
    run = train(cfg, "tandem-bench/Slow-v0", steps=steps, seed=0, out=Path(out) / "r",
                progress=False)
    wall = time.perf_counter() - t0
    rows: dict[int, dict] = {}
    with open(Path(out) / "r" / "metrics.csv") as f:
        for r in csv.DictReader(f):
            rows.setdefault(int(r["step"]), {})[r["name"]] = float(r["value"])
    logged = sorted(rows)
    # steady state: from the first log line to the last, by the time/sps of each interval
    sps = [rows[s]["time/sps"] for s in logged[1:]]
    steady = len(sps) and (logged[-1] - logged[0]) / sum(
        (b - a) / v for a, b, v in zip(logged[:-1], logged[1:], sps))
    result = {"algo": algo, "workers": workers, "steps": run.summary["steps"],
              "wall_s": wall, "sps_steady": steady,
              "sps_whole_run": run.summary["time/sps"]}
    if algo == "impala":
        last = rows[logged[-1]]
        learn_s = [rows[s].get("time/learn_s") for s in logged]
        # learner busy: update seconds over wall seconds between the first and last log line
        span = sum((b - a) / v for a, b, v in zip(logged[:-1], logged[1:], sps))
        result["learner_busy"] = (learn_s[-1] - learn_s[0]) / span if span else None
        result["worker_step_s"] = last.get("time/worker_rollout_s", float("nan")) / 20
        result["policy_lag"] = last.get("rollout/policy_lag")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algo", choices=("impala", "sac"), default="impala")
    ap.add_argument("--workers", default="1,2,4,8,16")
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="steady-state seconds each W should run for (at the ideal rate)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=3, metavar=("ALGO", "W", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        algo, w, d = args.child
        print(json.dumps(child(algo, int(w), args.seconds, d)))
        return

    load_before = os.getloadavg()
    results = []
    for w in (int(x) for x in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as d:
            env = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
            proc = subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds),
                                   "--child", args.algo, str(w), d], env=env,
                                  capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"W={w} failed")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"W={w}: {r['sps_steady']:.0f} steps/s (steady), {r['sps_whole_run']:.0f} whole "
              f"run", file=sys.stderr)
    base = results[0]["sps_steady"] / results[0]["workers"]
    for r in results:
        r["efficiency"] = r["sps_steady"] / (r["workers"] * base)
        if r.get("worker_step_s"):
            r["ideal_sps"] = r["workers"] / max(r["worker_step_s"], SLEEP_S)
    load_after = os.getloadavg()
    report = {"algo": args.algo, "sleep_s": SLEEP_S, "results": results,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_before": load_before, "load_after": load_after}}
    if load_before[0] > 0.5:
        report["warning"] = (f"the machine was busy (load {load_before[0]:.2f}) when the "
                             "benchmark started; figures may be low")
        print("WARNING: " + report["warning"], file=sys.stderr)
    out = Path(args.out or f"benchmarks/results/ray_scaling_{args.algo}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print("| workers | steps/s | efficiency | learner busy | worker s/step | policy lag |")
    print("|---|---|---|---|---|---|")
    for r in results:
        fmt = (lambda k, f: f.format(r[k]) if r.get(k) is not None else "-")
        print(f"| {r['workers']} | {r['sps_steady']:.0f} | {r['efficiency']:.2f} | "
              f"{fmt('learner_busy', '{:.2f}')} | {fmt('worker_step_s', '{:.4f}')} | "
              f"{fmt('policy_lag', '{:.2f}')} |")


if __name__ == "__main__":
    main()
