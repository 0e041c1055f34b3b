"""Perturbed variants of an env for zero-shot robustness checks (issue 20): sensor noise,
actuator noise, actuation delay, and MuJoCo model error (mass, friction, actuator gain).

``tandem eval RUN --perturb name=v1,v2,...`` evaluates a trained policy, without further
training, on each variant. A name here is one of :data:`PERTURBATIONS`; any other name is an
argument of the env's constructor (``g`` for Pendulum-v1), handled by the caller.
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np

from tandem.envs.resolve import parse_value
from tandem.errors import EnvError


class ObservationNoise(gym.ObservationWrapper):
    """obs + N(0, std^2) on every float observation entry (a noisy sensor)."""

    def __init__(self, env: gym.Env, std: float):
        super().__init__(env)
        self.std = float(std)
        self.rng = np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
        if seed is not None:  # the noise is reproducible per evaluation seed
            self.rng = np.random.default_rng([seed, 1])
        return super().reset(seed=seed, options=options)

    def observation(self, obs):
        obs = np.asarray(obs)
        return (obs + self.rng.normal(0.0, self.std, obs.shape)).astype(obs.dtype)


class ActionNoise(gym.ActionWrapper):
    """action + N(0, (std * half-range)^2), clipped to the bounds (a noisy actuator); ``std``
    is relative to the Box's half-range, so 0.1 is 10% of full scale on every dimension."""

    def __init__(self, env: gym.Env, std: float):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise EnvError("action_noise needs a Box action space")
        self.low, self.high = space.low, space.high
        self.std = float(std) * (self.high - self.low) / 2.0
        self.rng = np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng([seed, 2])
        return super().reset(seed=seed, options=options)

    def action(self, action):
        a = np.asarray(action, np.float64)
        return np.clip(a + self.rng.normal(0.0, 1.0, a.shape) * self.std, self.low, self.high)


class ActionDelay(gym.Wrapper):
    """The env receives the action chosen ``steps`` steps earlier (a slow actuation or
    communication path); before that it receives the Box's midpoint (or Discrete's first
    value): nothing has been commanded yet."""

    def __init__(self, env: gym.Env, steps: int):
        super().__init__(env)
        if steps < 0 or int(steps) != steps:
            raise EnvError(f"action_delay must be a whole number of steps >= 0, got {steps}")
        self.steps = int(steps)
        space = env.action_space
        if isinstance(space, gym.spaces.Box):
            self.idle = ((space.low + space.high) / 2.0).astype(space.dtype)
        elif isinstance(space, gym.spaces.Discrete):
            self.idle = space.start
        else:
            self.idle = space.sample() * 0
        self.queue: deque = deque()

    def reset(self, **kwargs):
        self.queue = deque([self.idle] * self.steps)
        return self.env.reset(**kwargs)

    def step(self, action):
        self.queue.append(action)
        return self.env.step(self.queue.popleft())


def _mujoco_model(env: gym.Env, name: str):
    model = getattr(env.unwrapped, "model", None)
    if model is None or not hasattr(model, "body_mass"):
        raise EnvError(f"perturbation '{name}' changes a MuJoCo model, and "
                       f"{env.spec.id if env.spec else type(env.unwrapped).__name__} has none "
                       "(env.unwrapped.model)")
    return model


def _scale_mass(env: gym.Env, v: float) -> gym.Env:
    model = _mujoco_model(env, "body_mass")
    model.body_mass[:] *= v  # every body, with its inertia: the same shapes, denser
    model.body_inertia[:] *= v
    return env


def _scale_friction(env: gym.Env, v: float) -> gym.Env:
    model = _mujoco_model(env, "friction")
    model.geom_friction[:, 0] *= v  # sliding friction of every geom
    return env


def _scale_gain(env: gym.Env, v: float) -> gym.Env:
    model = _mujoco_model(env, "actuator_gain")
    model.actuator_gear[:, 0] *= v  # force (torque) per unit of control, every actuator
    return env


# name -> (what it is, function(env, value) -> env); values are numbers
PERTURBATIONS = {
    "obs_noise": ("Gaussian noise on observations, std in observation units",
                  lambda env, v: ObservationNoise(env, v)),
    "action_noise": ("Gaussian noise on actions, std as a fraction of the half-range",
                     lambda env, v: ActionNoise(env, v)),
    "action_delay": ("actions reach the env this many steps late",
                     lambda env, v: ActionDelay(env, v)),
    "body_mass": ("MuJoCo: every body's mass and inertia times this factor", _scale_mass),
    "friction": ("MuJoCo: every geom's sliding friction times this factor", _scale_friction),
    "actuator_gain": ("MuJoCo: every actuator's gear (force per control) times this factor",
                      _scale_gain),
}


def parse_perturb(texts: list[str] | None) -> dict[str, list]:
    """``["g=5,10", "obs_noise=0.01,0.1"]`` -> {'g': [5, 10], 'obs_noise': [0.01, 0.1]}
    (values as in --env-kwargs: numbers, true/false, none, strings)."""
    out: dict[str, list] = {}
    for text in texts or []:
        name, sep, values = text.partition("=")
        name = name.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.isidentifier() or not vals:
            raise EnvError(f"--perturb {text!r}: give name=value,value,..., e.g. --perturb "
                           "body_mass=0.8,1.2 or --perturb g=5,15 (an env argument)")
        parsed = [parse_value(v) for v in vals]
        if name in PERTURBATIONS and not all(isinstance(v, (int, float)) and
                                             not isinstance(v, bool) for v in parsed):
            raise EnvError(f"--perturb {name}: its values are numbers, got {vals}")
        out[name] = parsed
    return out


def perturb(env: gym.Env, name: str, value: float) -> gym.Env:
    """``env`` with perturbation ``name`` at ``value`` (MuJoCo ones change its model in
    place: call it on an env made for the purpose)."""
    return PERTURBATIONS[name][1](env, value)


__all__ = ["PERTURBATIONS", "perturb", "parse_perturb", "ObservationNoise", "ActionNoise", "ActionDelay"]
