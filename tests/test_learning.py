"""Marked learning tests (run with `pytest -m learning`): the agent really learns."""

import pytest

from tandem import SACConfig, train


@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1])
def test_sac_learns_pendulum(tmp_path, seed):
    # Issue #2: mean eval return >= -300 on Pendulum-v1 within 15,000 steps, default config.
    run = train(SACConfig(), "Pendulum-v1", steps=15_000, seed=seed, out=tmp_path / "r",
                progress=False)
    assert run.summary["eval/return_mean"] >= -300, run.summary
