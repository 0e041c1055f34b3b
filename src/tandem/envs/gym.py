"""Gymnasium adapter: make an env from a resolved source, describe its spaces as an
:class:`EnvSpec`, check that an algorithm can drive it, step vector envs.

Observations are not flattened here: they keep their structure (a dict for a Dict space,
integers for Discrete) as :func:`tandem.core.spaces.canonical` makes them, and the networks
encode them. Policy actions in [-1, 1] are mapped to the env's (possibly asymmetric) bounds by
:func:`tandem.core.spaces.to_env_action`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from tandem.core.spaces import EnvSpec, Space, build, canonical, get_leaf, leaves
from tandem.envs.resolve import EnvSource, resolve_env
from tandem.errors import EnvError


@dataclasses.dataclass
class GymEnv:
    """A checked Gymnasium env: the training instance, how to make more, and its spec."""

    env: gym.Env
    source: EnvSource
    spec: EnvSpec

    @property
    def env_id(self) -> str | None:
        return self.source.name

    def make(self) -> gym.Env:
        """Another instance (evaluation, vector sub-envs); EnvError for an unregistered
        instance, which cannot be copied."""
        return self.source.make()


# ============================================================================ spaces
def space_of(space: gym.Space, where: str = "observation") -> Space:
    """A Gymnasium observation space as a :class:`Space` (Box float leaves stored float32)."""
    if isinstance(space, gym.spaces.Box):
        dtype = "float32" if np.issubdtype(space.dtype, np.floating) else str(space.dtype)
        return Space.box(space.shape, dtype)
    if isinstance(space, gym.spaces.Discrete):
        return Space.discrete(int(space.n), int(space.start))
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise EnvError(f"{where} space {space} must be one-dimensional")
        return Space.multidiscrete(space.nvec, space.start)
    if isinstance(space, gym.spaces.MultiBinary):
        return Space.multibinary(space.shape)
    if isinstance(space, gym.spaces.Dict):
        return Space.dict_of([(k, space_of(s, f"{where} '{k}'"))
                              for k, s in space.spaces.items()])
    if isinstance(space, gym.spaces.Tuple):
        return Space.tuple_of([space_of(s, f"{where} {i}") for i, s in enumerate(space.spaces)])
    raise EnvError(f"{where} space {space} is not supported; use Box, Discrete, MultiDiscrete, "
                   "MultiBinary, Dict or Tuple observations")


def action_space_of(act_space: gym.Space, env_name: str | None, algo: str,
                    accepted: tuple[str, ...],
                    alternatives: Callable[[str], list[str]] | None = None) -> Space:
    """The action space of an env whose actions ``algo`` can produce (``accepted``: the
    Gymnasium class names it drives), or a clear EnvError naming ``alternatives(kind)``."""
    kind = type(act_space).__name__
    if kind not in accepted:
        fits = alternatives(kind) if alternatives is not None else []
        fit_text = (f"tandem algorithms for it: {', '.join(sorted(fits))}" if fits else
                    "tandem has no algorithm for it yet")
        wants = "continuous (Box)" if accepted == ("Box",) else " or ".join(accepted)
        raise EnvError(f"{algo.upper()} needs {wants} actions but {env_name or 'the env'} has "
                       f"{act_space}; {fit_text}")
    if isinstance(act_space, gym.spaces.Discrete):
        return Space.discrete(int(act_space.n), int(act_space.start))
    if isinstance(act_space, gym.spaces.MultiDiscrete):
        if act_space.nvec.ndim != 1:
            raise EnvError(f"action space {act_space} must be one-dimensional; flatten it with a "
                           "gymnasium.ActionWrapper")
        return Space.multidiscrete(act_space.nvec, act_space.start)
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
    return Space.box(act_space.shape, "float32", low, high)


def make_env(env: Any, algo: str = "sac", accepted: tuple[str, ...] = ("Box",),
             env_kwargs: dict | None = None,
             alternatives: Callable[[str], list[str]] | None = None,
             images: bool = False) -> GymEnv:
    """Create (or take) a Gymnasium env and check that ``algo`` can drive it. ``env`` is an
    id, a ``module:Name``, an instance or an :class:`EnvSource`. Image observations are
    refused unless ``images`` (an algorithm with a pixel encoder)."""
    source = env if isinstance(env, EnvSource) else resolve_env(env, env_kwargs)
    if source.kind == "jax":
        raise EnvError(f"'{source.name}' is a JAX-native env; it trains on the compiled path")
    instance = source.instance if source.kind == "instance" else source.make()
    action = action_space_of(instance.action_space, source.name, algo, accepted, alternatives)
    obs = space_of(instance.observation_space)
    if not images:
        for path, leaf in leaves(obs):
            if leaf.is_image:
                where = "/".join(map(str, path)) or "observation"
                raise EnvError(f"{where} is an image {instance.observation_space} — image "
                               "observations are not supported yet (pixel-based agents such as "
                               "DrQ are on the roadmap); use a state-vector observation")
    limit = instance.spec.max_episode_steps if instance.spec is not None else None
    return GymEnv(instance, source, EnvSpec(obs, action, source.name, limit))


def redirect_mujoco_log(folder: Path | str | None) -> None:
    """Send MuJoCo's warning log (MUJOCO_LOG.TXT, written to the working directory by
    default) to ``folder``, when MuJoCo is in use in this process."""
    if folder is None or "mujoco" not in sys.modules:
        return
    mujoco = sys.modules["mujoco"]
    config_cls = getattr(mujoco, "MjLogConfig", None)
    if config_cls is None:  # MuJoCo before 3.3 has no log configuration
        return
    config = config_cls.get()
    config.logfile = str(Path(folder) / "MUJOCO_LOG.TXT")
    config.set()


def check_finite(obs: Any, reward: float, step: int, episode: int) -> None:
    """Raise a clear EnvError when the env returns NaN or inf (cheap: one isfinite per leaf)."""
    if not np.isfinite(reward):
        raise EnvError(f"the env returned a non-finite reward ({reward}) at env step {step} "
                       f"(episode {episode}); fix the env or clip its rewards")
    for x in (obs.values() if isinstance(obs, dict) else
              obs if isinstance(obs, tuple) else (obs,)):
        if isinstance(x, (dict, tuple)):
            check_finite(x, 0.0, step, episode)
        elif x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            bad = np.flatnonzero(~np.isfinite(x))[:5].tolist()
            raise EnvError(f"the env returned a non-finite observation at env step {step} "
                           f"(episode {episode}), indices {bad}; fix the env or clip its "
                           "outputs")


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
    """Picklable factory of one sub-env (AsyncVectorEnv starts its workers with spawn): the
    env's name and kwargs (or the Gymnasium spec of a registered instance), re-resolved in
    the worker process."""

    def __init__(self, name: str | None, env_kwargs: dict | None, gym_spec: Any, seed: int,
                 index: int, mujoco_log: str | None = None) -> None:
        self.name, self.env_kwargs, self.gym_spec = name, env_kwargs or {}, gym_spec
        self.seed, self.index, self.mujoco_log = seed, index, mujoco_log

    def __call__(self) -> gym.Env:
        if self.gym_spec is not None:
            env = gym.make(self.gym_spec)
        else:
            env = resolve_env(self.name, self.env_kwargs).make()
        redirect_mujoco_log(self.mujoco_log)
        return SeededEpisodes(env, self.seed, self.index)


def make_vector_env(genv: GymEnv, n: int, seed: int, mode: str,
                    mujoco_log: str | None = None) -> gym.vector.VectorEnv:
    """``n`` copies of the env as a Gymnasium vector env (sync or async) that resets finished
    sub-envs in the same step and reports their final observation (``info["final_obs"]``)."""
    source = genv.source
    if source.kind == "instance":
        if source.instance.spec is None:
            if n > 1 or mode == "async":
                raise EnvError("an unregistered env instance can only be trained with n_envs=1 "
                               "and vec_env=sync; register it with gymnasium.register(...) "
                               "to run several copies")
            inner = genv.env
            fns = [lambda: SeededEpisodes(inner, seed, 0)]
        else:  # a registered instance: re-made from its spec, kwargs included
            fns = [SubEnvFactory(None, None, source.instance.spec, seed, i, mujoco_log)
                   for i in range(n)]
    else:
        fns = [SubEnvFactory(source.name, source.kwargs, None, seed, i, mujoco_log)
               for i in range(n)]
    mode_same = gym.vector.AutoresetMode.SAME_STEP
    if mode == "async":
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode_same, context="spawn")
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode_same)


def vector_step(envs: gym.vector.VectorEnv, env_action: np.ndarray, n: int, space: Space,
                step: int) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, Any]:
    """One step of a same-step-autoreset vector env made by :func:`make_vector_env`.

    Returns (next_obs [N, *obs] -- a finished sub-env's reset observation, reward [N]
    float64, terminated [N] bool, done [N] bool, final [N, *obs] -- the observation each
    sub-env reached, its episode's last one where it finished), observations canonical for
    ``space``. Non-finite rewards or observations raise EnvError naming the sub-env and
    ``step``.
    """
    next_obs, reward, terminated, truncated, infos = envs.step(env_action)
    next_obs = canonical(space, next_obs, (n,))
    reward = np.asarray(reward, np.float64)
    check_finite_batch(next_obs, reward, step)
    terminated = np.asarray(terminated, bool)
    done = np.logical_or(terminated, truncated)
    final = next_obs
    if done.any():
        final = build(space, lambda path, _: np.array(get_leaf(next_obs, path)))  # a copy
        for i in np.flatnonzero(done):
            one = canonical(space, infos["final_obs"][i])
            for path, _ in leaves(space):
                get_leaf(final, path)[i] = get_leaf(one, path)
        check_finite_batch(final, reward, step)
    return next_obs, reward, terminated, done, final


def check_finite_batch(obs: Any, reward: np.ndarray, step: int) -> None:
    """EnvError for the first sub-env with a non-finite reward [N] or observation [N, ...]."""
    if not np.all(np.isfinite(reward)):
        i = int(np.flatnonzero(~np.isfinite(reward))[0])
        raise EnvError(f"the env returned a non-finite reward ({reward[i]}) in sub-env {i} at "
                       f"env step {step}; fix the env or clip its rewards")
    for x in (obs.values() if isinstance(obs, dict) else
              obs if isinstance(obs, tuple) else (obs,)):
        if isinstance(x, (dict, tuple)):
            check_finite_batch(x, reward, step)
        elif x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            i = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=-1))[0])
            raise EnvError(f"the env returned a non-finite observation in sub-env {i} at env "
                           f"step {step}; fix the env or clip its outputs")
