#!/usr/bin/env python
"""Compiled PPO side by side: tandem's compiled path vs PureJaxRL's PPO, gymnax CartPole-v1.

PureJaxRL is not a package: pass a checkout of https://github.com/luchris429/purejaxrl with
``--purejaxrl-dir`` (or PUREJAXRL_DIR); its own ``purejaxrl/ppo.py`` is imported and run
unchanged (it needs ``distrax``: ``pip install distrax``). Both get PureJaxRL's CartPole
config (``CONFIG``); tandem matches it field by field, including PureJaxRL's clipped value
loss (``clip_vloss=True``) and per-minibatch advantage normalisation. Each (library, seed) runs
in its own subprocess. Reported: training env steps/s with compilation excluded (PureJaxRL:
the jitted ``train`` is lowered and compiled first, then timed; tandem: ``time/sps`` and
``time/compile_s`` from the summary), compile seconds, and the mean return of episodes
finished in the last 5% of training (PureJaxRL's ``returned_episode_returns``; tandem's
``rollout/ep_return_mean`` over its last chunk) plus tandem's deterministic eval return.

    python benchmarks/ppo_compiled.py --purejaxrl-dir /path/to/purejaxrl
    python benchmarks/ppo_compiled.py --purejaxrl-dir ... --vmapped 8   # 8 seeds, one program

Remaining algorithmic differences (not hyperparameters): PureJaxRL treats a time-limit
truncation as terminal (gymnax folds it into ``done``; no bootstrap) where tandem bootstraps
from the final observation; PureJaxRL stores the behaviour log-probs and values while acting,
tandem recomputes them in one batched pass at the start of the update; tandem's chunk is a
``fori_loop`` over iterations (so a run can log, checkpoint and resume between chunks), here
one chunk for the whole run like PureJaxRL's single ``scan``.
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

CONFIG = {"LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": 500_000,
          "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95,
          "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5,
          "ACTIVATION": "tanh", "ENV_NAME": "CartPole-v1", "ANNEAL_LR": True, "DEBUG": False}
CHILD_ENV = {"JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
LAST = 0.05  # returns averaged over episodes that end in this final fraction of training


def child_purejaxrl(seeds: list[int], steps: int, pjx_dir: str) -> dict:
    sys.path.insert(0, str(Path(pjx_dir) / "purejaxrl"))  # ppo.py imports `wrappers`
    import importlib.util
    if importlib.util.find_spec("navix") is None:
        # Shim: PureJaxRL's wrappers.py imports navix at the top for a Navix wrapper the
        # CartPole PPO never uses; an empty module lets the file import unchanged.
        import types
        sys.modules["navix"] = types.ModuleType("navix")
    import jax
    import numpy as np
    from gymnax.environments import environment

    # Shim: PureJaxRL was written for gymnax < 1.0, whose auto-resetting step returned
    # (obs, state, reward, done, info); gymnax 1.0 returns terminated and truncated apart.
    # Fold them back into `done` (what the old step did) for this process only.
    new_step = environment.Environment.step

    def old_step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = new_step(self, key, state, action,
                                                                   params)
        return obs, state, reward, jax.numpy.logical_or(terminated, truncated), info
    environment.Environment.step = old_step
    from ppo import make_train  # PureJaxRL's own file

    train = make_train({**CONFIG, "TOTAL_TIMESTEPS": steps})
    keys = jax.numpy.stack([jax.random.PRNGKey(s) for s in seeds])
    fn = jax.jit(jax.vmap(train)) if len(seeds) > 1 else jax.jit(train)
    arg = keys if len(seeds) > 1 else keys[0]
    t0 = time.perf_counter()
    compiled = fn.lower(arg).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(arg))
    train_s = time.perf_counter() - t0
    m = jax.device_get(out["metrics"])
    ret, done = np.asarray(m["returned_episode_returns"]), np.asarray(m["returned_episode"])
    if len(seeds) == 1:
        ret, done = ret[None], done[None]
    n_up = ret.shape[1]
    tail = slice(int(n_up * (1 - LAST)), n_up)  # [S, updates, steps, envs]
    per_seed = [float(ret[i, tail][done[i, tail]].mean()) for i in range(len(seeds))]
    done_steps = n_up * CONFIG["NUM_STEPS"] * CONFIG["NUM_ENVS"]
    return {"steps": done_steps, "sps": done_steps / train_s, "compile_s": compile_s,
            "train_s": train_s, "final_return": statistics.fmean(per_seed),
            "final_return_per_seed": per_seed}


def child_tandem(seeds: list[int], steps: int, pjx_dir: str) -> dict:
    import csv

    from tandem import PPOConfig, train
    c = CONFIG
    cfg = PPOConfig(n_envs=c["NUM_ENVS"], n_steps=c["NUM_STEPS"], n_epochs=c["UPDATE_EPOCHS"],
                    n_minibatches=c["NUM_MINIBATCHES"], learning_rate=c["LR"],
                    anneal_lr=c["ANNEAL_LR"], gamma=c["GAMMA"], gae_lambda=c["GAE_LAMBDA"],
                    clip_coef=c["CLIP_EPS"], clip_vloss=True, ent_coef=c["ENT_COEF"],
                    vf_coef=c["VF_COEF"], max_grad_norm=c["MAX_GRAD_NORM"],
                    activation=c["ACTIVATION"], hidden_sizes=(64, 64), norm_adv=True,
                    log_every=steps, checkpoint_every=0, eval_episodes=10)
    # the last chunk is the final LAST fraction: log once there, so its rollout/ return
    # averages the same window as PureJaxRL's figure
    rollout = c["NUM_ENVS"] * c["NUM_STEPS"]
    cut = (int(steps * (1 - LAST)) // rollout) * rollout
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r"
        train(cfg.replace(log_every=cut), "gymnax:CartPole-v1", steps=steps, seeds=seeds,
              out=out, progress=False)
        s = json.loads((out / "summary.json").read_text())
        finals = []
        for seed in seeds:
            rows = [r for r in csv.DictReader(open(out / f"seed_{seed}" / "metrics.csv"))
                    if r["name"] == "rollout/ep_return_mean"]
            finals.append(float(rows[-1]["value"]))
    return {"steps": s["steps"], "sps": s["time/sps"], "compile_s": s["time/compile_s"],
            "train_s": s["steps"] / s["time/sps"], "final_return": statistics.fmean(finals),
            "final_return_per_seed": finals, "eval_return": s["eval/return_mean"]}


CHILDREN = {"purejaxrl": child_purejaxrl, "tandem": child_tandem}


def spawn(kind: str, seeds: list[int], steps: int, pjx_dir: str) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as f:
        cmd = [sys.executable, __file__, "--child", kind, "--child-seeds",
               ",".join(map(str, seeds)), "--steps", str(steps), "--child-out", f.name,
               "--purejaxrl-dir", pjx_dir]
        proc = subprocess.run(cmd, env={**os.environ, **CHILD_ENV}, capture_output=True,
                              text=True, timeout=3600)
        if proc.returncode:
            raise RuntimeError(f"{kind} {seeds} failed:\n{proc.stderr[-3000:]}")
        return json.loads(Path(f.name).read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--purejaxrl-dir", default=os.environ.get("PUREJAXRL_DIR"))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=CONFIG["TOTAL_TIMESTEPS"])
    p.add_argument("--vmapped", type=int, default=0,
                   help="also run this many seeds vmapped as one program per library")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "ppo_compiled.json"))
    p.add_argument("--child", choices=list(CHILDREN))
    p.add_argument("--child-seeds")
    p.add_argument("--child-out")
    a = p.parse_args(argv)
    if not a.purejaxrl_dir or not (Path(a.purejaxrl_dir) / "purejaxrl" / "ppo.py").is_file():
        p.error("give --purejaxrl-dir (or PUREJAXRL_DIR): a checkout of luchris429/purejaxrl")
    if a.child:
        seeds = [int(s) for s in a.child_seeds.split(",")]
        res = CHILDREN[a.child](seeds, a.steps, a.purejaxrl_dir)
        Path(a.child_out).write_text(json.dumps(res))
        return 0

    load_before = os.getloadavg()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, load average before "
          f"{load_before[0]:.2f} (should be ~0)", flush=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    runs: dict[str, list] = {"tandem": [], "purejaxrl": []}
    for seed in seeds:
        for lib in runs:
            r = spawn(lib, [seed], a.steps, a.purejaxrl_dir)
            runs[lib].append({"seed": seed, **r})
            print(f"{lib:9s} seed {seed}: {r['sps']:9.0f} steps/s, compile {r['compile_s']:.1f}"
                  f" s, final return {r['final_return']:.1f}", flush=True)
    vm = {}
    if a.vmapped:
        for lib in runs:
            vm[lib] = spawn(lib, list(range(a.vmapped)), a.steps, a.purejaxrl_dir)
            print(f"{lib:9s} {a.vmapped} seeds vmapped: {a.vmapped * vm[lib]['sps']:9.0f} "
                  f"steps/s total, compile {vm[lib]['compile_s']:.1f} s", flush=True)

    def ms(xs):
        return statistics.fmean(xs), (statistics.pstdev(xs) if len(xs) > 1 else 0.0)
    lines = ["| library | steps/s (1 seed, compile excluded) | compile s | final return |",
             "|---|---|---|---|"]
    table = {}
    for lib, rs in runs.items():
        table[lib] = {k: ms([r[k] for r in rs]) for k in ("sps", "compile_s", "final_return")}
        t = table[lib]
        lines.append(f"| {lib} | {t['sps'][0]:.0f} ± {t['sps'][1]:.0f} | {t['compile_s'][0]:.1f}"
                     f" | {t['final_return'][0]:.1f} ± {t['final_return'][1]:.1f} |")
    ratio = table["tandem"]["sps"][0] / table["purejaxrl"]["sps"][0]
    lines.append(f"\nratio tandem / PureJaxRL steps/s: {ratio:.2f}x; tandem eval return "
                 f"{statistics.fmean(r['eval_return'] for r in runs['tandem']):.1f}")
    if vm:
        vr = vm["tandem"]["sps"] / vm["purejaxrl"]["sps"]
        lines.append(f"{a.vmapped} seeds vmapped: tandem {a.vmapped * vm['tandem']['sps']:.0f}, "
                     f"PureJaxRL {a.vmapped * vm['purejaxrl']['sps']:.0f} steps/s total "
                     f"({vr:.2f}x)")
    text = "\n".join(lines)
    print(text)
    result = {"config": CONFIG, "steps": a.steps, "seeds": seeds, "runs": runs, "vmapped": vm,
              "table": table, "ratio_tandem_purejaxrl": ratio, "markdown": text,
              "load_before": load_before, "load_after": os.getloadavg(),
              "machine": platform.platform(), "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
