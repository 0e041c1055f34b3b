#!/usr/bin/env python
"""Side-by-side SAC speed benchmark: tandem vs Stable-Baselines3 (PyTorch) vs SBX (JAX).

Every (library, env, seed) run trains in its own fresh Python subprocess, so thread pools, JIT
caches and imported frameworks never leak from one library into another. All three libraries
get the same SAC hyperparameters (see ``HP`` below and benchmarks/README.md).

    python benchmarks/sac_speed.py                       # full benchmark (see README for time)
    python benchmarks/sac_speed.py --envs Pendulum-v1 --seeds 0 --steps-pendulum 1200 \
        --libs sb3,sbx --out /tmp/sac_speed.json         # quick smoke test

Reported per run:
  steps/s          env steps / wall time of the whole learn/train call (JIT compile included)
  steps/s 2nd half env steps / wall time from the first multiple of 1000 steps at or past
                   half the budget to the end (compile-free for all three libraries)
  eval return      mean return of 10 deterministic episodes after training, reset seeds
                   seed + 1_000_003 + i for every library

and, once per env, tandem's compute ceiling: median times of one jitted SAC update (batch
256), one env.step with random actions and one jitted action call; ceiling = 1 / (sum).

The parent process imports no ML framework; it only starts children and aggregates.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# ------------------------------------------------------------------------------ settings
# One set of hyperparameters for all three libraries.
HP = {
    "batch_size": 256,
    "hidden_sizes": [256, 256],     # actor and each critic
    "n_critics": 2,
    "learning_rate": 3e-4,          # actor, critics and temperature
    "gamma": 0.99,
    "tau": 0.005,
    "buffer_size": 1_000_000,
    "learning_starts": 1000,
    "train_freq": 1,
    "gradient_steps": 1,
    "init_alpha": 1.0,              # automatic entropy temperature, initial value
    "target_entropy": "-|A|",
    "eval_episodes": 10,
}
EVAL_SEED_OFFSET = 1_000_003        # eval episode i of seed s resets with s + OFFSET + i
MARK_EVERY = 1000                   # the "2nd half" window starts at a multiple of this
                                    # (tandem logs time/sps every 1000 steps by default)
TORCH_THREADS_DEFAULT = 2
CHILD_ENV = {"OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu"}
LIB_NAMES = {"tandem": "tandem", "sb3": "SB3", "sbx": "SBX"}
PACKAGES = ["tandem-rl", "jax", "jaxlib", "flax", "optax", "gymnasium", "mujoco", "numpy",
            "torch", "stable-baselines3", "sbx-rl", "tfp-nightly"]


def half_mark(steps: int) -> int | None:
    """First multiple of MARK_EVERY at or past steps/2; None when the run is too short."""
    mark = int(math.ceil(steps / 2 / MARK_EVERY) * MARK_EVERY)
    return mark if 0 < mark < steps else None


# ============================================================================ children
def _eval_sb3_model(model, env_id: str, seed: int, episodes: int) -> list[float]:
    """Deterministic returns of an SB3/SBX model, same reset seeds as tandem's evaluation."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def child_sb3_like(spec: dict) -> dict:
    """One SB3 (PyTorch) or SBX (JAX) SAC run."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    lib, env_id, seed, steps = spec["lib"], spec["env"], spec["seed"], spec["steps"]
    torch.set_num_threads(spec["torch_threads"])
    if lib == "sb3":
        from stable_baselines3 import SAC
    else:
        from sbx import SAC

    class Clock(BaseCallback):
        """Wall clock at the half-budget mark (called after each env step)."""

        def __init__(self, mark: int | None) -> None:
            super().__init__()
            self.mark, self.t_mark, self.n_mark = mark, None, None

        def _on_step(self) -> bool:
            if self.t_mark is None and self.mark is not None and self.num_timesteps >= self.mark:
                self.t_mark, self.n_mark = time.perf_counter(), self.num_timesteps
            return True

    t0 = time.perf_counter()
    kwargs = dict(
        batch_size=HP["batch_size"],
        policy_kwargs=dict(net_arch=list(HP["hidden_sizes"]), n_critics=HP["n_critics"]),
        learning_rate=HP["learning_rate"], buffer_size=HP["buffer_size"],
        learning_starts=HP["learning_starts"], train_freq=HP["train_freq"],
        gradient_steps=HP["gradient_steps"], gamma=HP["gamma"], tau=HP["tau"],
        ent_coef=f"auto_{HP['init_alpha']}", target_entropy="auto", seed=seed, device="cpu",
        verbose=0)
    if lib == "sbx":
        # SBX-only knobs, set to SB3's behaviour: one critic learning rate = learning_rate,
        # actor and temperature updated every gradient step.
        kwargs.update(qf_learning_rate=HP["learning_rate"], policy_delay=1)
    model = SAC("MlpPolicy", gym.make(env_id), **kwargs)
    setup_s = time.perf_counter() - t0

    clock = Clock(half_mark(steps))
    t_start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=clock, progress_bar=False)
    t_end = time.perf_counter()
    wall = t_end - t_start
    done = int(model.num_timesteps)

    returns = _eval_sb3_model(model, env_id, seed, HP["eval_episodes"])
    sps_2nd = None
    if clock.t_mark is not None and t_end > clock.t_mark:
        sps_2nd = (done - clock.n_mark) / (t_end - clock.t_mark)
    return {"steps": done, "wall_s": wall, "sps": done / wall, "sps_2nd_half": sps_2nd,
            "mark_step": clock.n_mark, "setup_s": setup_s,
            "eval_return_mean": statistics.fmean(returns),
            "eval_return_std": statistics.pstdev(returns), "eval_returns": returns,
            "torch_threads": torch.get_num_threads()}


def _tandem_cfg():
    from tandem import SACConfig

    return SACConfig(batch_size=HP["batch_size"], hidden_sizes=tuple(HP["hidden_sizes"]),
                     n_critics=HP["n_critics"], actor_lr=HP["learning_rate"],
                     critic_lr=HP["learning_rate"], alpha_lr=HP["learning_rate"],
                     gamma=HP["gamma"], tau=HP["tau"], buffer_size=HP["buffer_size"],
                     learning_starts=HP["learning_starts"], train_freq=HP["train_freq"],
                     gradient_steps=HP["gradient_steps"], init_alpha=HP["init_alpha"],
                     eval_episodes=HP["eval_episodes"],
                     # no mid-run checkpoints (SB3/SBX write none either); the final one is
                     # written after the timed loop
                     checkpoint_every=0)


def _tandem_sps_after(metrics_csv: Path, mark: int | None) -> tuple[float | None, int | None]:
    """Steps/s over the logged windows that start at or after ``mark`` (from time/sps rows)."""
    if mark is None or not metrics_csv.is_file():
        return None, None
    rows = []
    with open(metrics_csv, newline="") as fh:
        for r in csv.DictReader(fh):
            if r.get("name") == "time/sps":
                rows.append((int(r["step"]), float(r["value"])))
    rows.sort()
    steps_sum, time_sum, prev, first = 0, 0.0, 0, None
    for step, sps in rows:
        if prev >= mark and sps > 0:
            steps_sum += step - prev
            time_sum += (step - prev) / sps
            first = prev if first is None else first
        prev = step
    return (steps_sum / time_sum if time_sum > 0 else None), first


def child_tandem(spec: dict) -> dict:
    """One tandem SAC run (the training loop's own timer: env creation, network init and
    the final evaluation are outside it; JIT compile of update/explore is inside)."""
    from tandem import train

    env_id, seed, steps = spec["env"], spec["seed"], spec["steps"]
    with tempfile.TemporaryDirectory(prefix="tandem_bench_") as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        run = train(_tandem_cfg(), env_id, steps=steps, seed=seed, out=str(out), progress=False)
        total = time.perf_counter() - t0
        s = run.summary
        sps_2nd, mark = _tandem_sps_after(out / "metrics.csv", half_mark(steps))
    wall = float(s["time/wall_s"])
    return {"steps": int(s.get("steps", steps)), "wall_s": wall, "sps": float(s["time/sps"]),
            "sps_2nd_half": sps_2nd, "mark_step": mark, "setup_s": None,
            "train_call_s": total,  # whole train(): + env/net init, final checkpoint, eval
            "eval_return_mean": float(s["eval/return_mean"]),
            "eval_return_std": float(s.get("eval/return_std", float("nan"))),
            "eval_returns": [float(r) for r in s.get("eval/returns", [])]}


def child_ceiling(spec: dict) -> dict:
    """Median per-call times of tandem's jitted update, env.step and jitted action call."""
    import gymnasium as gym
    import jax
    import numpy as np
    from tandem.algos.sac import make_sac
    from tandem.core.spaces import EnvSpec
    from tandem.core.types import Transition

    env_id, calls, warmup = spec["env"], spec["calls"], 20
    env = gym.make(env_id)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    fns = make_sac(_tandem_cfg(), EnvSpec.box(obs_dim, act_dim))
    state = fns.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    B, f32 = HP["batch_size"], np.float32
    # host (NumPy) arrays, as the training loop passes them: the copy to the device is timed
    batch = Transition(obs=rng.standard_normal((1, B, obs_dim)).astype(f32),
                       action=rng.uniform(-1, 1, (1, B, act_dim)).astype(f32),
                       reward=rng.standard_normal((1, B)).astype(f32),
                       next_obs=rng.standard_normal((1, B, obs_dim)).astype(f32),
                       terminated=np.zeros((1, B), f32))

    def timed(fn, n):
        out = []
        for i in range(n):
            t = time.perf_counter_ns()
            fn(i)
            out.append(time.perf_counter_ns() - t)
        return out

    def upd(_):
        nonlocal state
        state, metrics = fns.update_many(state, batch)
        jax.block_until_ready((state, metrics))

    key = jax.random.PRNGKey(1)
    obs = rng.standard_normal(obs_dim).astype(f32)
    noise = np.zeros(act_dim, f32)  # exploration state (unused by SAC)

    def act(i):
        a, _, _ = fns.explore(state.actor_params, None, obs, key, i, noise)
        np.asarray(jax.block_until_ready(a))

    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, (calls + warmup, act_dim)).astype(env.action_space.dtype)
    env.reset(seed=0)
    step_times = []
    for i in range(calls + warmup):
        t = time.perf_counter_ns()
        _, _, terminated, truncated, _ = env.step(actions[i])
        dt = time.perf_counter_ns() - t
        if i >= warmup:
            step_times.append(dt)
        if terminated or truncated:
            env.reset()

    timed(upd, warmup)
    t_update = timed(upd, calls)
    timed(act, warmup)
    t_act = timed(act, calls)
    med = {k: statistics.median(v) / 1e9 for k, v in
           (("update_s", t_update), ("env_step_s", step_times), ("act_s", t_act))}
    total = med["update_s"] + med["env_step_s"] + med["act_s"]
    return {**med, "calls": calls, "ceiling_sps": 1.0 / total,
            "p90": {k: sorted(v)[int(0.9 * len(v))] / 1e9 for k, v in
                    (("update_s", t_update), ("env_step_s", step_times), ("act_s", t_act))}}


