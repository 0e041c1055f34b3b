"""Divergence guard (issue #7): non-finite losses or parameters stop training with the step and
the last good checkpoint; no checkpoint is ever written with NaN or inf in it."""

import numpy as np
import pytest

from tandem import PPOConfig, TrainingDiverged, resume, train
from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
from tandem.run.guard import check_arrays, check_metrics
from tests.conftest import TINY
from tests.envs import huge_reward_line


def test_check_metrics_and_arrays():
    check_metrics({"train/loss": 1.0, "train/explained_variance": float("nan"),
                   "rollout/x": float("nan")}, 10)
    with pytest.raises(TrainingDiverged, match=r"train/loss became non-finite by env step 10"):
        check_metrics({"train/loss": float("inf")}, 10)
    check_arrays({"state/w": np.ones(3), "state/n": np.arange(3), "replay/o": [np.nan]}, 5)
    with pytest.raises(TrainingDiverged, match="state/w.*not writing them"):
        check_arrays({"state/w": np.array([1.0, np.nan])}, 5)


def test_sac_divergence_stops_training_before_a_nan_checkpoint(tmp_path):
    # random actions until step 50 (a finite checkpoint there), then the first updates
    # overflow; the log line at step 100 stops the run
    with pytest.raises(TrainingDiverged) as info:
        train(TINY.replace(checkpoint_every=50), huge_reward_line(), steps=2_000,
              out=tmp_path / "r", progress=False)
    message = str(info.value)
    assert "non-finite by env step 100" in message, message
    assert "The last checkpoint is at step 50" in message
    ckpt = latest_checkpoint(tmp_path / "r")
    assert ckpt.name == "step_000000000050"
    _, arrays = load_checkpoint(ckpt)
    assert all(np.all(np.isfinite(v)) for k, v in arrays.items()
               if k.startswith("state/") and np.issubdtype(v.dtype, np.floating))
    assert not (tmp_path / "r" / "summary.json").exists()


def test_ppo_divergence_at_its_first_checkpoint_writes_none(tmp_path):
    # the first update (step 50) already overflows: the checkpoint due there is refused
    cfg = PPOConfig(n_envs=1, n_steps=50, n_minibatches=1, hidden_sizes=(16, 16),
                    log_every=1_000, checkpoint_every=50, eval_episodes=1)
    with pytest.raises(TrainingDiverged, match="non-finite by env step 50.*No checkpoint was "
                       "written yet"):
        train(cfg, huge_reward_line(), steps=2_000, out=tmp_path / "r", progress=False)
    assert not list((tmp_path / "r").glob("checkpoints/step_*"))


def test_a_diverged_run_resumes_from_its_last_good_checkpoint(tmp_path):
    # the env is the cause here, so the resumed run diverges again, from step 50, and says so
    env = huge_reward_line()
    with pytest.raises(TrainingDiverged):
        train(TINY.replace(checkpoint_every=50), env, steps=2_000, out=tmp_path / "r",
              progress=False)
    with pytest.raises(TrainingDiverged, match="last checkpoint is at step 50"):
        resume(tmp_path / "r", env=env, progress=False)
