"""Learning quality, not speed: tandem's SAC and TD3 vs Stable-Baselines3's (and SBX's SAC) at
the same budget, hyperparameters, seeds and evaluation, written as sweep folders, one
`tandem report` and benchmarks/results/sac_returns.json.

    python benchmarks/sac_returns.py                     # the plan below (hours: see docs)
    python benchmarks/sac_returns.py --envs HalfCheetah-v5 --libs sb3,sbx   # some of it
    python benchmarks/sac_returns.py --envs Pendulum-v1 --seeds 0-1 --steps 3000

Plan (seeds fixed in advance; every run made is kept):

| env | steps | seeds | runs |
|---|---|---|---|
| HalfCheetah-v5 | 30,000 | 0-9 | tandem SAC, SB3 SAC, SBX SAC, tandem TD3, SB3 TD3 |
| Hopper-v5 | 100,000 | 0-4 | tandem SAC, SB3 SAC |
| Walker2d-v5 | 100,000 | 0-4 | tandem SAC, SB3 SAC |

SAC on every side: SB3's SAC defaults (256x256 ReLU, Adam 3e-4, batch 256, tau 0.005, gamma
0.99, buffer 1e6, one gradient step per env step, automatic temperature from 1.0 with target
entropy -dim(A)). TD3 on both sides: SB3's TD3 defaults (400x300 ReLU, Adam 1e-3, batch 256,
tau 0.005, gamma 0.99, policy delay 2, target noise 0.2 clipped at 0.5) with Gaussian
exploration noise of std 0.1 (SB3's TD3 has none by default; 0.1 is the TD3 paper's and the
RL Zoo's). 1,000 uniformly random steps first everywhere (``HP`` below, recorded in the
JSON). Everyone is evaluated by the same function (tandem.core.evaluate.evaluate_policy:
deterministic actions, 10 episodes, reset seeds seed + 1,000,003 + i, a separate env) every
--eval-every steps and at the end; the score of a run is its final evaluation.

Each run is its own subprocess, single-threaded and pinned to one core; --jobs at a time
(default 2). Returns do not depend on load, so the machine may be shared; wall times are
recorded but are not the point.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAN = {  # env -> (steps, eval every, seeds, libs)
    "HalfCheetah-v5": (30_000, 3_000, "0-9", "tandem,sb3,sbx,tandem-td3,sb3-td3"),
    "Hopper-v5": (100_000, 10_000, "0-4", "tandem,sb3"),
    "Walker2d-v5": (100_000, 10_000, "0-4", "tandem,sb3"),
    "Pendulum-v1": (10_000, 1_000, "0-4", "tandem,sb3"),
}
LEARNING_STARTS = 1_000
EVAL_EPISODES = 10
HP = {
    "SAC": {"hidden_sizes": [256, 256], "learning_rate": 3e-4, "batch_size": 256,
            "tau": 0.005, "gamma": 0.99, "buffer_size": 1_000_000, "train_freq": 1,
            "gradient_steps": 1, "ent_coef": "auto, from 1.0", "target_entropy": "-dim(A)",
            "learning_starts": LEARNING_STARTS},
    "TD3": {"hidden_sizes": [400, 300], "learning_rate": 1e-3, "batch_size": 256,
            "tau": 0.005, "gamma": 0.99, "buffer_size": 1_000_000, "train_freq": 1,
            "gradient_steps": 1, "policy_delay": 2, "target_policy_noise": 0.2,
            "target_noise_clip": 0.5, "action_noise": "Gaussian, std 0.1",
            "learning_starts": LEARNING_STARTS},
    "evaluation": {"episodes": EVAL_EPISODES, "reset_seeds": "seed + 1,000,003 + i",
                   "policy": "deterministic"},
}
NAMES = {"tandem": "tandem SAC", "sb3": "SB3 SAC", "sbx": "SBX SAC", "tandem-td3": "tandem TD3",
         "sb3-td3": "SB3 TD3"}


# ============================================================================ children
def child_tandem(lib: str, env_id: str, seed: int, steps: int, every: int, out: Path) -> None:
    from tandem import SACConfig, TD3Config, train
    common = dict(learning_starts=LEARNING_STARTS, eval_every=every,
                  eval_episodes=EVAL_EPISODES, log_every=min(1000, every), checkpoint_every=0)
    if lib == "tandem":
        cfg = SACConfig(**common)
    else:
        cfg = TD3Config(hidden_sizes=(400, 300), exploration_sigma=0.1, **common)
    train(cfg, env_id, steps=steps, seed=seed, out=out, progress=False)


def child_peer(lib: str, env_id: str, seed: int, steps: int, every: int, out: Path) -> None:
    """An SB3 or SBX run in the layout `tandem report` reads (metrics.csv, summary.json)."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise

    from tandem.core.evaluate import evaluate_policy
    from tandem.run.folder import eval_stats

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    env, eval_env = gym.make(env_id), gym.make(env_id)
    a_dim = env.action_space.shape[0]
    if lib == "sb3":
        from stable_baselines3 import SAC
        model = SAC("MlpPolicy", env, learning_starts=LEARNING_STARTS, seed=seed, device="cpu",
                    verbose=0)
    elif lib == "sb3-td3":
        from stable_baselines3 import TD3
        model = TD3("MlpPolicy", env, learning_starts=LEARNING_STARTS, seed=seed, device="cpu",
                    verbose=0, action_noise=NormalActionNoise(np.zeros(a_dim),
                                                              0.1 * np.ones(a_dim)))
    else:  # sbx: its SAC with SB3's defaults spelled out (its own defaults differ)
        from sbx import SAC
        model = SAC("MlpPolicy", env, learning_starts=LEARNING_STARTS, seed=seed,
                    learning_rate=3e-4, qf_learning_rate=3e-4, policy_delay=1,
                    batch_size=256, buffer_size=1_000_000, tau=0.005, gamma=0.99,
                    ent_coef="auto_1.0", target_entropy="auto",
                    policy_kwargs=dict(net_arch=[256, 256], n_critics=2), verbose=0)
    fh = open(out / "metrics.csv", "w", newline="")
    rows = csv.writer(fh)
    rows.writerow(["step", "name", "value"])

    def evaluate():
        r = evaluate_policy(lambda o: model.predict(o, deterministic=True)[0], eval_env,
                            EVAL_EPISODES, seed)
        return eval_stats(r["returns"], r["lengths"])

    class Periodic(BaseCallback):
        def _on_step(self) -> bool:
            t = self.num_timesteps
            if t % 1000 == 0 and self.model.ep_info_buffer:
                rows.writerow([t, "rollout/ep_return_mean",
                               float(np.mean([e["r"] for e in self.model.ep_info_buffer]))])
            if t % every == 0:
                ev = evaluate()
                rows.writerow([t, "eval/return_mean", ev["eval/return_mean"]])
                fh.flush()
                self.last = (t, ev)
            return True

    cb = Periodic()
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=cb)
    wall = time.perf_counter() - t0
    fh.close()
    ev = cb.last[1] if getattr(cb, "last", (None,))[0] == steps else evaluate()
    import importlib.metadata as md
    summary = {"algo": lib, "env": env_id, "seed": seed, "steps": steps, **ev,
               "time/wall_s": wall,
               "versions": {p: md.version(p) for p in ("stable-baselines3", "torch", "sbx-rl")},
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


# ============================================================================ parent
def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", default="HalfCheetah-v5,Hopper-v5,Walker2d-v5")
    p.add_argument("--libs", default=None, help="only these of each env's plan")
    p.add_argument("--seeds", default=None, help="instead of the plan's seeds")
    p.add_argument("--steps", type=int, default=None, help="instead of the plan's steps")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cores", default=None, help="the cores to pin runs to, e.g. 1 or 0,1 "
                   "(default: 0 .. jobs-1)")
    p.add_argument("--out", default=str(HERE / "results" / "sac_returns"))
    p.add_argument("--json", default=str(HERE / "results" / "sac_returns.json"))
    p.add_argument("--report", default=None, help="report folder (default <out>/report)")
    p.add_argument("--rerun", action="store_true", help="also run what the JSON records")
    p.add_argument("--child", nargs=6, metavar=("LIB", "ENV", "SEED", "STEPS", "EVERY", "OUT"))
    a = p.parse_args(argv)
    if a.child:
        lib, env_id, seed, steps, every, out = a.child
        fn = child_tandem if lib.startswith("tandem") else child_peer
        fn(lib, env_id, int(seed), int(steps), int(every), Path(out))
        return 0

    out = Path(a.out)
    load0 = os.getloadavg()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, load {load0[0]:.2f}",
          flush=True)
    # runs recorded in the JSON are done, even where their folder is gone (the folders are
    # git-ignored; a fresh checkout has the JSON only): --rerun makes them again
    recorded = {} if a.rerun or not Path(a.json).is_file() else {
        k: set(v.get("seeds", [])) for k, v in
        json.loads(Path(a.json).read_text()).get("results", {}).items()}
    jobs = []
    for env_id in a.envs.split(","):
        steps, every, seeds, libs = PLAN.get(env_id, (10_000, 1_000, "0-4", "tandem,sb3"))
        steps = a.steps or steps
        every = min(every, steps)
        for seed in _seeds(a.seeds or seeds):
            wanted = [lib for lib in libs.split(",")
                      if a.libs is None or lib in a.libs.split(",")]
            for lib in wanted:  # interleaved: same machine state
                d = out / lib / env_id / f"seed_{seed}"
                if (d / "summary.json").is_file():
                    continue  # finished earlier: the script can be re-run to complete a set
                if seed in recorded.get(f"{NAMES[lib]} | {env_id}", ()):
                    print(f"{lib} {env_id} seed {seed}: recorded in {a.json}; not run again")
                    continue
                jobs.append((lib, env_id, seed, steps, every, d))
    # seed-major across envs: a plan stopped part-way leaves whole seeds of every env and lib
    jobs.sort(key=lambda j: j[2])
    lock = threading.Lock()
    cores: queue.Queue = queue.Queue()
    chosen = ([int(c) for c in a.cores.split(",")] if a.cores else
              [c % (os.cpu_count() or 1) for c in range(max(1, a.jobs))])
    for i in range(max(1, a.jobs)):
        cores.put(chosen[i % len(chosen)])

    def run(job):
        lib, env_id, seed, n, every, d = job
        # a run is made in <out>/_partial and moved into place when it has finished, so that
        # the JSON can be rewritten after every run and an interrupted one is never read
        part = out / "_partial" / lib / env_id / d.name
        for stale in (d, part):  # an unfinished earlier attempt
            if stale.exists():
                shutil.rmtree(stale)
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
        core = cores.get()
        pin = ["taskset", "-c", str(core)] if shutil.which("taskset") else []
        t0 = time.time()
        try:
            r = subprocess.run([*pin, sys.executable, __file__, "--child", lib, env_id,
                                str(seed), str(n), str(every), str(part)], env=env,
                               capture_output=True, text=True)
        finally:
            cores.put(core)
        ok = r.returncode == 0 and (part / "summary.json").is_file()
        status = "ok" if ok else f"FAILED\n{r.stderr[-2000:]}"
        print(f"{lib:10s} {env_id:15s} seed {seed}: {time.time() - t0:7.0f} s {status}",
              flush=True)
        if ok:
            d.parent.mkdir(parents=True, exist_ok=True)
            part.rename(d)
            with lock:  # what has finished is in the JSON even if the plan is stopped later
                write_results(out, Path(a.json), a.report, load0)
        return 0 if ok else 1

    with ThreadPoolExecutor(a.jobs) as pool:
        failures = sum(1 for rc in pool.map(run, jobs) if rc)
    shutil.rmtree(out / "_partial", ignore_errors=True)  # failed attempts; printed above
    write_results(out, Path(a.json), a.report, load0)
    return 1 if failures else 0


