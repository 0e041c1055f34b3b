"""Marked learning tests (run with `pytest -m learning`): the agents really learn."""

import pytest

from tandem import (A2CConfig, DDPGConfig, IMPALAConfig, PPOConfig, SACConfig, TD3Config, evaluate,
                    train)


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1])
def test_sac_learns_pendulum(tmp_path, seed):
    # Issue #2: mean eval return >= -300 on Pendulum-v1 within 15,000 steps, default config.
    run = train(SACConfig(), "Pendulum-v1", steps=15_000, seed=seed, out=tmp_path / "r",
                progress=False)
    assert run.summary["eval/return_mean"] >= -300, run.summary


@pytest.mark.learning
@pytest.mark.parametrize("cfg", [TD3Config(), DDPGConfig()], ids=["td3", "ddpg"])
def test_deterministic_policies_learn_pendulum(tmp_path, cfg):
    # Issue #3: TD3 and DDPG reach mean eval return >= -300 within 20,000 steps (defaults).
    run = train(cfg, "Pendulum-v1", steps=20_000, seed=0, out=tmp_path / "r", progress=False)
    assert run.summary["eval/return_mean"] >= -300, run.summary


# Issue #4. Hyperparameters from RL Zoo's tuned PPO for each env (docs/ppo.md lists them); the
# budgets are the documented ones.
PPO_CARTPOLE = PPOConfig(n_envs=8, n_steps=32, n_minibatches=1, n_epochs=20, gamma=0.98,
                         gae_lambda=0.8, learning_rate=1e-3, anneal_lr=True)
PPO_PENDULUM = PPOConfig(n_envs=4, n_steps=1024, n_minibatches=64, n_epochs=10, gamma=0.9,
                         learning_rate=1e-3, anneal_lr=True)


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_learns_cartpole(tmp_path, seed):
    # mean eval return >= 475 on CartPole-v1 within 100,000 steps (8 Gymnasium envs)
    run = train(PPO_CARTPOLE, "CartPole-v1", steps=100_000, seed=seed, out=tmp_path / "r",
                progress=False)
    assert run.summary["eval/return_mean"] >= 475, run.summary


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_learns_pendulum(tmp_path, seed):
    # mean eval return >= -300 on Pendulum-v1 within 102,400 steps (25 rollouts of 4 x 1024)
    run = train(PPO_PENDULUM, "Pendulum-v1", steps=102_400, seed=seed, out=tmp_path / "r",
                progress=False)
    assert run.summary["eval/return_mean"] >= -300, run.summary


@pytest.mark.learning
def test_compiled_ppo_learns_gymnax_cartpole_for_every_vmapped_seed(tmp_path):
    sweep = train(PPO_CARTPOLE, "gymnax:CartPole-v1", steps=100_000, seeds=2,
                  out=tmp_path / "r", progress=False)
    assert min(sweep.summary["eval/return_per_seed"]) >= 475, sweep.summary


@pytest.mark.learning
def test_a2c_learns_cartpole(tmp_path):
    # A2C's defaults (SB3's) with 8 envs: mean eval return >= 475 within 200,000 steps
    run = train(A2CConfig(n_envs=8), "CartPole-v1", steps=200_000, seed=0, out=tmp_path / "r",
                progress=False)
    assert run.summary["eval/return_mean"] >= 475, run.summary


@pytest.mark.learning
def test_impala_learns_cartpole_with_two_ray_workers(tmp_path):
    # Issue #6: IMPALA's defaults (2 Ray rollout workers x 4 envs, 5-step trajectories, 2 per
    # update) in a local Ray started by tandem; mean eval return >= 475 within 200,000 steps.
    # Asynchronous collection makes a run a random draw even with a fixed seed, and A2C-style
    # learners dip on CartPole: the final policy ended >= 475 in 15 of 16 measured runs; one
    # CI run ended at 203.3 (docs/distributed.md). So the test judges what a user keeps: the
    # best of the evaluations every 10,000 steps, saved as the best checkpoint, which must
    # reload to the same score.
    import ray
    out = tmp_path / "r"
    try:
        run = train(IMPALAConfig(eval_every=10_000), "CartPole-v1", steps=200_000, seed=0,
                    out=out, progress=False)
    finally:
        ray.shutdown()
    best = run.summary["best"]
    assert best["eval/return_mean"] >= 475, run.summary
    assert run.summary["rollout/worker_restarts"] == 0
    again = evaluate(out, episodes=IMPALAConfig().eval_episodes, best=True)
    assert again["eval/return_mean"] == best["eval/return_mean"]