def child_main(mode: str, spec: dict, out_path: str) -> int:
    if mode == "ceiling":
        result = child_ceiling(spec)
    else:
        result = {"tandem": child_tandem, "sb3": child_sb3_like,
                  "sbx": child_sb3_like}[spec["lib"]](spec)
    Path(out_path).write_text(json.dumps(result))
    return 0


# ============================================================================ parent
def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def spawn(mode: str, spec: dict, timeout: float) -> tuple[dict | None, str | None, float]:
    """Run one child; returns (result, error text, seconds)."""
    env = dict(os.environ)
    env.update(CHILD_ENV)
    with tempfile.TemporaryDirectory(prefix="sac_speed_") as tmp:
        res_path = Path(tmp) / "result.json"
        cmd = [sys.executable, os.path.abspath(__file__), "--child", mode,
               "--child-spec", json.dumps(spec), "--child-out", str(res_path)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:.0f} s", time.perf_counter() - t0
        secs = time.perf_counter() - t0
        if proc.returncode != 0 or not res_path.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
            return None, f"exit {proc.returncode}: " + "\n".join(tail), secs
        return json.loads(res_path.read_text()), None, secs


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def aggregate(runs: list[dict], libs: list[str], envs: list[str]) -> list[dict]:
    table = []
    for env_id in envs:
        for lib in libs:
            ok = [r for r in runs if r["lib"] == lib and r["env"] == env_id and r["ok"]]
            n_all = sum(1 for r in runs if r["lib"] == lib and r["env"] == env_id)
            row = {"env": env_id, "lib": lib, "seeds_ok": len(ok), "seeds": n_all,
                   "steps": ok[0]["steps"] if ok else None}
            for key in ("sps", "sps_2nd_half", "eval_return_mean", "wall_s"):
                m, s = mean_std([r.get(key) for r in ok])
                row[key] = {"mean": m, "std": s}
            table.append(row)
    return table


