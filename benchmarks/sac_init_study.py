#!/usr/bin/env python
"""Why tandem's SAC trailed SB3 on HalfCheetah (issue 22): one SAC run with a given network
initialisation and squash correction, logging the policy's state over training.

    python benchmarks/sac_init_study.py tandem base HalfCheetah-v5 10 30000 out.jsonl
    python benchmarks/sac_init_study.py sb3 - HalfCheetah-v5 10 30000 out.jsonl

Every run: SB3's SAC defaults on both sides (256x256 ReLU, Adam 3e-4, batch 256, tau 0.005,
gamma 0.99, buffer 1e6, one gradient step per env step, temperature from 1.0 with target
-dim(A), 1,000 random steps); final score = 10 deterministic episodes with reset seeds
seed + 1,000,003 + i (tandem.core.evaluate.evaluate_policy) for both libraries. Every 2,000
steps, on the last 2,000 observations of the replay buffer: the fraction of action dimensions
with |tanh(mean)| above 0.5 / 0.9 / 0.99, mean |pre-tanh mean|, the log-std mean and spread,
the entropy estimate -E[log pi], the mean |u| of sampled pre-tanh actions, and alpha.

tandem variants (``--variant``, applied before tandem builds its functions): a kernel init
for the hidden layers and the output layer, a bias init, and a squash correction, written
``hidden/output/bias/correction``:
  hidden, output: lecun (lecun normal), glorot (variance scaling fan_avg uniform, tandem's old
      output layer), torch (U(+-1/sqrt(fan_in)), PyTorch's nn.Linear, which SB3 gets),
      small (output only: U(+-3e-3), the DDPG paper's final layer)
  bias: zero, torch (U(+-1/sqrt(fan_in)))
  correction: exact (log(1 - tanh(u)^2), the SAC paper), bounded (log(1 - tanh(u)^2 + 1e-6),
      SB3)
Named ones: base = lecun/glorot/zero/exact (tandem before issue 22), sb3 =
torch/torch/torch/bounded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# every run single-threaded (XLA and PyTorch), so two can run side by side on two cores
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402

NAMED = {"base": "lecun/glorot/zero/exact", "sb3": "torch/torch/torch/bounded"}
DIAG_EVERY = 2000  # and once at step 1000: the initial policy on the random-action data


def probe_steps(steps: int) -> list[int]:
    return [1000] + list(range(DIAG_EVERY, steps + 1, DIAG_EVERY))


def diag_stats(mean: np.ndarray, log_std: np.ndarray, u: np.ndarray, logp: np.ndarray,
               alpha: float) -> dict:
    t = np.abs(np.tanh(mean))
    return {"sat50": float((t > 0.5).mean()), "sat90": float((t > 0.9).mean()),
            "sat99": float((t > 0.99).mean()), "abs_mean": float(np.abs(mean).mean()),
            "log_std_mean": float(log_std.mean()), "log_std_sd": float(log_std.std()),
            "entropy": float(-logp.mean()), "abs_u": float(np.abs(u).mean()),
            "alpha": float(alpha)}


# ============================================================================ tandem
def apply_variant(name: str) -> dict:
    """Patch tandem's MLP initialisation and squash correction; returns the parts."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from tandem.core import nets

    hidden, output, bias, correction = NAMED.get(name, name).split("/")
    inits = {"lecun": nn.initializers.lecun_normal(),
             "glorot": nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
             }

    def torch_uniform(key, shape, dtype=jnp.float32, fan_in=None):
        bound = 1.0 / math.sqrt(fan_in if fan_in is not None else shape[0])
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    class StudyMLP(nn.Module):
        hidden_sizes: tuple
        out_dim: int
        activation: str = "relu"
        out_scale: float = 1.0
        dropout: float = 0.0
        layer_norm: bool = False
        deterministic: bool = True
        orthogonal: bool = False

        @nn.compact
        def __call__(self, x):
            act = nets.ACTIVATIONS[self.activation]
            sizes = list(self.hidden_sizes) + [self.out_dim]
            for i, width in enumerate(sizes):
                fan_in = x.shape[-1]
                kind = output if i == len(sizes) - 1 else hidden
                k_init = (inits[kind] if kind not in ("torch", "small") else
                          (lambda k, s, d=jnp.float32, f=fan_in: torch_uniform(k, s, d, f))
                          if kind == "torch" else
                          (lambda k, s, d=jnp.float32: jax.random.uniform(k, s, d, -3e-3,
                                                                          3e-3)))
                b_init = (nn.initializers.zeros if bias == "zero" else
                          (lambda k, s, d=jnp.float32, f=fan_in: torch_uniform(k, s, d, f)))
                x = nn.Dense(width, kernel_init=k_init, bias_init=b_init)(x)
                if i < len(sizes) - 1:
                    x = act(x)
            return x

    nets.NETWORKS["mlp"] = StudyMLP
    # the correction is SAC's config field squash_correction (set in run_tandem)
    return {"hidden": hidden, "output": output, "bias": bias, "correction": correction}