# Issue 22: SAC learns HalfCheetah-v5 as SB3 does (docs/sac.md). At 30,000 steps a seed of any
# library can stay below 300 (SB3's seeds 0-9 in benchmarks/sac_returns.py: 215 / 993 / 1,184 /
# 2,362 / 555 / 794 / 144 / 279 / 265 / 310), so the test asks that the best of four seeds reaches
# 500, which SB3 reaches on 5 of those 10 seeds (1-5). Four, not two: over all 45 seed pairs the
# better of two misses 500 for 22% of SB3's pairs, and CI failed on exactly that after the machine
# changed on 2026-12-07 (to a 2x faster one with AVX-512: JAX's results differ in the last bits,
# the policy at step 1,000 agrees to 1e-7 and the runs part within the next 1,000 updates, and
# tandem's seeds 0-9 became -8 / 26 / 235 / 762 / 354 / 367 / 711 / 66 / 814 / 804, against 1,663
# / 127 / 806 / 1,954 / ... before; SB3's seeds 0 and 1 give the same scores to the last digit).
# The best of four misses for 2% of SB3's 4-seed sets and 3% of tandem's (its 20 runs on both
# machines), and catches the old tandem (lecun-normal kernels, zero biases, exact squash
# correction: 169 / 381 / 369 / 313 / 278 / 335 / 840 / 190 / 178 / 742) in 67% of its sets,
# including seeds 0-3 (best 381); the pair caught it in 62%.
HALFCHEETAH_STEPS = 30_000
HALFCHEETAH_SEEDS = (0, 1, 2, 3)
HALFCHEETAH_MIN = 500.0


@pytest.mark.learning
def test_sac_learns_halfcheetah_as_sb3(tmp_path):
    """Four seeds of `tandem train sac` with its defaults (SB3's) on HalfCheetah-v5 for 30,000
    steps, each a CLI process pinned to a core, two per core (392 s on 2 cores); the best
    seed's final 10-episode evaluation must reach HALFCHEETAH_MIN."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    cores = sorted(os.sched_getaffinity(0))
    tandem = shutil.which("tandem", path=os.path.dirname(sys.executable))
    env = dict(os.environ, OMP_NUM_THREADS="1", JAX_PLATFORMS="cpu")  # as sac_returns.py
    procs = []
    for i, seed in enumerate(HALFCHEETAH_SEEDS):
        cmd = [tandem, "train", "sac", "--env", "HalfCheetah-v5",
               "--steps", str(HALFCHEETAH_STEPS), "--seed", str(seed),
               "--out", str(tmp_path / f"seed_{seed}"), "--checkpoint-every", "0",
               "--progress", "lines"]
        core = {cores[i % len(cores)]}
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True,
                                      preexec_fn=lambda c=core: os.sched_setaffinity(0, c)))
    outs = [p.communicate(timeout=1_200)[0] for p in procs]
    scores = {}
    for seed, p, out in zip(HALFCHEETAH_SEEDS, procs, outs):
        assert p.returncode == 0, out[-3000:]
        summary = json.loads((tmp_path / f"seed_{seed}" / "summary.json").read_text())
        assert summary["steps"] == HALFCHEETAH_STEPS, summary
        scores[seed] = summary["eval/return_mean"]
    print("HalfCheetah-v5 30k final eval per seed:", scores)
    assert max(scores.values()) >= HALFCHEETAH_MIN, scores