def write_results(out: Path, json_path: Path, report: str | None, load0) -> None:
    """Every finished run under ``out`` into the JSON (rows 'LIB ALGO | ENV') and a report."""
    from tandem.report import load_run_set, write_report
    dirs, labels, table = [], [], {}
    for lib, label in NAMES.items():
        for env_dir in sorted((out / lib).glob("*")) if (out / lib).is_dir() else []:
            rs = load_run_set(env_dir, label)
            dirs.append(env_dir)
            labels.append(label)
            table[f"{label} | {rs.env}"] = {
                "per_seed": rs.scores.tolist(), "seeds": [s.seed for s in rs.seeds],
                "steps": sorted({s.summary["steps"] for s in rs.seeds}),
                "wall_s": [s.summary.get("time/wall_s") for s in rs.seeds],
                "dates": [time.strftime("%Y-%m-%d", time.gmtime(
                    (s.dir / "summary.json").stat().st_mtime)) for s in rs.seeds],
                "cpus": [cpu_model()] * len(rs.seeds)}
    previous = json.loads(json_path.read_text()) if json_path.is_file() else {}
    _keep_earlier(table, previous.get("results", {}), previous.get("date"))
    for row in table.values():
        if not row.get("replaced"):
            row.pop("replaced", None)
    json_path.write_text(json.dumps({  # first: a report that fails must not cost the JSON
        "hyperparameters": HP, "plan": PLAN, "load_before": load0,
        "load_after": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
        "results": table,
        "superseded": previous.get("superseded", {})}, indent=1))
    if not dirs:  # no run folders here (a fresh checkout): the JSON only
        return
    index = write_report(dirs, report or out / "report", labels,
                         title="tandem SAC and TD3 vs Stable-Baselines3 (and SBX), same budget "
                         "and seeds")
    print(f"report: {index}", flush=True)


