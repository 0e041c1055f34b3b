"""Every user mistake gets a clear TandemError (the CLI turns it into one line, exit 2)."""

import json

import gymnasium as gym
import numpy as np
import pytest

from tandem import CheckpointError, ConfigError, EnvError, evaluate, load, resume, train
from tests.conftest import TINY
from tests.envs import DiscreteActionEnv, ImageObsEnv, LineEnv, line_env


def test_discrete_actions_name_what_fits(tmp_path):
    with pytest.raises(EnvError, match=r"SAC needs continuous \(Box\) actions but CartPole-v1 "
                                        r"has Discrete\(2\); tandem algorithms for it: a2c, impala, ppo"):
        train(TINY, "CartPole-v1", steps=10, out=tmp_path / "r")
    with pytest.raises(EnvError, match="Discrete"):
        train(TINY, DiscreteActionEnv(), steps=10, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # nothing written for a rejected env


def test_image_observations_not_supported_yet(tmp_path):
    with pytest.raises(EnvError, match="image observations are not supported yet"):
        train(TINY, ImageObsEnv(), steps=10, out=tmp_path / "r")


@pytest.mark.parametrize("bad, what", [("reward", "non-finite reward"),
                                       ("obs", "non-finite observation")])
def test_nan_from_env_names_the_step(tmp_path, bad, what):
    # the training loop's own guard (the env check run before training would catch this env
    # first, with its own message: tests/test_check_env.py)
    env = line_env(max_steps=100, terminate=False, bad_step=37, bad=bad)
    with pytest.raises(EnvError, match=f"{what}.* at env step 36 \\(episode 0\\)"):
        train(TINY, env, steps=100, out=tmp_path / "r", progress=False, check_env=False)


def test_unknown_env_id_suggests_close_names(tmp_path):
    with pytest.raises(EnvError, match="unknown env id 'Pendulm-v1'; did you mean Pendulum-v1"):
        train(TINY, "Pendulm-v1", steps=10, out=tmp_path / "r")
    with pytest.raises(EnvError, match="did you mean HalfCheetah-v5"):
        train(TINY, "halfcheetah", steps=10, out=tmp_path / "r")


def test_unbounded_actions_rejected(tmp_path):
    env = LineEnv()
    env.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    with pytest.raises(EnvError, match="infinite bounds"):
        train(TINY, env, steps=10, out=tmp_path / "r")


def test_bad_train_arguments(tmp_path):
    with pytest.raises(ConfigError, match="steps=0"):
        train(TINY, line_env(), steps=0, out=tmp_path / "r")
    with pytest.raises(ConfigError, match="must be a tandem config"):
        train({"tau": 0.1}, line_env(), steps=10, out=tmp_path / "r")


def test_missing_and_foreign_runs(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a tandem run folder"):
        resume(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="corrupt"):
        evaluate(tmp_path / "junk")


def test_checkpoint_from_another_algorithm(tmp_path):
    train(TINY, line_env(), steps=60, out=tmp_path / "r", progress=False)
    ckpt = next((tmp_path / "r" / "checkpoints").glob("step_*"))
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["algo"] = "td3"
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="is a 'td3' checkpoint, not 'sac'"):
        load(tmp_path / "r")


def test_corrupt_checkpoint_and_existing_run_lose_nothing(tmp_path):
    train(TINY, line_env(), steps=60, out=tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(TINY, line_env(), steps=60, out=tmp_path / "r")
    ckpt = next((tmp_path / "r" / "checkpoints").glob("step_*"))
    blob = bytearray((ckpt / "arrays.safetensors").read_bytes())
    blob[-3] ^= 0xFF
    (ckpt / "arrays.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupt"):
        resume(tmp_path / "r", steps=10, env=line_env())


def test_instance_run_needs_the_env_to_resume(tmp_path):
    train(TINY, LineEnv(), steps=60, out=tmp_path / "r", progress=False)
    with pytest.raises(EnvError, match="pass the env"):
        resume(tmp_path / "r", steps=10)


def test_registered_custom_env_by_id(tmp_path):
    if "tandem-test/Line-v0" not in gym.registry:
        gym.register("tandem-test/Line-v0", entry_point="tests.envs:LineEnv",
                     max_episode_steps=20)
    run = train(TINY, "tandem-test/Line-v0", steps=80, seed=0, out=tmp_path / "r",
                progress=False)
    assert run.summary["env"] == "tandem-test/Line-v0"
    # the run can be evaluated and resumed by id alone, like a built-in env
    assert evaluate(tmp_path / "r", episodes=2)["eval/episodes"] == 2
    assert resume(tmp_path / "r", steps=20, progress=False).summary["steps"] == 100
