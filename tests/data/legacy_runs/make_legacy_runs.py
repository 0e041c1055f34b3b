"""How the run folders beside this file were made: at commit f007158 (before the run-lifecycle
redesign of issue 14), one tiny run per driver, so that tests/test_legacy_runs.py can check
that folders written by that version still load, evaluate and resume.

This script ran once, with that commit's tandem (`git worktree add /tmp/old f007158`, then
``PYTHONPATH=/tmp/old/src JAX_PLATFORMS=cpu python make_legacy_runs.py``). It is kept as the
record of what the folders hold; it is not part of the tests and needs that old API.

Each folder also holds ``expected.json``: the deterministic actions the old code's loaded
policy gave on a few fixed observations, and the old evaluation result.
"""

import json
import shutil
from pathlib import Path

import numpy as np

from tandem import IMPALAConfig, PPOConfig, SACConfig, evaluate, load, train

HERE = Path(__file__).parent
TINY_SAC = dict(hidden_sizes=(16, 16), batch_size=32, buffer_size=400, learning_starts=50,
                eval_episodes=1, log_every=50, checkpoint_every=100)
OBS = {"Pendulum-v1": [[1.0, 0.0, 0.0], [0.0, 1.0, -2.0], [-0.5, 0.8, 4.0]],
       "gymnax:Pendulum-v1": [[1.0, 0.0, 0.0], [0.0, 1.0, -2.0], [-0.5, 0.8, 4.0]],
       "CartPole-v1": [[0.0, 0.0, 0.0, 0.0], [0.1, -0.5, 0.05, 0.3], [-0.2, 0.4, -0.1, -0.6]],
       "gymnax:CartPole-v1": [[0.0, 0.0, 0.0, 0.0], [0.1, -0.5, 0.05, 0.3],
                              [-0.2, 0.4, -0.1, -0.6]]}


def record(name: str, env: str, run_dir: Path, compiled: bool = False) -> None:
    policy = load(run_dir)
    obs = np.asarray(OBS[env], np.float32)
    actions = [np.asarray(policy.act(o)).tolist() for o in obs]
    result = evaluate(run_dir, episodes=2)
    (run_dir / "eval.json").unlink(missing_ok=True)
    (run_dir / "expected.json").write_text(json.dumps(
        {"name": name, "env": env, "obs": OBS[env], "actions": actions,
         "eval_return_mean": result["eval/return_mean"], "compiled": compiled}, indent=1))


def fresh(name: str) -> Path:
    d = HERE / name
    shutil.rmtree(d, ignore_errors=True)
    return d


def main() -> None:
    d = fresh("host_sac")
    train(SACConfig(**TINY_SAC, normalize_obs=True, eval_every=100), "Pendulum-v1", steps=150,
          seed=0, out=d, progress=False)
    record("host_sac", "Pendulum-v1", d)

    d = fresh("host_ppo")
    train(PPOConfig(hidden_sizes=(16, 16), n_envs=2, n_steps=32, n_minibatches=2,
                    normalize_obs=True, normalize_reward=True, eval_episodes=1, log_every=64,
                    checkpoint_every=64), "CartPole-v1", steps=128, seed=0, out=d,
          progress=False)
    record("host_ppo", "CartPole-v1", d)

    d = fresh("compiled_sac")
    train(SACConfig(**TINY_SAC), "gymnax:Pendulum-v1", steps=200, seeds=[0, 1], out=d,
          progress=False)
    record("compiled_sac", "gymnax:Pendulum-v1", d, compiled=True)

    d = fresh("compiled_ppo")
    train(PPOConfig(hidden_sizes=(16, 16), n_envs=2, n_steps=32, n_minibatches=2,
                    eval_episodes=1, log_every=64, checkpoint_every=64), "gymnax:CartPole-v1",
          steps=128, seeds=[0, 1], out=d, progress=False)
    record("compiled_ppo", "gymnax:CartPole-v1", d, compiled=True)

    d = fresh("ray_sac_workers")
    train(SACConfig(**TINY_SAC, workers=1, worker_steps=25), "Pendulum-v1", steps=150, seed=0,
          out=d, progress=False)
    record("ray_sac_workers", "Pendulum-v1", d)

    d = fresh("ray_impala")
    train(IMPALAConfig(hidden_sizes=(16, 16), workers=1, envs_per_worker=2, n_steps=8,
                       rollouts_per_update=1, eval_episodes=1, log_every=64,
                       checkpoint_every=64), "CartPole-v1", steps=160, seed=0, out=d,
          progress=False)
    record("ray_impala", "CartPole-v1", d)


if __name__ == "__main__":
    main()
