"""Env checker: ``tandem check-env ENV``, and run before every training on Gymnasium envs.

It plays a few hundred random steps on a separate instance (when the env can be re-made)
and turns each way an env can break training into one message that says what to fix:
reset/step signatures and return shapes, observation shape, dtype and bounds against the
declared space, non-finite observations or rewards, non-bool flags, episodes that never end
on an env without a time limit, and reset(seed) that does not reproduce its observation
(which makes resumes inexact: a warning, not an error).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import gymnasium as gym
import numpy as np

from tandem.envs.resolve import resolve_env
from tandem.errors import EnvError

log = logging.getLogger("tandem")

DEFAULT_STEPS = 300


def _has_time_limit(env: gym.Env) -> bool:
    spec = getattr(env, "spec", None)
    if spec is not None and spec.max_episode_steps is not None:
        return True
    e = env
    while isinstance(e, gym.Wrapper):
        if isinstance(e, gym.wrappers.TimeLimit):
            return True
        e = e.env
    return False


def _instance(env: str | gym.Env, env_kwargs: dict | None) -> gym.Env:
    """A fresh instance to check, so the training instance is untouched."""
    if isinstance(env, str):
        return resolve_env(env, env_kwargs).make()
    if env.spec is not None:
        try:
            return gym.make(env.spec)
        except Exception:  # noqa: BLE001 - an odd spec: fall back to a copy
            pass
    try:
        return copy.deepcopy(env)
    except Exception:  # noqa: BLE001 - not copyable (simulator handles): check the instance
        return env


def _check_obs(space: gym.Space, obs: Any, where: str) -> None:
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(obs)
        if arr.shape != space.shape:
            raise EnvError(f"{where} returned an observation of shape {arr.shape}, but the "
                           f"observation space declares {space.shape}: make them agree")
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise EnvError(f"{where} returned an observation of dtype {arr.dtype}; a Box "
                           "space needs numbers")
        if not np.can_cast(arr.dtype, space.dtype):
            raise EnvError(f"{where} returned a {arr.dtype} observation for a {space.dtype} "
                           f"Box: cast it in the env (np.asarray(obs, np.{space.dtype}))")
        if not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))[:5].tolist()
            raise EnvError(f"{where} returned a non-finite observation (flat indices {bad}): "
                           "fix the env or clip its outputs")
        low, high = np.broadcast_to(space.low, arr.shape), np.broadcast_to(space.high, arr.shape)
        out = (arr < low) | (arr > high)
        if out.any():
            i = int(np.flatnonzero(out.reshape(-1))[0])
            raise EnvError(f"{where} returned an observation outside the declared space: flat "
                           f"index {i} is {float(arr.reshape(-1)[i])}, bounds "
                           f"[{float(low.reshape(-1)[i])}, {float(high.reshape(-1)[i])}]; widen the Box bounds or clip the "
                           "observation")
    elif not space.contains(obs):
        raise EnvError(f"{where} returned an observation that its {type(space).__name__} "
                       f"observation space does not contain ({_short(obs)}): make them agree")


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) < 80 else text[:77] + "..."


def check_env(env: str | gym.Env, env_kwargs: dict | None = None, steps: int = DEFAULT_STEPS,
              seed: int = 0) -> list[str]:
    """Raise EnvError on the first problem that would break training; return warnings."""
    warnings: list[str] = []
    inst = _instance(env, env_kwargs)
    name = env if isinstance(env, str) else type(inst.unwrapped).__name__
    obs_space, act_space = inst.observation_space, inst.action_space
    if not isinstance(obs_space, gym.Space) or not isinstance(act_space, gym.Space):
        raise EnvError(f"{name}: observation_space and action_space must be gymnasium.spaces "
                       "instances")
    first = _reset(inst, seed, name)
    again = _reset(inst, seed, name)
    if not _same(first, again):
        warnings.append(f"{name}: reset(seed={seed}) twice gave different observations; "
                        "training works, but a resumed run will not match an uninterrupted "
                        "one exactly (seed the env's randomness from reset's seed)")
    act_space.seed(seed)
    ended, t = False, 0
    for t in range(1, steps + 1):
        try:
            out = inst.step(act_space.sample())
        except Exception as exc:  # noqa: BLE001 - the env's own failure, named
            if isinstance(exc, ValueError) and "expected 5, got 4" in str(exc):
                raise EnvError(f"{name}: step must return (obs, reward, terminated, "
                               "truncated, info); it returned 4 values (the old Gym API: "
                               "split done into terminated and truncated)") from None
            raise EnvError(f"{name}: step {t} with a random action raised "
                           f"{type(exc).__name__}: {exc}") from None
        if not isinstance(out, tuple) or len(out) != 5:
            n = len(out) if isinstance(out, tuple) else type(out).__name__
            hint = (" (the old Gym API: split done into terminated and truncated)"
                    if n == 4 else "")
            raise EnvError(f"{name}: step must return (obs, reward, terminated, truncated, "
                           f"info); it returned {n} values{hint}")
        obs, reward, terminated, truncated, info = out
        where = f"{name}: step {t}"
        _check_obs(obs_space, obs, where)
        if isinstance(reward, (bool, np.bool_)) or not np.isscalar(reward) and \
                np.ndim(reward) != 0:
            raise EnvError(f"{where} returned a reward of type {type(reward).__name__}: it "
                           "must be one number")
        if not np.isfinite(float(reward)):
            raise EnvError(f"{where} returned a non-finite reward ({reward}): fix the env or "
                           "clip its rewards")
        for flag, value in (("terminated", terminated), ("truncated", truncated)):
            if not isinstance(value, (bool, np.bool_)):
                raise EnvError(f"{where} returned {flag}={value!r} of type "
                               f"{type(value).__name__}: it must be a bool")
        if not isinstance(info, dict):
            raise EnvError(f"{where} returned info of type {type(info).__name__}: it must be "
                           "a dict")
        if terminated or truncated:
            ended = True
            _reset(inst, seed + t, name)
    if not ended and not _has_time_limit(inst):
        raise EnvError(f"{name}: no episode ended in {steps} random steps and the env has no "
                       "time limit, so episodes may never end (evaluation would not return): "
                       "register it with max_episode_steps=... or wrap it in "
                       "gymnasium.wrappers.TimeLimit")
    if inst is not env:
        inst.close()
    return warnings


def _reset(env: gym.Env, seed: int, name: str) -> Any:
    try:
        out = env.reset(seed=seed)
    except TypeError as exc:
        raise EnvError(f"{name}: reset(seed=..., options=...) failed ({exc}); reset must "
                       "accept the seed and options keywords (Gymnasium API)") from None
    except Exception as exc:  # noqa: BLE001 - the env's own failure, named
        raise EnvError(f"{name}: reset raised {type(exc).__name__}: {exc}") from None
    if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[1], dict):
        raise EnvError(f"{name}: reset must return (obs, info) with info a dict; it returned "
                       f"{_short(out)}")
    _check_obs(env.observation_space, out[0], f"{name}: reset")
    return out[0]


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:  # noqa: BLE001 - Dict/Tuple observations
        return repr(a) == repr(b)