def run_tandem(variant: str, env_id: str, seed: int, steps: int) -> dict:
    parts = apply_variant(variant)
    import gymnasium as gym
    import jax
    import jax.numpy as jnp

    from tandem import SACConfig
    from tandem.algos import get_algo
    from tandem.core.evaluate import evaluate_policy
    from tandem.envs.gym import make_env
    from tandem.host.offpolicy import OffPolicyDriver
    from tandem.run.driver import Control

    cfg = SACConfig(learning_starts=1000, checkpoint_every=0,
                    squash_correction=parts["correction"])
    genv = make_env(env_id, "sac")
    fns = get_algo("sac").build(cfg, genv.spec)
    driver = OffPolicyDriver(cfg, genv, fns, seed, "sac")
    driver.start()
    actor = fns.nets.actor

    @jax.jit
    def probe(params, obs, key):
        dist = actor.apply(params, obs)
        u = dist.loc + dist.scale * jax.random.normal(key, dist.loc.shape)
        return dist.loc, jnp.log(dist.scale), u, dist.log_prob_pre_tanh(u)

    trace = []
    for k, at in enumerate(probe_steps(steps)):
        driver.advance(at, Control(steps))
        rep = driver.replay
        obs = rep.rows(max(0, rep.count - 2000), rep.count)["obs"]
        out = probe(driver.state.actor_params, obs, jax.random.PRNGKey(k))
        trace.append({"step": at, **diag_stats(
            *(np.asarray(x) for x in out), float(np.exp(driver.state.log_alpha)))})
    driver.advance(steps, Control(steps))
    ev = evaluate_policy(driver.policy().act, gym.make(env_id), 10, seed)
    return {**parts, "returns": ev["returns"], "trace": trace}


# ============================================================================ SB3
def run_sb3(env_id: str, seed: int, steps: int) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from tandem.core.evaluate import evaluate_policy

    torch.set_num_threads(1)
    trace = []
    at = set(probe_steps(steps))

    class Probe(BaseCallback):
        def _on_step(self) -> bool:
            n = self.num_timesteps
            if n in at:
                m = self.model
                pos = m.replay_buffer.pos if not m.replay_buffer.full else m.replay_buffer.buffer_size
                obs = torch.as_tensor(m.replay_buffer.observations[max(0, pos - 2000):pos, 0])
                with torch.no_grad():
                    mean, log_std, _ = m.actor.get_action_dist_params(obs)
                    u = mean + log_std.exp() * torch.randn_like(mean)
                    logp = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
                    logp -= torch.log(1 - torch.tanh(u) ** 2 + 1e-6).sum(-1)
                trace.append({"step": n, **diag_stats(
                    mean.numpy(), log_std.numpy(), u.numpy(), logp.numpy(),
                    float(m.log_ent_coef.exp().item()))})
            return True

    model = SAC("MlpPolicy", gym.make(env_id), learning_starts=1000, seed=seed, device="cpu",
                verbose=0)
    model.learn(total_timesteps=steps, callback=Probe())
    ev = evaluate_policy(lambda o: model.predict(o, deterministic=True)[0], gym.make(env_id),
                         10, seed)
    return {"returns": ev["returns"], "trace": trace}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("lib", choices=("tandem", "sb3"))
    p.add_argument("variant", help="tandem: a name or hidden/output/bias/correction; sb3: -")
    p.add_argument("env")
    p.add_argument("seed", type=int)
    p.add_argument("steps", type=int)
    p.add_argument("out", help="JSON lines file to append the run to")
    a = p.parse_args(argv)
    t0 = time.time()
    rec = (run_tandem(a.variant, a.env, a.seed, a.steps) if a.lib == "tandem"
           else run_sb3(a.env, a.seed, a.steps))
    rec = {"lib": a.lib, "variant": NAMED.get(a.variant, a.variant) if a.lib == "tandem"
           else "sb3", "env": a.env, "seed": a.seed, "steps": a.steps,
           "eval": float(np.mean(rec["returns"])), **rec, "wall_s": time.time() - t0,
           "load": os.getloadavg()[0]}
    with open(a.out, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(json.dumps({k: v for k, v in rec.items() if k not in ("trace", "returns")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