def ratios(table: list[dict], envs: list[str]) -> list[dict]:
    def get(env_id, lib, key):
        for row in table:
            if row["env"] == env_id and row["lib"] == lib:
                return row[key]["mean"]
        return None

    def div(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    out = []
    for env_id in envs:
        r = {"env": env_id}
        for other in ("sbx", "sb3"):
            r[f"tandem/{other}"] = div(get(env_id, "tandem", "sps"), get(env_id, other, "sps"))
            r[f"tandem/{other}_2nd_half"] = div(get(env_id, "tandem", "sps_2nd_half"),
                                                get(env_id, other, "sps_2nd_half"))
        out.append(r)
    return out


def _f(x, fmt="{:.0f}"):
    return "n/a" if x is None else fmt.format(x)


def _pm(stat: dict, fmt="{:.0f}"):
    if stat["mean"] is None:
        return "n/a"
    return f"{fmt.format(stat['mean'])} ± {fmt.format(stat['std'])}"


def markdown(result: dict) -> str:
    table, envs = result["table"], result["settings"]["envs"]
    m = result["machine"]
    lines = [
        "SAC, same hyperparameters for every library (batch 256, 2x256 MLPs, 1 gradient step "
        "per env step, lr 3e-4, learning_starts 1000, auto temperature from 1.0). "
        f"Mean ± std over seeds {','.join(map(str, result['settings']['seeds']))}; "
        f"{m['cpu_count']} CPUs, load average before {m['loadavg_before'][0]:.2f}, "
        f"after {m['loadavg_after'][0]:.2f}.",
        "",
        "| env | library | steps | steps/s (whole run) | steps/s (2nd half) "
        "| eval return (10 ep.) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in table:
        n = "" if row["seeds_ok"] == row["seeds"] else f" ({row['seeds_ok']}/{row['seeds']} ok)"
        lines.append(f"| {row['env']} | {LIB_NAMES[row['lib']]}{n} | {_f(row['steps'])} | "
                     f"{_pm(row['sps'])} | {_pm(row['sps_2nd_half'])} | "
                     f"{_pm(row['eval_return_mean'], '{:.1f}')} |")
    libs = result["settings"]["libs"]
    if "tandem" in libs and ({"sbx", "sb3"} & set(libs)):
        lines += ["", "| env | tandem/SBX | tandem/SB3 | tandem/SBX (2nd half) "
                      "| tandem/SB3 (2nd half) |", "|---|---:|---:|---:|---:|"]
        for r in result["ratios"]:
            lines.append(f"| {r['env']} | {_f(r['tandem/sbx'], '{:.2f}')} | "
                         f"{_f(r['tandem/sb3'], '{:.2f}')} | "
                         f"{_f(r['tandem/sbx_2nd_half'], '{:.2f}')} | "
                         f"{_f(r['tandem/sb3_2nd_half'], '{:.2f}')} |")
    if result["ceiling"]:
        lines += ["", "tandem compute ceiling = 1 / (update + env.step + act), median of "
                      f"{result['settings']['ceiling_calls']} calls each:", "",
                  "| env | update (ms) | env.step (ms) | act (ms) | ceiling steps/s "
                  "| tandem steps/s (whole / 2nd half) | fraction of ceiling (whole / 2nd half) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for env_id in envs:
            c = result["ceiling"].get(env_id)
            if not c or not c.get("ok"):
                lines.append(f"| {env_id} | failed | | | | | |")
                continue
            row = next((r for r in table if r["env"] == env_id and r["lib"] == "tandem"), None)
            sps = row["sps"]["mean"] if row else None
            sps2 = row["sps_2nd_half"]["mean"] if row else None
            frac = lambda x: _f(None if x is None else x / c["ceiling_sps"], "{:.2f}")  # noqa
            lines.append(f"| {env_id} | {c['update_s'] * 1e3:.3f} | {c['env_step_s'] * 1e3:.3f} "
                         f"| {c['act_s'] * 1e3:.3f} | {c['ceiling_sps']:.0f} | "
                         f"{_f(sps)} / {_f(sps2)} | {frac(sps)} / {frac(sps2)} |")
    if result["warnings"]:
        lines += [""] + [f"> warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def write_json(path: Path, result: dict, final: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    if final:
        os.replace(tmp, path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", default="Pendulum-v1,HalfCheetah-v5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps-pendulum", type=int, default=10_000)
    p.add_argument("--steps-halfcheetah", type=int, default=5_000)
    p.add_argument("--steps-other", type=int, default=10_000, help="steps for any other env")
    p.add_argument("--libs", default="tandem,sb3,sbx")
    p.add_argument("--out", default="benchmarks/results/sac_speed.json")
    p.add_argument("--torch-threads", type=int, default=TORCH_THREADS_DEFAULT,
                   help="torch.set_num_threads for SB3 and SBX children")
    p.add_argument("--ceiling-calls", type=int, default=1000)
    p.add_argument("--no-ceiling", action="store_true", help="skip the tandem ceiling")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    p.add_argument("--child", choices=("run", "ceiling"), help=argparse.SUPPRESS)
    p.add_argument("--child-spec", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return args
    args.envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.libs = [lib.strip().lower() for lib in args.libs.split(",") if lib.strip()]
    bad = [lib for lib in args.libs if lib not in LIB_NAMES]
    if bad:
        p.error(f"unknown --libs {bad}; choose from {', '.join(LIB_NAMES)}")
    return args


def steps_for(env_id: str, args) -> int:
    if env_id.startswith("Pendulum"):
        return args.steps_pendulum
    if env_id.startswith("HalfCheetah"):
        return args.steps_halfcheetah
    return args.steps_other


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, json.loads(args.child_spec), args.child_out)

    out_path = Path(args.out)
    load_before = list(os.getloadavg())
    warnings = []
    if load_before[0] > 0.5:
        warnings.append(f"1-minute load average was {load_before[0]:.2f} (> 0.5) before the "
                        "benchmark started: the machine was not idle, figures are unreliable")
        print(f"WARNING: {warnings[-1]}", file=sys.stderr, flush=True)
    result = {
        "benchmark": "sac_speed",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [os.path.basename(sys.executable)] + sys.argv,
        "hyperparameters": HP,
        "settings": {"envs": args.envs, "seeds": args.seeds, "libs": args.libs,
                     "steps": {e: steps_for(e, args) for e in args.envs},
                     "child_env": CHILD_ENV, "torch_threads": args.torch_threads,
                     "ceiling_calls": args.ceiling_calls, "eval_seed_offset": EVAL_SEED_OFFSET,
                     "second_half_mark": {e: half_mark(steps_for(e, args)) for e in args.envs}},
        "machine": {"cpu_count": os.cpu_count(), "loadavg_before": load_before,
                    "loadavg_after": None, "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "versions": versions(),
        "warnings": warnings,
        "ceiling": {},
        "runs": [],
        "table": [],
        "ratios": [],
    }
    t_bench = time.perf_counter()

    if "tandem" in args.libs and not args.no_ceiling:
        for env_id in args.envs:
            print(f"[ceiling] tandem on {env_id} ...", file=sys.stderr, flush=True)
            res, err, secs = spawn("ceiling", {"env": env_id, "calls": args.ceiling_calls},
                                   args.timeout)
            result["ceiling"][env_id] = {"ok": err is None, "error": err, "child_s": secs,
                                         **(res or {})}
            if err:
                print(f"  failed: {err}", file=sys.stderr, flush=True)
            else:
                print(f"  update {res['update_s'] * 1e3:.3f} ms, env.step "
                      f"{res['env_step_s'] * 1e3:.3f} ms, act {res['act_s'] * 1e3:.3f} ms -> "
                      f"ceiling {res['ceiling_sps']:.0f} steps/s", file=sys.stderr, flush=True)
            write_json(out_path, result, final=False)

    # Libraries interleaved within each (env, seed) so a drift in machine load hits all alike.
    jobs = [(env_id, seed, lib) for env_id in args.envs for seed in args.seeds
            for lib in args.libs]
    for i, (env_id, seed, lib) in enumerate(jobs, 1):
        steps = steps_for(env_id, args)
        spec = {"lib": lib, "env": env_id, "seed": seed, "steps": steps,
                "torch_threads": args.torch_threads}
        print(f"[{i}/{len(jobs)}] {LIB_NAMES[lib]} {env_id} seed {seed} ({steps} steps) ...",
              file=sys.stderr, flush=True)
        res, err, secs = spawn("run", spec, args.timeout)
        run = {"lib": lib, "env": env_id, "seed": seed, "ok": err is None, "error": err,
               "child_s": secs, "loadavg": list(os.getloadavg()), **(res or {"steps": steps})}
        result["runs"].append(run)
        if err:
            print(f"  failed: {err}", file=sys.stderr, flush=True)
        else:
            s2 = _f(res["sps_2nd_half"])
            print(f"  {res['sps']:.0f} steps/s (2nd half {s2}), eval return "
                  f"{res['eval_return_mean']:.1f}, process {secs:.0f} s",
                  file=sys.stderr, flush=True)
        write_json(out_path, result, final=False)

    result["machine"]["loadavg_after"] = list(os.getloadavg())
    result["total_s"] = time.perf_counter() - t_bench
    result["table"] = aggregate(result["runs"], args.libs, args.envs)
    result["ratios"] = ratios(result["table"], args.envs)
    result["markdown"] = markdown(result)
    write_json(out_path, result, final=True)
    print(result["markdown"])
    print(f"\nraw results: {out_path} ({result['total_s'] / 60:.1f} min)", file=sys.stderr)
    return 0 if all(r["ok"] for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
