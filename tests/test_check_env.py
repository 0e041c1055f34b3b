"""The env checker (issue #7): each way an env can break training gives one message saying
what to fix; it runs before training and as `tandem check-env`."""

import gymnasium as gym
import numpy as np
import pytest

from tandem import EnvError, train
from tandem.cli import main
from tandem.envs.check import check_env
from tests.conftest import TINY
from tests.envs import LineEnv, line_env


class Broken(LineEnv):
    """LineEnv with one defect chosen by name."""

    def __init__(self, defect: str):
        super().__init__(terminate=False)
        self.defect = defect

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed)
        if self.defect == "float64":
            obs = obs.astype(np.float64)
        if self.defect == "shape":
            obs = obs[:1]
        if self.defect == "random_reset":
            obs = obs + np.random.uniform(0.01, 0.02)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.defect == "nan_reward" and self.t == 3:
            reward = float("nan")
        if self.defect == "int_flag":
            terminated = 0
        if self.defect == "old_api":
            return obs, reward, terminated or truncated, info
        if self.defect == "array_reward":
            reward = np.array([reward, reward])
        return obs, reward, terminated, truncated, info


class Bounded(LineEnv):
    def __init__(self):
        super().__init__(terminate=False)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)  # t exceeds 1


class OldReset(LineEnv):
    def reset(self):  # no seed / options keywords
        return super().reset()


@pytest.mark.parametrize("defect,message", [
    ("float64", "cast it in the env"),
    ("shape", r"shape \(1,\), but the observation space declares \(2,\)"),
    ("nan_reward", r"step 3 returned a non-finite reward"),
    ("int_flag", "terminated=0 of type int: it must be a bool"),
    ("old_api", r"returned 4 values \(the old Gym API"),
    ("array_reward", "reward of type ndarray: it must be one number"),
])
def test_each_defect_has_its_message(defect, message):
    with pytest.raises(EnvError, match=message):
        check_env(gym.wrappers.TimeLimit(Broken(defect), 20))


def test_observation_outside_the_declared_bounds():
    with pytest.raises(EnvError, match=r"outside the declared space: flat index 1 is 2\.0"):
        check_env(gym.wrappers.TimeLimit(Bounded(), 20))


def test_reset_without_the_seed_keyword():
    with pytest.raises(EnvError, match="reset must accept the seed and options keywords"):
        check_env(gym.wrappers.TimeLimit(OldReset(terminate=False), 20))


def test_episodes_that_never_end_need_a_time_limit():
    with pytest.raises(EnvError, match="no episode ended in 300 random steps and the env has no "
                       "time limit"):
        check_env(LineEnv(terminate=False))
    assert check_env(gym.wrappers.TimeLimit(LineEnv(terminate=False), 50)) == []


def test_unreproducible_reset_is_a_warning():
    warnings = check_env(gym.wrappers.TimeLimit(Broken("random_reset"), 20))
    assert len(warnings) == 1 and "will not match an uninterrupted one exactly" in warnings[0]


def test_registered_envs_pass_and_the_check_leaves_the_instance_alone():
    assert check_env("Pendulum-v1") == [] and check_env("CartPole-v1") == []
    env = line_env()
    env.reset(seed=3)
    before = list(env.unwrapped.actions)
    check_env(env)
    assert env.unwrapped.actions == before  # checked on a copy


def test_training_checks_the_env_first(tmp_path):
    with pytest.raises(EnvError, match="cast it in the env"):
        train(TINY, gym.wrappers.TimeLimit(Broken("float64"), 20), steps=100,
              out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # nothing was written


def test_check_env_cli(capsys):
    assert main(["check-env", "CartPole-v1", "--steps", "50"]) == 0
    assert '"ok": true' in capsys.readouterr().out
    assert main(["check-env", "NoSuchEnv-v0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown env id" in err
    gym.register("tandem-test/NeverEnds-v0", entry_point="tests.envs:LineEnv",
                 kwargs={"terminate": False})
    assert main(["check-env", "tandem-test/NeverEnds-v0", "--steps", "40"]) == 2
    assert "TimeLimit" in capsys.readouterr().err


def test_module_qualified_ids_import_their_module():
    from tandem.envs.resolve import resolve_env
    resolve_env("gymnasium.envs.classic_control:Pendulum-v1")
    with pytest.raises(EnvError, match="cannot import module 'no_such_module'"):
        resolve_env("no_such_module:Thing-v0")
