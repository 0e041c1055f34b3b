#!/usr/bin/env python
"""Off-policy family benchmarks (issue #3), each run in its own fresh subprocess.

    python benchmarks/offpolicy_family.py                     # all parts (see README for time)
    python benchmarks/offpolicy_family.py --parts td3 --quick # smoke test

Parts:
  td3       tandem TD3 vs Stable-Baselines3 TD3 vs SBX TD3 on Pendulum-v1, same
            hyperparameters (HP_TD3), 3 seeds: steps/s (whole learn call, JIT included) and
            the mean return of 10 deterministic episodes.
  compiled  SAC steps/s: tandem's Gymnasium host loop on Pendulum-v1 vs the compiled loop on
            gymnax:Pendulum-v1 with 1 and 8 vmapped seeds (compile time reported apart); the
            compiled loop with a 1e4 vs a 1e6 buffer (3 interleaved pairs: steps/s must not
            depend on the buffer size); and on brax:halfcheetah tandem's compiled loop vs
            Brax's own SAC trainer (brax.training.agents.sac.train) at equal settings: one
            env, batch 256, one gradient update per env step, 256x256 networks, replay
            1,000 to 1e6, the same env steps; 3 interleaved pairs. Compared figure: steps/s
            of the second half of the run, compile excluded (tandem: the metric rows past
            half-way; Brax: its last epochs' training/sps).
  droq      DroQ vs SAC on Pendulum-v1: SAC's mean eval return at 20k steps, and the env steps
            DroQ (UTD 20) needs to reach it (eval every 500 steps), with wall time per env step.

The parent imports no ML framework; it records the load average before and after.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HP_TD3 = {"learning_rate": 1e-3, "batch_size": 256, "hidden_sizes": [256, 256],
          "buffer_size": 1_000_000, "learning_starts": 1000, "gamma": 0.99, "tau": 0.005,
          "policy_delay": 2, "target_noise": 0.2, "target_noise_clip": 0.5,
          "exploration_sigma": 0.1, "train_freq": 1, "gradient_steps": 1}
EVAL_EPISODES, EVAL_SEED_OFFSET = 10, 1_000_003
CHILD_ENV = {"OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
PACKAGES = ["tandem-rl", "jax", "flax", "optax", "gymnasium", "gymnax", "brax", "torch",
            "stable-baselines3", "sbx-rl"]


# ============================================================================ children
def _eval_model(model, env_id: str, seed: int) -> list[float]:
    import gymnasium as gym
    env, out = gym.make(env_id), []
    for i in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(model.predict(obs, deterministic=True)[0])
            total, done = total + float(r), term or trunc
        out.append(total)
    return out


def child_td3(spec: dict) -> dict:
    lib, seed, steps, env_id = spec["lib"], spec["seed"], spec["steps"], "Pendulum-v1"
    hp = HP_TD3
    if lib == "tandem":
        from tandem import TD3Config, train
        cfg = TD3Config(actor_lr=hp["learning_rate"], critic_lr=hp["learning_rate"],
                        batch_size=hp["batch_size"], hidden_sizes=tuple(hp["hidden_sizes"]),
                        buffer_size=hp["buffer_size"], learning_starts=hp["learning_starts"],
                        gamma=hp["gamma"], tau=hp["tau"], policy_delay=hp["policy_delay"],
                        target_noise=hp["target_noise"],
                        target_noise_clip=hp["target_noise_clip"],
                        exploration_sigma=hp["exploration_sigma"], eval_episodes=EVAL_EPISODES,
                        checkpoint_every=0)
        with tempfile.TemporaryDirectory() as tmp:
            s = train(cfg, env_id, steps=steps, seed=seed, out=Path(tmp) / "r",
                      progress=False).summary
        return {"sps": s["time/sps"], "wall_s": s["time/wall_s"], "returns": s["eval/returns"]}
    import gymnasium as gym
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from stable_baselines3.common.noise import NormalActionNoise
    TD3 = __import__("stable_baselines3" if lib == "sb3" else "sbx", fromlist=["TD3"]).TD3
    env = gym.make(env_id)
    n = env.action_space.shape[0]
    model = TD3("MlpPolicy", env, learning_rate=hp["learning_rate"], batch_size=hp["batch_size"],
                buffer_size=hp["buffer_size"], learning_starts=hp["learning_starts"],
                gamma=hp["gamma"], tau=hp["tau"], policy_delay=hp["policy_delay"],
                target_policy_noise=hp["target_noise"], target_noise_clip=hp["target_noise_clip"],
                train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"],
                action_noise=NormalActionNoise(np.zeros(n), hp["exploration_sigma"] * np.ones(n)),
                policy_kwargs={"net_arch": hp["hidden_sizes"]}, seed=seed, device="cpu",
                verbose=0)
    t0 = time.perf_counter()
    model.learn(steps)
    wall = time.perf_counter() - t0
    return {"sps": steps / wall, "wall_s": wall, "returns": _eval_model(model, env_id, seed)}


def child_compiled(spec: dict) -> dict:
    kind, steps = spec["kind"], spec["steps"]
    from tandem import SACConfig, train
    cfg = SACConfig(checkpoint_every=0, eval_episodes=spec.get("eval_episodes", 0),
                    log_every=min(1000, steps),
                    buffer_size=spec.get("buffer_size", SACConfig().buffer_size))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r"
        if kind == "host":
            s = train(cfg, "Pendulum-v1", steps=steps, seed=0, out=out, progress=False).summary
            return {"sps_per_seed": s["time/sps"], "sps_total": s["time/sps"],
                    "wall_s": s["time/wall_s"], "compile_s": None}
        if kind == "brax_sac":
            return _brax_sac(spec)
        env = {"gymnax": "gymnax:Pendulum-v1", "brax": "brax:halfcheetah"}[kind]
        s = train(cfg, env, steps=steps, seeds=spec["seeds"], out=out, progress=False).summary
        return {"sps_per_seed": s["time/sps"], "sps_total": s["time/sps_total"],
                "sps_2nd_half": _sps_2nd_half(out, steps), "wall_s": s["time/wall_s"],
                "compile_s": s["time/compile_s"], "eval_return_mean": s["eval/return_mean"]}


def _sps_2nd_half(run: Path, steps: int) -> float | None:
    """Steps/s over the log intervals that end past half-way (each row's time/sps covers the
    interval since the previous row, compile time excluded), weighted by steps."""
    import csv
    paths = sorted(run.rglob("metrics.csv"))
    if not paths:
        return None
    with open(paths[0]) as fh:  # long format: step, name, value
        rows = sorted((int(r["step"]), float(r["value"])) for r in csv.DictReader(fh)
                      if r["name"] == "time/sps")
    at = [st for st, _ in rows]
    spans = [(b - a, v) for a, (b, v) in zip([0] + at, rows) if b > steps / 2]
    secs = sum(n / v for n, v in spans if v > 0)
    return sum(n for n, _ in spans) / secs if secs else None


def _brax_sac(spec: dict) -> dict:
    """Brax's own SAC trainer, one env, tandem's SAC defaults where Brax exposes them."""
    import functools

    import jax
    import jax.numpy as jnp
    if "device_put_replicated" not in vars(jax):
        # brax 0.14.2 calls an API that JAX 0.10 removed; this one-device stand-in (stack a
        # leading device axis, put on the device) is what the removed function did.
        jax.device_put_replicated = lambda x, devices: jax.device_put(
            jax.tree.map(lambda a: jnp.stack([a] * len(devices)), x), devices[0])
    from brax import envs
    from brax.training.agents.sac import networks as sac_networks
    from brax.training.agents.sac import train as sac
    env = envs.get_environment("halfcheetah", backend="positional")
    times = []
    t0 = time.perf_counter()
    sac.train(env, num_timesteps=spec["steps"], episode_length=1000, num_envs=1,
              num_eval_envs=1, learning_rate=3e-4, discounting=0.99, seed=0, batch_size=256,
              num_evals=6, min_replay_size=1000, max_replay_size=1_000_000, tau=0.005,
              grad_updates_per_step=1, deterministic_eval=True,
              network_factory=functools.partial(sac_networks.make_sac_networks,
                                                hidden_layer_sizes=(256, 256)),
              progress_fn=lambda step, m: times.append((step, time.perf_counter(), dict(
                  (k, float(v)) for k, v in m.items() if k.startswith("training/")))))
    wall = time.perf_counter() - t0
    # Brax reports training/sps per epoch between evaluations; the first epoch includes the
    # compilation, so the second half (past half-way, as tandem's figure) is compile-free
    last = times[-1][2] if times else {}
    half = [m["training/sps"] for s, _, m in times if s > spec["steps"] / 2
            and m.get("training/sps")]
    return {"sps_per_seed": last.get("training/sps"), "sps_total": last.get("training/sps"),
            "sps_2nd_half": len(half) / sum(1 / x for x in half) if half else None,
            "wall_s": wall, "compile_s": None, "progress": [(s, m) for s, _, m in times]}


def child_droq(spec: dict) -> dict:
    from tandem import DroQConfig, SACConfig
    from tandem.algos import get_algo
    from tandem.core.evaluate import evaluate_policy
    from tandem.envs.gym import make_env
    from tandem.host.offpolicy import OffPolicyDriver
    from tandem.run.driver import Control
    cfg = {"sac": SACConfig, "droq": DroQConfig}[spec["algo"]](checkpoint_every=0)
    genv, eval_env = make_env("Pendulum-v1"), make_env("Pendulum-v1").env
    driver = OffPolicyDriver(cfg, genv, get_algo(cfg.algo).build(cfg, genv.spec), spec["seed"],
                             cfg.algo)
    driver.start()
    curve, train_s = [], 0.0
    for until in range(spec["eval_every"], spec["steps"] + 1, spec["eval_every"]):
        t0 = time.perf_counter()
        driver.advance(until, Control(spec["steps"]))
        train_s += time.perf_counter() - t0
        if until in spec["eval_at"] or until == spec["steps"]:
            ev = evaluate_policy(driver.policy().act, eval_env, spec["episodes"], spec["seed"])
            mean = float(sum(ev["returns"]) / len(ev["returns"]))
            curve.append((until, mean, train_s))
            if spec.get("target") is not None and mean >= spec["target"]:
                break
    return {"curve": curve, "train_s": train_s, "steps": driver.step}


CHILDREN = {"td3": child_td3, "compiled": child_compiled, "droq": child_droq}


# ============================================================================ parent
def spawn(mode: str, spec: dict, timeout: float = 3600) -> dict:
    env = {**os.environ, **CHILD_ENV}
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "r.json"
        cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--spec",
               json.dumps(spec), "--child-out", str(res)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode or not res.is_file():
            err = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            print(f"  FAILED {mode} {spec}: {err}", flush=True)
            return {"error": err, "spec": spec}
        out = {"spec": spec, "child_s": time.perf_counter() - t0,
               "loadavg": list(os.getloadavg()), **json.loads(res.read_text())}
        print(f"  {mode} {spec} -> {json.dumps({k: v for k, v in out.items() if k not in ('curve', 'progress', 'returns', 'spec')})[:300]}", flush=True)
        return out


def _ms(xs):
    xs = [x for x in xs if x is not None]
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (None, None)


def part_td3(seeds, steps) -> dict:
    runs = {lib: [] for lib in ("tandem", "sbx", "sb3")}
    for seed in seeds:  # libraries interleaved within a seed so load drift hits all alike
        for lib in runs:
            runs[lib].append(spawn("td3", {"lib": lib, "seed": seed, "steps": steps}))
    table = {}
    for lib, rs in runs.items():
        table[lib] = {"sps": _ms([r.get("sps") for r in rs]),
                      "return": _ms([statistics.fmean(r["returns"]) for r in rs if "returns" in r])}
    ratios = {f"tandem/{p}": table["tandem"]["sps"][0] / table[p]["sps"][0]
              for p in ("sb3", "sbx") if table[p]["sps"][0]}
    return {"hp": HP_TD3, "steps": steps, "seeds": seeds, "runs": runs, "table": table,
            "sps_ratios": ratios}


def _pairs(a: tuple[str, dict], b: tuple[str, dict], n: int) -> dict:
    """``n`` interleaved pairs of two spawned runs (alternating which goes first), and the
    median ratio a/b of their second-half steps/s."""
    runs: dict[str, list] = {"a": [], "b": []}
    for i in range(n):
        for side in (("a", "b") if i % 2 == 0 else ("b", "a")):
            mode, spec = a if side == "a" else b
            runs[side].append(spawn(mode, spec))
    ratios = [ra["sps_2nd_half"] / rb["sps_2nd_half"] for ra, rb in zip(runs["a"], runs["b"])
              if ra.get("sps_2nd_half") and rb.get("sps_2nd_half")]
    return {"a": a[1], "b": b[1], "runs_a": runs["a"], "runs_b": runs["b"],
            "ratios_a_over_b": ratios,
            "median_ratio": statistics.median(ratios) if ratios else None}


def part_compiled(quick: bool, pairs: int = 3) -> dict:
    n_p, n_b = (1500, 1200) if quick else (4000, 6000)
    rows = {"host_pendulum_1": spawn("compiled", {"kind": "host", "steps": n_p}),
            "gymnax_pendulum_1": spawn("compiled", {"kind": "gymnax", "steps": n_p, "seeds": 1}),
            "gymnax_pendulum_8": spawn("compiled", {"kind": "gymnax", "steps": n_p, "seeds": 8})}
    buffer = _pairs(("compiled", {"kind": "gymnax", "steps": n_p, "seeds": 1,
                                  "buffer_size": 10_000}),
                    ("compiled", {"kind": "gymnax", "steps": n_p, "seeds": 1,
                                  "buffer_size": 1_000_000}), 1 if quick else pairs)
    brax = _pairs(("compiled", {"kind": "brax", "steps": n_b, "seeds": 1}),
                  ("compiled", {"kind": "brax_sac", "steps": n_b}), 1 if quick else pairs)
    return {"steps_pendulum": n_p, "steps_brax": n_b, "rows": rows,
            "buffer_1e4_vs_1e6": buffer, "brax_tandem_vs_brax_sac": brax}


def part_droq(seeds, quick: bool) -> dict:
    sac_steps = 4000 if quick else 20_000
    sac = [spawn("droq", {"algo": "sac", "seed": s, "steps": sac_steps, "eval_every": 1000,
                          "eval_at": [sac_steps], "episodes": 10}) for s in seeds]
    target = statistics.fmean(r["curve"][-1][1] for r in sac if "curve" in r)
    # DroQ costs ~20x SAC per env step on this CPU: one seed, stopped at the target
    droq = [spawn("droq", {"algo": "droq", "seed": s, "steps": 1500 if quick else 4000,
                           "eval_every": 500, "eval_at": list(range(1500, 4001, 500)),
                           "episodes": 10, "target": target}) for s in seeds[:1]]
    reached = [next((st for st, ret, _ in r.get("curve", []) if ret >= target), None)
               for r in droq]
    per_step = {"sac": _ms([r["train_s"] / r["steps"] for r in sac if "train_s" in r]),
                "droq": _ms([r["train_s"] / r["steps"] for r in droq if "train_s" in r])}
    return {"sac_steps": sac_steps, "target_return": target, "sac": sac, "droq": droq,
            "droq_steps_to_target": reached, "wall_s_per_env_step": per_step}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="td3,compiled,droq")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/offpolicy_family.json")
    ap.add_argument("--child")
    ap.add_argument("--spec")
    ap.add_argument("--child-out")
    a = ap.parse_args()
    if a.child:
        Path(a.child_out).write_text(json.dumps(CHILDREN[a.child](json.loads(a.spec))))
        return 0
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "quick": a.quick, "versions": versions,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "loadavg_before": list(os.getloadavg())}}
    t0 = time.perf_counter()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for part in a.parts.split(","):
        print(f"== {part}", flush=True)
        if part == "td3":
            result["td3"] = part_td3([0] if a.quick else [0, 1, 2], 2000 if a.quick else 10_000)
        elif part == "compiled":
            result["compiled"] = part_compiled(a.quick)
        elif part == "droq":
            result["droq"] = part_droq([0] if a.quick else [0, 1], a.quick)
        out.write_text(json.dumps(result, indent=1))  # keep what is done if a later part fails
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    result["wall_s"] = time.perf_counter() - t0
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in result if k in ("wall_s", "machine")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
