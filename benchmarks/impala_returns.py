"""Learning quality of tandem IMPALA: its returns against Stable-Baselines3's A2C at the same
budget, seeds and evaluation, written as sweep folders and one `tandem report`.

    python benchmarks/impala_returns.py                  # CartPole-v1, 100k steps, seeds 0-4
    python benchmarks/impala_returns.py --seeds 0-1 --steps 20000 --out /tmp/ir   # smoke

Why A2C: IMPALA's learner is an advantage actor-critic whose targets V-trace corrects for the
lag of the acting policy; with no lag V-trace is A2C's n-step target. A2C (synchronous, no
lag) is therefore the reference an IMPALA run should match, with the same settings: 8 envs
in all (tandem: 2 Ray workers x 4 envs, 2 trajectories per update; SB3: 8 envs), 5-step
rollouts, gamma 0.99, RMSprop 7e-4 (eps 1e-5, decay 0.99) held constant (tandem IMPALA's
default, pinned here; SB3's A2C has no annealing), no entropy bonus, gradient norm
0.5, separate 64x64 tanh actor and critic, and the same value loss: SB3 A2C minimises
vf_coef * MSE, tandem 0.5 * vf_coef * MSE, so tandem runs with vf_coef 1.0 against SB3's 0.5.

Both are evaluated by the same function (tandem.core.evaluate.evaluate_policy: deterministic
actions, 10 episodes, reset seeds seed + 1,000,003 + i) every --eval-every steps and at the end.
Runs go one at a time (IMPALA's workers use both cores); the load is recorded.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = "CartPole-v1"
EVAL_EPISODES = 10


def child_tandem(seed: int, steps: int, every: int, out: Path) -> None:
    from tandem import IMPALAConfig, train
    cfg = IMPALAConfig(workers=2, envs_per_worker=4, n_steps=5, rollouts_per_update=2,
                       vf_coef=1.0, anneal_lr=False, eval_every=every, eval_episodes=EVAL_EPISODES,
                       log_every=min(5_000, every), checkpoint_every=0)
    train(cfg, ENV, steps=steps, seed=seed, out=out, progress=False)


def child_sb3(seed: int, steps: int, every: int, out: Path) -> None:
    import gymnasium as gym
    import numpy as np
    import stable_baselines3
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from tandem.core.evaluate import evaluate_policy
    from tandem.run.folder import eval_stats

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    eval_env = gym.make(ENV)
    model = A2C("MlpPolicy", make_vec_env(ENV, n_envs=8, seed=seed), n_steps=5,
                learning_rate=7e-4, gamma=0.99, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5,
                max_grad_norm=0.5, seed=seed, device="cpu", verbose=0)
    fh = open(out / "metrics.csv", "w", newline="")
    rows = csv.writer(fh)
    rows.writerow(["step", "name", "value"])

    def evaluate():
        r = evaluate_policy(lambda o: model.predict(o, deterministic=True)[0], eval_env,
                            EVAL_EPISODES, seed)
        return eval_stats(r["returns"], r["lengths"])

    class Periodic(BaseCallback):
        next_eval = every

        def _on_step(self) -> bool:
            t = self.num_timesteps
            if t >= self.next_eval:
                self.next_eval += every
                ev = evaluate()
                rows.writerow([t, "eval/return_mean", ev["eval/return_mean"]])
                if self.model.ep_info_buffer:
                    rows.writerow([t, "rollout/ep_return_mean",
                                   float(np.mean([e["r"] for e in self.model.ep_info_buffer]))])
                fh.flush()
                self.last = (t, ev)
            return True

    cb = Periodic()
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=cb)
    wall = time.perf_counter() - t0
    fh.close()
    done = model.num_timesteps
    ev = cb.last[1] if getattr(cb, "last", (None,))[0] == done else evaluate()
    summary = {"algo": "sb3-a2c", "env": ENV, "seed": seed, "steps": done,
               "eval/return_mean": ev["eval/return_mean"], "eval/return_std":
               ev["eval/return_std"], "eval/episodes": ev["eval/episodes"],
               "eval/returns": ev["eval/returns"], "time/wall_s": wall,
               "versions": {"stable-baselines3": stable_baselines3.__version__,
                            "torch": torch.__version__, "python": platform.python_version()},
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


CHILDREN = {"tandem": child_tandem, "sb3": child_sb3}


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--libs", default="tandem,sb3")
    p.add_argument("--out", default=str(HERE / "results" / "impala_returns"))
    p.add_argument("--child", nargs=4, metavar=("LIB", "SEED", "STEPS", "OUT"))
    a = p.parse_args(argv)
    if a.child:
        lib, seed, steps, out = a.child
        CHILDREN[lib](int(seed), int(steps), a.eval_every, Path(out))
        return 0

    out, libs = Path(a.out), a.libs.split(",")
    load0 = os.getloadavg()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, load {load0[0]:.2f}",
          flush=True)
    failures = 0
    for seed in _seeds(a.seeds):
        for lib in libs:
            d = out / lib / ENV / f"seed_{seed}"
            if (d / "summary.json").is_file():
                continue  # finished earlier: re-running completes a set
            if d.exists():
                import shutil
                shutil.rmtree(d)
            env = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
            t0 = time.time()
            r = subprocess.run([sys.executable, __file__, "--child", lib, str(seed),
                                str(a.steps), str(d), "--eval-every", str(a.eval_every)],
                               env=env, capture_output=True, text=True)
            failures += r.returncode != 0
            status = "ok" if r.returncode == 0 else f"FAILED\n{r.stderr[-2000:]}"
            print(f"{lib:7s} seed {seed}: {time.time() - t0:6.0f} s {status}", flush=True)

    from tandem.report import load_run_set, write_report
    names = {"tandem": "tandem IMPALA", "sb3": "SB3 A2C"}
    dirs = [out / lib / ENV for lib in libs if (out / lib / ENV).is_dir()]
    labels = [names[lib] for lib in libs if (out / lib / ENV).is_dir()]
    index = write_report(dirs, out / "report", labels,
                         title="tandem IMPALA (2 Ray workers) vs SB3 A2C, same budget and seeds")
    table = {label: load_run_set(d, label).scores.tolist() for d, label in zip(dirs, labels)}
    (out / "results.json").write_text(json.dumps({
        "load_before": load0, "load_after": os.getloadavg(), "per_seed": table}, indent=1))
    print(json.dumps(table))
    print(f"report: {index}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