def cpu_model() -> str:
    """The CPU's model name and widest vector unit: float rounding in XLA's and PyTorch's
    kernels depends on them, so a seed's run differs from one machine to another."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                 if ln.startswith("model name")), "unknown")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                  if ln.startswith("flags")), [])
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
    return f"{name} ({isa})"


UNRECORDED_CPU = "not recorded (before 2026-12-08)"


def _keep_earlier(table: dict, earlier: dict, date: str | None) -> None:
    """Every run made stays in the JSON: a run recorded there earlier whose folder is not under
    ``out`` now (the folders are git-ignored, so a fresh checkout has none) is carried over
    into its row, listed under ``earlier`` with the date it was made. Runs of code that no
    longer stands are moved by hand to the JSON's ``superseded`` section, which is kept as is.
    A seed run again (``--rerun``, e.g. on another machine) keeps its new score in ``per_seed``
    and the old one under ``replaced``, with the date and CPU it was made on.
    """
    for key, old in earlier.items():
        row = table.setdefault(key, {"per_seed": [], "seeds": [], "steps": old.get("steps", []),
                                     "wall_s": []})
        dates = dict(zip(old.get("seeds", []), old.get("dates", [])))  # when each was made
        dates.update({e["seed"]: e["date"] for e in old.get("earlier", [])})
        row.setdefault("replaced", []).extend(  # replaced before: stays replaced
            e for e in old.get("replaced", []) if e not in row.get("replaced", []))
        cpus = dict(zip(old.get("seeds", []), old.get("cpus", [])))  # where each was made
        for seed, score in zip(old.get("seeds", []), old["per_seed"]):
            if seed in row["seeds"]:
                i = row["seeds"].index(seed)
                if row["per_seed"][i] != score:  # run again (--rerun): the old run is kept
                    e = {"seed": seed, "score": score,
                         "date": dates.get(seed, old.get("date", date)),
                         "cpu": cpus.get(seed, UNRECORDED_CPU)}
                    if e not in row["replaced"]:
                        row["replaced"].append(e)
                elif seed in cpus:  # the same run: where it was made stays as recorded
                    row["cpus"][i] = cpus[seed]
                continue
            row["per_seed"].append(score)
            row["seeds"].append(seed)
            row["wall_s"].append(None)
            row.setdefault("cpus", [UNRECORDED_CPU] * (len(row["seeds"]) - 1)).append(
                cpus.get(seed, UNRECORDED_CPU))
            row.setdefault("dates", []).append(dates.get(seed, old.get("date", date)))
            row.setdefault("earlier", []).append(
                {"seed": seed, "score": score, "date": dates.get(seed, old.get("date", date))})
        order = sorted(range(len(row["seeds"])), key=row["seeds"].__getitem__)
        for k in ("per_seed", "seeds", "wall_s", "dates", "cpus"):
            if k in row:
                row[k] = [row[k][i] for i in order]


if __name__ == "__main__":
    sys.exit(main())
