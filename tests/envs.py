"""Tiny analytic envs for tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class LineEnv(gym.Env):
    """1-D position x in [-1, 1]; action moves it; reward -|x|. Terminates when |x| > 0.9 if
    ``terminate`` is set; truncation comes from a TimeLimit wrapper.

    Observations encode the step count so the tests can tell the final observation of an
    episode from the first observation of the next.
    """

    metadata = {"render_modes": []}

    def __init__(self, low=-1.0, high=1.0, terminate=True, bad_step=None, bad="reward"):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(np.float32(low), np.float32(high), (1,), np.float32)
        self.terminate, self.bad_step, self.bad = terminate, bad_step, bad
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-0.5, 0.5)), 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.x, self.t], np.float32)

    def step(self, action):
        self.actions.append(np.array(action, copy=True))
        self.t += 1
        self.x = float(np.clip(self.x + 0.1 * float(np.asarray(action).reshape(-1)[0]), -1, 1))
        reward = -abs(self.x)
        obs = self._obs()
        if self.bad_step is not None and self.t == self.bad_step:
            if self.bad == "reward":
                reward = float("nan")
            else:
                obs[0] = np.inf
        terminated = self.terminate and abs(self.x) > 0.9
        return obs, reward, terminated, False, {}


def line_env(max_steps=20, **kw) -> gym.Env:
    return gym.wrappers.TimeLimit(LineEnv(**kw), max_episode_steps=max_steps)


class DictObsEnv(LineEnv):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.observation_space = gym.spaces.Dict({
            "pos": gym.spaces.Box(-1, 1, (1,), np.float32),
            "time": gym.spaces.Box(0, np.inf, (1,), np.float32),
            "mode": gym.spaces.Discrete(3)})

    def _obs(self):
        return {"pos": np.array([self.x], np.float32), "time": np.array([self.t], np.float32),
                "mode": self.t % 3}


class ImageObsEnv(LineEnv):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.observation_space = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)


class DiscreteActionEnv(LineEnv):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.action_space = gym.spaces.Discrete(3)


class MultiDiscreteLineEnv(gym.Env):
    """Two-part discrete action (MultiDiscrete [3, 2], start [1, 0]): a step size 1..3 and a
    direction; obs (x, t); reward -|x|."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([3, 2], start=[1, 0])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-1, 1)), 0
        return np.array([self.x, self.t], np.float32), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action)), action
        size, direction = int(action[0]), int(action[1])
        self.x += 0.1 * size * (1 if direction else -1)
        self.t += 1
        return np.array([self.x, self.t], np.float32), -abs(self.x), False, False, {}


class HugeReward(gym.Wrapper):
    """Rewards of 1e37: finite, but a critic's squared error on them overflows float32."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward * 1e37 - 1e37, terminated, truncated, info


def huge_reward_line(max_steps=20) -> gym.Env:
    return HugeReward(line_env(max_steps, terminate=False))


class UnstableMuJoCo(gym.Wrapper):
    """A MuJoCo env whose simulation blows up on its 5th step of every episode, so MuJoCo
    writes a warning to its log (MUJOCO_LOG.TXT)."""

    def __init__(self, env_id: str = "InvertedPendulum-v5"):
        super().__init__(gym.make(env_id))
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.t += 1
        if self.t == 5:
            self.env.unwrapped.data.qvel[:] = 1e12
        obs, reward, terminated, truncated, info = self.env.step(action)
        return np.nan_to_num(obs, posinf=0.0, neginf=0.0), reward, terminated, truncated, info


def line_factory(max_steps: int = 20, terminate: bool = False) -> gym.Env:
    """An env factory, as ``--env tests.envs:line_factory --env-kwargs max_steps=30``."""
    return line_env(max_steps, terminate=terminate)


def unstable_mujoco() -> gym.Env:
    return UnstableMuJoCo()
