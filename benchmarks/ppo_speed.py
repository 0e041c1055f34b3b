#!/usr/bin/env python
"""Side-by-side PPO speed on the host path: tandem vs Stable-Baselines3, Gymnasium CartPole-v1.

Both libraries train with 8 synchronous envs and the same hyperparameters (``HP``: RL Zoo's
tuned PPO for CartPole-v1), each (library, seed) in its own fresh subprocess. Reported per run:

  steps/s          env steps / wall time of the whole train/learn call (tandem's JIT compile
                   included)
  eval return      mean return of 10 deterministic episodes after training (reset seeds
                   seed + 1_000_003 + i for both libraries)

and the env-step ceiling: the same 8-env Gymnasium SyncVectorEnv stepped with random actions
(no policy, no learning). tandem's fraction of that ceiling and its own split of wall time
between ``envs.step`` and the jitted update (``time/env_fraction``, ``time/learn_fraction``)
show where the rest goes.

    python benchmarks/ppo_speed.py                                   # 3 seeds x 100k steps
    python benchmarks/ppo_speed.py --seeds 0 --steps 10000 --out /tmp/ppo.json   # smoke

Loss scaling: SB3's value loss is vf_coef * MSE, tandem's vf_coef * 0.5 * MSE, so tandem runs
with vf_coef = 2 x SB3's to optimise the same objective. SB3 anneals the clip range with
RL Zoo's schedule; here both keep clip 0.2 and anneal only the learning rate (linear to 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HP = {"env": "CartPole-v1", "n_envs": 8, "n_steps": 32, "batch_size": 256, "n_epochs": 20,
      "gamma": 0.98, "gae_lambda": 0.8, "learning_rate": 1e-3, "clip": 0.2, "ent_coef": 0.0,
      "vf_coef_sb3": 0.5, "max_grad_norm": 0.5, "hidden": [64, 64], "eval_episodes": 10}
EVAL_SEED_OFFSET = 1_000_003
CHILD_ENV = {"OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu"}


# ============================================================================ children
def child_tandem(seed: int, steps: int) -> dict:
    from tandem import PPOConfig, train
    cfg = PPOConfig(n_envs=HP["n_envs"], n_steps=HP["n_steps"],
                    n_minibatches=HP["n_envs"] * HP["n_steps"] // HP["batch_size"],
                    n_epochs=HP["n_epochs"], gamma=HP["gamma"], gae_lambda=HP["gae_lambda"],
                    learning_rate=HP["learning_rate"], anneal_lr=True, clip_coef=HP["clip"],
                    ent_coef=HP["ent_coef"], vf_coef=2 * HP["vf_coef_sb3"],
                    max_grad_norm=HP["max_grad_norm"], hidden_sizes=tuple(HP["hidden"]),
                    eval_episodes=HP["eval_episodes"], log_every=steps, checkpoint_every=0)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run = train(cfg, HP["env"], steps=steps, seed=seed, out=Path(d) / "r", progress=False)
        wall = time.perf_counter() - t0
    s = run.summary
    return {"steps": s["steps"], "train_s": s["time/wall_s"], "sps": s["time/sps"],
            "eval_return": s["eval/return_mean"], "env_fraction": s["time/env_fraction"],
            "learn_fraction": s["time/learn_fraction"], "call_s": wall}


def child_sb3(seed: int, steps: int) -> dict:
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    env = make_vec_env(HP["env"], n_envs=HP["n_envs"], seed=seed)
    lr = HP["learning_rate"]
    model = PPO("MlpPolicy", env, n_steps=HP["n_steps"], batch_size=HP["batch_size"],
                n_epochs=HP["n_epochs"], gamma=HP["gamma"], gae_lambda=HP["gae_lambda"],
                learning_rate=lambda progress: lr * progress, clip_range=HP["clip"],
                ent_coef=HP["ent_coef"], vf_coef=HP["vf_coef_sb3"],
                max_grad_norm=HP["max_grad_norm"],
                policy_kwargs={"net_arch": {"pi": HP["hidden"], "vf": HP["hidden"]}},
                seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - t0
    ev, returns = gym.make(HP["env"]), []
    for i in range(HP["eval_episodes"]):
        obs, _ = ev.reset(seed=seed + EVAL_SEED_OFFSET + i)
        total, done = 0.0, False
        while not done:
            a, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = ev.step(a)
            total, done = total + float(r), term or trunc
        returns.append(total)
    return {"steps": int(model.num_timesteps), "train_s": train_s,
            "sps": model.num_timesteps / train_s, "eval_return": float(np.mean(returns))}


def child_ceiling(seed: int, steps: int) -> dict:
    """Random-action steps/s of the 8-env SyncVectorEnv tandem uses (same autoreset mode)."""
    import gymnasium as gym
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(HP["env"])] * HP["n_envs"],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    actions = [envs.action_space.sample() for _ in range(256)]
    n = max(steps // HP["n_envs"], 1)
    t0 = time.perf_counter()
    for i in range(n):
        envs.step(actions[i % 256])
    dt = time.perf_counter() - t0
    return {"steps": n * HP["n_envs"], "sps": n * HP["n_envs"] / dt}


CHILDREN = {"tandem": child_tandem, "sb3": child_sb3, "ceiling": child_ceiling}


# ============================================================================ parent
def spawn(kind: str, seed: int, steps: int) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as f:
        cmd = [sys.executable, __file__, "--child", kind, "--child-seed", str(seed),
               "--steps", str(steps), "--child-out", f.name]
        proc = subprocess.run(cmd, env={**os.environ, **CHILD_ENV}, capture_output=True,
                              text=True, timeout=3600)
        if proc.returncode:
            raise RuntimeError(f"{kind} seed {seed} failed:\n{proc.stderr[-3000:]}")
        return json.loads(Path(f.name).read_text())


def stat(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--libs", default="tandem,sb3")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ppo_speed.json"))
    p.add_argument("--child", choices=list(CHILDREN))
    p.add_argument("--child-seed", type=int, default=0)
    p.add_argument("--child-out")
    args = p.parse_args(argv)
    if args.child:
        Path(args.child_out).write_text(json.dumps(CHILDREN[args.child](args.child_seed,
                                                                        args.steps)))
        return 0

    seeds = [int(s) for s in args.seeds.split(",")]
    libs = args.libs.split(",")
    load_before = os.getloadavg()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, load average before "
          f"{load_before[0]:.2f} (should be ~0: nothing else running)", flush=True)
    runs: dict[str, list[dict]] = {lib: [] for lib in libs}
    for seed in seeds:
        for lib in libs:
            r = spawn(lib, seed, args.steps)
            runs[lib].append({"seed": seed, **r})
            print(f"{lib:7s} seed {seed}: {r['sps']:8.0f} steps/s, eval return "
                  f"{r['eval_return']:.1f}", flush=True)
    ceiling = spawn("ceiling", 0, 50_000)
    table = {lib: {"sps": stat([r["sps"] for r in rs]),
                   "eval_return": stat([r["eval_return"] for r in rs])}
             for lib, rs in runs.items()}
    result = {"hp": HP, "steps": args.steps, "seeds": seeds, "runs": runs, "table": table,
              "ceiling_sps": ceiling["sps"], "load_before": load_before,
              "load_after": os.getloadavg(), "machine": platform.platform(),
              "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    lines = ["| library | steps/s | eval return |", "|---|---|---|"]
    for lib, t in table.items():
        lines.append(f"| {lib} | {t['sps']['mean']:.0f} ± {t['sps']['std']:.0f} | "
                     f"{t['eval_return']['mean']:.1f} ± {t['eval_return']['std']:.1f} |")
    if "tandem" in table and "sb3" in table:
        ratio = table["tandem"]["sps"]["mean"] / table["sb3"]["sps"]["mean"]
        result["ratio_tandem_sb3"] = ratio
        lines.append(f"\nratio tandem / SB3 steps/s: {ratio:.2f}x")
    if "tandem" in table:
        t = runs["tandem"]
        frac = table["tandem"]["sps"]["mean"] / ceiling["sps"]
        result["tandem_fraction_of_ceiling"] = frac
        lines.append(f"env-step ceiling (8-env SyncVectorEnv, random actions): "
                     f"{ceiling['sps']:.0f} steps/s; tandem reaches {frac:.1%} of it; tandem's "
                     f"wall time: {statistics.fmean(r['env_fraction'] for r in t):.1%} in "
                     f"envs.step, {statistics.fmean(r['learn_fraction'] for r in t):.1%} in "
                     "the update, the rest in acting, bookkeeping, compile and evaluation")
    text = "\n".join(lines)
    print(text)
    result["markdown"] = text
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
