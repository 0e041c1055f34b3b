#!/usr/bin/env python
"""Latency of one action (issue 20): an exported ONNX policy in onnxruntime against
``load(run).act`` (JAX), and against an ONNX export of the same-size Stable-Baselines3 policy.

    python benchmarks/deploy_latency.py                 # writes results/deploy_latency.json
    python benchmarks/deploy_latency.py --calls 200     # a quick look

The policy: tandem's SAC with its defaults (two hidden layers of 256, ReLU) on HalfCheetah-v5's
spaces (17 observations, 6 actions), from a run folder of 300 training steps (latency does not
depend on what the weights learned). SB3: its SAC with the same architecture, the
deterministic actor (mean -> tanh -> scaling to the bounds, as in SB3's ONNX export recipe)
exported with torch.onnx. Every ONNX session gets one intra-op thread (the deployment
setting: one core, no contention with a control loop beside it); JAX runs as it does by
default, and torch is limited to one thread. Each timing is one ``act`` call on one
observation (batch 1) or 64 (batch 64), after warm-up, reported as p50 and p99 over
``--calls`` calls, in microseconds; the machine's load is recorded before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from sac_returns import cpu_model  # noqa: E402


def timings(fn, obs, calls: int) -> dict:
    for _ in range(max(20, calls // 10)):  # warm-up (JAX's first call compiles)
        fn(obs)
    t = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn(obs)
        t[i] = time.perf_counter() - t0
    return {"p50_us": float(np.percentile(t, 50) * 1e6),
            "p99_us": float(np.percentile(t, 99) * 1e6), "calls": calls}


def tandem_policies(work: Path):
    from tandem import SACConfig, load, train
    from tandem.api import export
    from tandem.deploy import OnnxPolicy
    run = work / "run"
    train(SACConfig(learning_starts=100, checkpoint_every=0, eval_episodes=1), "HalfCheetah-v5",
          steps=300, seed=0, out=run, progress=False)
    export(run, work / "tandem.onnx")
    return load(run), OnnxPolicy(work / "tandem.onnx", threads=1), work / "tandem.onnx"


def sb3_onnx(work: Path) -> Path:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    torch.set_num_threads(1)
    env = gym.make("HalfCheetah-v5")
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": [256, 256]}, device="cpu")
    low = torch.as_tensor(env.action_space.low)
    high = torch.as_tensor(env.action_space.high)

    class Deterministic(torch.nn.Module):  # SB3's recipe: the actor's mean action, scaled
        def __init__(self, actor):
            super().__init__()
            self.actor = actor

        def forward(self, obs):
            a = self.actor(obs, deterministic=True)  # tanh(mean) in [-1, 1]
            return low + (a + 1.0) * 0.5 * (high - low)

    path = work / "sb3.onnx"
    torch.onnx.export(Deterministic(model.policy.actor), torch.zeros(1, 17), str(path),
                      input_names=["obs"], output_names=["action"], opset_version=18,
                      dynamic_axes={"obs": {0: "N"}, "action": {0: "N"}}, dynamo=False)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--json", default=str(HERE / "results" / "deploy_latency.json"))
    a = p.parse_args()
    import onnxruntime as ort

    load0 = os.getloadavg()
    rng = np.random.default_rng(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jax_policy, onnx_policy, tandem_path = tandem_policies(work)
        sb3_path = sb3_onnx(work)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        sb3 = ort.InferenceSession(str(sb3_path), opts, providers=["CPUExecutionProvider"])
        raw = ort.InferenceSession(str(tandem_path), opts, providers=["CPUExecutionProvider"])
        for batch in (1, 64):
            obs = rng.standard_normal((batch, 17)).astype(np.float32)
            results[f"batch {batch}"] = {
                "tandem load(run).act (JAX)": timings(jax_policy.act, obs, a.calls),
                "tandem OnnxPolicy.act": timings(onnx_policy.act, obs, a.calls),
                "tandem ONNX, session.run": timings(
                    lambda o: raw.run(None, {"obs": o}), obs, a.calls),
                "SB3 ONNX, session.run": timings(
                    lambda o: sb3.run(None, {"obs": o}), obs, a.calls)}
        same = np.abs(onnx_policy.act(obs) - jax_policy.act(obs)).max()
    for batch, row in results.items():
        base = row["tandem load(run).act (JAX)"]["p50_us"]
        peer = row["SB3 ONNX, session.run"]["p50_us"]
        for name, r in row.items():
            r["p50_vs_jax"] = r["p50_us"] / base
            r["p50_vs_sb3_onnx"] = r["p50_us"] / peer
        print(batch)
        for name, r in row.items():
            print(f"  {name:30s} p50 {r['p50_us']:8.1f} us  p99 {r['p99_us']:8.1f} us  "
                  f"({r['p50_vs_jax']:.3f}x JAX's p50)")
    import onnxruntime
    import jax
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
           "cpu": cpu_model(), "cpus": os.cpu_count(), "load_before": load0,
           "load_after": os.getloadavg(), "policy": "SAC defaults (256, 256) ReLU, obs 17, "
           "action 6 (HalfCheetah-v5)", "onnx_threads": 1,
           "versions": {"onnxruntime": onnxruntime.__version__, "jax": jax.__version__},
           "max_abs_action_difference_onnx_vs_jax": float(same), "results": results}
    Path(a.json).write_text(json.dumps(out, indent=1))
    print(f"-> {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
