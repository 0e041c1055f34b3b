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
    # {"kind": "box"} or {"kind": "discrete" | "multidiscrete", "nvec": [...], "start": [...]}
    action_space: dict = dataclasses.field(default_factory=lambda: {"kind": "box"})

    def spec_json(self) -> dict:
        return {"env_id": self.env_id, "obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "action_low": self.action_low.tolist(), "action_high": self.action_high.tolist(),
                "obs_layout": self.obs_layout, "action_space": self.action_space}


def scale_action(a, low, high):
    """Policy action in [-1, 1] -> env action in [low, high], elementwise (float64)."""
    return low + (np.asarray(a, np.float64) + 1.0) * 0.5 * (high - low)


def resolve_env_id(env_id: str) -> None:
    """Raise EnvError with close registered names when ``env_id`` is not registered.
    ``module:EnvId`` imports ``module`` first (it registers the env), as gymnasium.make does."""
    if env_id in gym.registry:
        return
    if ":" in env_id:
        import importlib
        module, _, env_id = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise EnvError(f"env id '{module}:{env_id}': cannot import module '{module}' "
                           f"({exc})") from None
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

    low, high, action_space = check_action_space(instance.action_space, env_id, algo)
    layout = _obs_layout(instance.observation_space)
    needs_flatten = not (layout["type"] == "box" and len(layout["shape"]) == 1)
    if needs_flatten:
        instance = gym.wrappers.FlattenObservation(instance)
    obs_dim = int(np.prod(instance.observation_space.shape))
    return EnvInfo(instance, env_id, obs_dim, len(low), low, high, layout, action_space)


