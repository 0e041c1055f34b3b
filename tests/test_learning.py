"""Marked learning tests (run with `pytest -m learning`): the agents really learn."""

import pytest

from tandem import DDPGConfig, SACConfig, TD3Config, train


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
