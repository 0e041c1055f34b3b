"""Gymnasium adapter: make an env from an id or an instance, check its spaces, flatten
observations, and map policy actions in [-1, 1] to the env's (possibly asymmetric) bounds."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import gymnasium as gym
import numpy as np

from tandem.errors import EnvError


@dataclasses.dataclass
class EnvInfo:
    """A checked env plus what the agent and a deployed policy need to know about it."""

    env: gym.Env
    env_id: str | None        # registered id, or None for an unregistered instance
    obs_dim: int
    action_dim: int
    action_low: np.ndarray    # [action_dim] float64
    action_high: np.ndarray   # [action_dim] float64
    obs_layout: dict          # JSON description used to flatten raw observations at deployment

    def spec_json(self) -> dict:
        return {"env_id": self.env_id, "obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "action_low": self.action_low.tolist(), "action_high": self.action_high.tolist(),
                "obs_layout": self.obs_layout}


def scale_action(a, low, high):
    """Policy action in [-1, 1] -> env action in [low, high], elementwise (float64)."""
    return low + (np.asarray(a, np.float64) + 1.0) * 0.5 * (high - low)


def resolve_env_id(env_id: str) -> None:
    """Raise EnvError with close registered names when ``env_id`` is not registered."""
    if env_id in gym.registry:
        return
    names = list(gym.registry.keys())
    close = difflib.get_close_matches(env_id, names, n=3, cutoff=0.6)
    if not close:  # also match ignoring version and case, e.g. "pendulum" -> Pendulum-v1
        base = env_id.split("-v")[0].lower()
        close = [n for n in names if n.split("-v")[0].lower() == base][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else \
        "; register it with gymnasium.register(...) or pass an env instance"
    raise EnvError(f"unknown env id '{env_id}'{hint}")


def _is_image(space: gym.spaces.Box) -> bool:
    shape = space.shape
    return (len(shape) == 3 and (space.dtype == np.uint8 or shape[-1] in (1, 3, 4)
                                 or shape[0] in (1, 3, 4))) or \
        (len(shape) == 2 and space.dtype == np.uint8)


def _obs_layout(space: gym.Space, path: str = "") -> dict:
    """Describe an observation space so a deployed policy can flatten raw observations."""
    where = path or "observation"
    if isinstance(space, gym.spaces.Box):
        if _is_image(space):
            raise EnvError(f"{where} is an image {space} — image observations are not supported "
                           "yet (pixel-based agents such as DrQ are on the roadmap); use a "
                           "state-vector observation")
        return {"type": "box", "shape": list(space.shape)}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "dict", "items": [[k, _obs_layout(s, f"{path}{k}/")]
                                          for k, s in space.spaces.items()]}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "tuple", "items": [_obs_layout(s, f"{path}{i}/")
                                           for i, s in enumerate(space.spaces)]}
    raise EnvError(f"{where} space {space} is not supported; use Box, Discrete, Dict or Tuple "
                   "observations")


def flatten_obs(layout: dict, obs: Any) -> np.ndarray:
    """Flatten a raw observation as gymnasium.spaces.flatten does, from a JSON layout."""
    t = layout["type"]
    if t == "box":
        return np.asarray(obs, np.float32).reshape(-1)
    if t == "discrete":
        one_hot = np.zeros(layout["n"], np.float32)
        one_hot[int(obs) - layout["start"]] = 1.0
        return one_hot
    if t == "dict":
        return np.concatenate([flatten_obs(sub, obs[k]) for k, sub in layout["items"]])
    return np.concatenate([flatten_obs(sub, o) for sub, o in zip(layout["items"], obs)])


def make_env(env: str | gym.Env, algo: str = "sac", env_kwargs: dict | None = None) -> EnvInfo:
    """Create (or take) an env, check its spaces for ``algo``, flatten non-vector observations."""
    from tandem.algos import algos_for_action_space

    if isinstance(env, str):
        resolve_env_id(env)
        try:
            instance = gym.make(env, **(env_kwargs or {}))
        except gym.error.DependencyNotInstalled as exc:
            raise EnvError(f"env '{env}' needs an optional dependency: {exc}. For MuJoCo envs "
                           "run: pip install 'tandem-rl[mujoco]'") from None
        env_id: str | None = env
    elif isinstance(env, gym.Env):
        instance = env
        env_id = env.spec.id if env.spec is not None else None
    else:
        raise EnvError(f"expected a Gymnasium env id or gymnasium.Env instance, got "
                       f"{type(env).__name__}")

    act_space = instance.action_space
    if not isinstance(act_space, gym.spaces.Box):
        fits = algos_for_action_space(type(act_space).__name__)
        fit_text = (f"tandem algorithms for it: {', '.join(fits)}" if fits else
                    "tandem has no algorithm for it yet (PPO/A2C for discrete actions are on "
                    "the roadmap)")
        raise EnvError(f"{algo.upper()} needs continuous (Box) actions but "
                       f"{env_id or 'the env'} has {act_space}; {fit_text}")
    if len(act_space.shape) != 1:
        raise EnvError(f"action space {act_space} must be one-dimensional; reshape it with a "
                       "gymnasium.ActionWrapper")
    low, high = act_space.low.astype(np.float64), act_space.high.astype(np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise EnvError(f"action space {act_space} has infinite bounds; {algo.upper()} squashes "
                       "actions into [low, high], so give the env finite bounds (e.g. wrap it "
                       "with gymnasium.wrappers.ClipAction after setting a finite Box)")
    if np.any(high <= low):
        raise EnvError(f"action space {act_space} has high <= low in some dimension")

    layout = _obs_layout(instance.observation_space)
    needs_flatten = not (layout["type"] == "box" and len(layout["shape"]) == 1)
    if needs_flatten:
        instance = gym.wrappers.FlattenObservation(instance)
    obs_dim = int(np.prod(instance.observation_space.shape))
    return EnvInfo(instance, env_id, obs_dim, int(act_space.shape[0]), low, high, layout)


def check_finite(obs: np.ndarray, reward: float, step: int, episode: int) -> None:
    """Raise a clear EnvError when the env returns NaN or inf (cheap: one isfinite per step)."""
    if not np.isfinite(reward):
        raise EnvError(f"the env returned a non-finite reward ({reward}) at env step {step} "
                       f"(episode {episode}); fix the env or clip its rewards")
    if not np.all(np.isfinite(obs)):
        bad = np.flatnonzero(~np.isfinite(obs))[:5].tolist()
        raise EnvError(f"the env returned a non-finite observation at env step {step} "
                       f"(episode {episode}), indices {bad}; fix the env or clip its outputs")
