"""Learning quality, not speed: tandem SAC vs Stable-Baselines3 SAC at the same budget, same
hyperparameters, same seeds, same evaluation, written as sweep folders and one `tandem report`.

    python benchmarks/sac_returns.py                       # Pendulum-v1 10k and HalfCheetah-v5 30k steps, seeds 0-4
    python benchmarks/sac_returns.py --envs Pendulum-v1 --seeds 0-1 --steps-pendulum 3000

Both libraries use SB3's SAC defaults (256x256 ReLU, Adam 3e-4, batch 256, tau 0.005, gamma
0.99, one gradient step per env step, automatic temperature with target entropy -dim(A),
buffer 1e6) with 1,000 uniformly random steps first. Both are evaluated by the same function
(tandem.core.evaluate.evaluate_policy: deterministic actions, 10 episodes, reset seeds
seed + 1,000,003 + i, on a separate env instance) every --eval-every steps and at the end.

Each (library, env, seed) runs in its own subprocess; --jobs of them at a time (default 2, one
per core, each limited to one thread). Wall times are recorded but are not the point here:
the machine may be shared while this runs (its load is recorded).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_STEPS = {"Pendulum-v1": 10_000, "HalfCheetah-v5": 30_000}
DEFAULT_EVAL_EVERY = {"Pendulum-v1": 1_000, "HalfCheetah-v5": 3_000}
LEARNING_STARTS = 1_000
EVAL_EPISODES = 10


# ============================================================================ children
def child_tandem(env_id: str, seed: int, steps: int, every: int, out: Path) -> None:
    from tandem import SACConfig, train
    cfg = SACConfig(learning_starts=LEARNING_STARTS, eval_every=every,
                    eval_episodes=EVAL_EPISODES, log_every=min(1000, every),
                    checkpoint_every=0)
    train(cfg, env_id, steps=steps, seed=seed, out=out, progress=False)


def child_sb3(env_id: str, seed: int, steps: int, every: int, out: Path) -> None:
    import gymnasium as gym
    import numpy as np
    import stable_baselines3
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from tandem.core.evaluate import evaluate_policy
    from tandem.run.folder import eval_stats

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    eval_env = gym.make(env_id)
    model = SAC("MlpPolicy", gym.make(env_id), learning_starts=LEARNING_STARTS, seed=seed,
                device="cpu", verbose=0)
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
    summary = {"algo": "sb3-sac", "env": env_id, "seed": seed, "steps": steps,
               "eval/return_mean": ev["eval/return_mean"], "eval/return_std":
               ev["eval/return_std"], "eval/episodes": ev["eval/episodes"],
               "eval/returns": ev["eval/returns"], "time/wall_s": wall,
               "versions": {"stable-baselines3": stable_baselines3.__version__,
                            "torch": torch.__version__, "python": platform.python_version()},
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


CHILDREN = {"tandem": child_tandem, "sb3": child_sb3}


# ============================================================================ parent
def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", default="Pendulum-v1,HalfCheetah-v5")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--steps-pendulum", type=int, default=DEFAULT_STEPS["Pendulum-v1"])
    p.add_argument("--steps-halfcheetah", type=int, default=DEFAULT_STEPS["HalfCheetah-v5"])
    p.add_argument("--libs", default="tandem,sb3")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "results" / "sac_returns"))
    p.add_argument("--report", default=None, help="report folder (default <out>/report)")
    p.add_argument("--child", nargs=5, metavar=("LIB", "ENV", "SEED", "STEPS", "OUT"))
    p.add_argument("--eval-every", type=int, default=None)
    a = p.parse_args(argv)
    if a.child:
        lib, env_id, seed, steps, out = a.child
        CHILDREN[lib](env_id, int(seed), int(steps), a.eval_every, Path(out))
        return 0

    out = Path(a.out)
    envs, seeds, libs = a.envs.split(","), _seeds(a.seeds), a.libs.split(",")
    steps = {"Pendulum-v1": a.steps_pendulum, "HalfCheetah-v5": a.steps_halfcheetah}
    load0 = os.getloadavg()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, load {load0[0]:.2f}",
          flush=True)
    jobs = []
    for env_id in envs:
        n = steps.get(env_id, 10_000)
        every = DEFAULT_EVAL_EVERY.get(env_id, max(1, n // 10))
        for seed in seeds:
            for lib in libs:  # interleaved: both libraries see the same machine state
                d = out / lib / env_id / f"seed_{seed}"
                if (d / "summary.json").is_file():
                    continue  # finished earlier: the script can be re-run to complete a set
                jobs.append((lib, env_id, seed, n, every, d))

    def run(job):
        lib, env_id, seed, n, every, d = job
        if d.exists():  # an unfinished earlier attempt
            import shutil
            shutil.rmtree(d)
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
        t0 = time.time()
        r = subprocess.run([sys.executable, __file__, "--child", lib, env_id, str(seed),
                            str(n), str(d), "--eval-every", str(every)], env=env,
                           capture_output=True, text=True)
        status = "ok" if r.returncode == 0 else f"FAILED\n{r.stderr[-2000:]}"
        print(f"{lib:7s} {env_id:15s} seed {seed}: {time.time() - t0:7.0f} s {status}",
              flush=True)
        return r.returncode

    with ThreadPoolExecutor(a.jobs) as pool:
        failures = sum(1 for rc in pool.map(run, jobs) if rc)

    from tandem.report import load_run_set, write_report
    names = {"tandem": "tandem SAC", "sb3": "SB3 SAC"}
    dirs, labels = [], []
    for env_id in envs:
        for lib in libs:
            if (out / lib / env_id).is_dir():
                dirs.append(out / lib / env_id)
                labels.append(names.get(lib, lib))
    index = write_report(dirs, a.report or out / "report", labels,
                         title="tandem SAC vs Stable-Baselines3 SAC, same budget and seeds")
    table = {}
    for d, label in zip(dirs, labels):
        rs = load_run_set(d, label)
        table[f"{label} | {rs.env}"] = {"per_seed": rs.scores.tolist(),
                                        "steps": sorted({s.summary["steps"] for s in rs.seeds})}
    (out / "results.json").write_text(json.dumps({
        "load_before": load0, "load_after": os.getloadavg(), "results": table}, indent=1))
    print(f"report: {index}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