def check_action_space(act_space: gym.Space, env_id: str | None, algo: str
                       ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(low, high, action-space JSON) of an env whose actions ``algo`` can produce, or a clear
    EnvError naming the algorithms that fit."""
    from tandem.algos import algos_for_action_space, get_algo

    kind = type(act_space).__name__
    accepted = get_algo(algo).action_spaces
    if kind not in accepted:
        fits = algos_for_action_space(kind)
        fit_text = (f"tandem algorithms for it: {', '.join(sorted(fits))}" if fits else
                    "tandem has no algorithm for it yet")
        wants = "continuous (Box)" if accepted == ("Box",) else " or ".join(accepted)
        raise EnvError(f"{algo.upper()} needs {wants} actions but {env_id or 'the env'} has "
                       f"{act_space}; {fit_text}")
    if isinstance(act_space, gym.spaces.Discrete):
        zeros = np.zeros(1)
        return zeros, zeros, {"kind": "discrete", "nvec": [int(act_space.n)],
                              "start": [int(act_space.start)]}
    if isinstance(act_space, gym.spaces.MultiDiscrete):
        if act_space.nvec.ndim != 1:
            raise EnvError(f"action space {act_space} must be one-dimensional; flatten it with a "
                           "gymnasium.ActionWrapper")
        zeros = np.zeros(len(act_space.nvec))
        return zeros, zeros, {"kind": "multidiscrete",
                              "nvec": [int(n) for n in act_space.nvec],
                              "start": [int(x) for x in act_space.start]}
    if len(act_space.shape) != 1:
        raise EnvError(f"action space {act_space} must be one-dimensional; reshape it with a "
                       "gymnasium.ActionWrapper")
    low, high = act_space.low.astype(np.float64), act_space.high.astype(np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise EnvError(f"action space {act_space} has infinite bounds; {algo.upper()} maps "
                       "actions into [low, high], so give the env finite bounds (e.g. wrap it "
                       "with gymnasium.wrappers.ClipAction after setting a finite Box)")
    if np.any(high <= low):
        raise EnvError(f"action space {act_space} has high <= low in some dimension")
    return low, high, {"kind": "box"}


def to_env_action(a, info_low, info_high, action_space: dict):
    """Policy action -> env action: Box actions in [-1, 1] are clipped and scaled to the
    bounds (float64); discrete actions get Gymnasium's ``start`` offset added."""
    if action_space["kind"] == "box":
        return scale_action(np.clip(a, -1.0, 1.0), info_low, info_high)
    a = np.asarray(a, np.int64)
    start = np.asarray(action_space["start"], np.int64)
    return a + (start[0] if action_space["kind"] == "discrete" else start)


def check_finite(obs: np.ndarray, reward: float, step: int, episode: int) -> None:
    """Raise a clear EnvError when the env returns NaN or inf (cheap: one isfinite per step)."""
    if not np.isfinite(reward):
        raise EnvError(f"the env returned a non-finite reward ({reward}) at env step {step} "
                       f"(episode {episode}); fix the env or clip its rewards")
    if not np.all(np.isfinite(obs)):
        bad = np.flatnonzero(~np.isfinite(obs))[:5].tolist()
        raise EnvError(f"the env returned a non-finite observation at env step {step} "
                       f"(episode {episode}), indices {bad}; fix the env or clip its outputs")


# ============================================================================ vector envs
def episode_seed(seed: int, *stream: int) -> int:
    """Reset seed of one training episode, e.g. (seed, episode) or (seed, env, episode):
    independent streams, reproducible from the indices alone."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


class SeededEpisodes(gym.Wrapper):
    """Sub-env wrapper of a vector env that makes every episode reproducible: episode k of
    sub-env i is reset with ``episode_seed(seed, i, k)``. A resume resets with
    ``options={"tandem_restore": [(k_i, actions_i), ...]}``: each sub-env resets episode k_i
    and replays the actions taken in it (the driver logs them), so it is where the checkpoint
    left it for any env that is deterministic given its seed. ``step`` is not wrapped, so the
    wrapper costs nothing per step."""

    def __init__(self, env: gym.Env, seed: int, index: int) -> None:
        super().__init__(env)
        self.tandem_seed, self.tandem_index = seed, index
        self.tandem_episode = -1

    def reset(self, *, seed=None, options=None):
        restore = (options or {}).get("tandem_restore")
        if restore is not None:
            episode, actions = restore[self.tandem_index]
            self.tandem_episode = int(episode)
        else:
            self.tandem_episode += 1
            actions = ()
        obs, info = self.env.reset(seed=episode_seed(self.tandem_seed, self.tandem_index,
                                                     self.tandem_episode))
        for a in actions:
            obs, *_ = self.env.step(a)
        return obs, info


class SubEnvFactory:
    """Picklable factory of one sub-env (AsyncVectorEnv starts its workers with spawn)."""

    def __init__(self, env_id: str | None, env_kwargs: dict | None, spec: Any, flatten: bool,
                 seed: int, index: int) -> None:
        self.env_id, self.env_kwargs, self.spec = env_id, env_kwargs or {}, spec
        self.flatten, self.seed, self.index = flatten, seed, index

    def __call__(self) -> gym.Env:
        env = gym.make(self.env_id if self.env_id is not None else self.spec, **self.env_kwargs)
        if self.flatten:
            env = gym.wrappers.FlattenObservation(env)
        return SeededEpisodes(env, self.seed, self.index)


def make_vector_env(info: EnvInfo, source: str | gym.Env, n: int, seed: int, mode: str,
                    env_kwargs: dict | None) -> gym.vector.VectorEnv:
    """``n`` copies of the env as a Gymnasium vector env (sync or async) that resets finished
    sub-envs in the same step and reports their final observation (``info["final_obs"]``)."""
    flatten = not (info.obs_layout["type"] == "box" and len(info.obs_layout["shape"]) == 1)
    if isinstance(source, gym.Env):
        if source.spec is None:
            if n > 1 or mode == "async":
                raise EnvError("an unregistered env instance can only be trained with n_envs=1 "
                               "and vec_env=sync; register it with gymnasium.register(...) "
                               "to run several copies")
            inner = info.env
            fns = [lambda: SeededEpisodes(inner, seed, 0)]
        else:  # a registered instance: re-made from its spec, kwargs included
            fns = [SubEnvFactory(None, None, source.spec, flatten, seed, i) for i in range(n)]
    else:
        fns = [SubEnvFactory(source, env_kwargs, None, flatten, seed, i) for i in range(n)]
    mode_same = gym.vector.AutoresetMode.SAME_STEP
    if mode == "async":
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode_same, context="spawn")
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode_same)


def vector_step(envs: gym.vector.VectorEnv, env_action: np.ndarray, n: int, obs_dim: int,
                step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step of a same-step-autoreset vector env made by :func:`make_vector_env`.

    Returns (next_obs [N, obs_dim] float32 -- a finished sub-env's reset observation,
    reward [N] float64, terminated [N] bool, done [N] bool, final [N, obs_dim] float32 -- the
    observation each sub-env reached, its episode's last one where it finished). Non-finite
    rewards or observations raise EnvError naming the sub-env and ``step``.
    """
    next_obs, reward, terminated, truncated, infos = envs.step(env_action)
    next_obs = np.asarray(next_obs, np.float32).reshape(n, obs_dim)
    reward = np.asarray(reward, np.float64)
    check_finite_batch(next_obs, reward, step)
    terminated = np.asarray(terminated, bool)
    done = np.logical_or(terminated, truncated)
    final = next_obs
    if done.any():
        final = next_obs.copy()
        for i in np.flatnonzero(done):
            final[i] = np.asarray(infos["final_obs"][i], np.float32).reshape(obs_dim)
        check_finite_batch(final, reward, step)
    return next_obs, reward, terminated, done, final


def check_finite_batch(obs: np.ndarray, reward: np.ndarray, step: int) -> None:
    """EnvError for the first sub-env with a non-finite reward [N] or observation [N, d]."""
    if not np.all(np.isfinite(reward)):
        i = int(np.flatnonzero(~np.isfinite(reward))[0])
        raise EnvError(f"the env returned a non-finite reward ({reward[i]}) in sub-env {i} at "
                       f"env step {step}; fix the env or clip its rewards")
    if not np.all(np.isfinite(obs)):
        i = int(np.flatnonzero(~np.isfinite(obs).all(axis=-1))[0])
        raise EnvError(f"the env returned a non-finite observation in sub-env {i} at env step "
                       f"{step}; fix the env or clip its outputs")
