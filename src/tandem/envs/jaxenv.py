"""Adapters for JAX-native envs (gymnax, Brax) behind one pure, jittable interface.

Env ids carry the suite as a prefix: ``gymnax:Pendulum-v1``, ``brax:halfcheetah``. Both suites
are optional extras (``pip install 'tandem-rl[jaxenv]'``).

``step`` never resets: it returns the true next observation with separate ``terminated`` and
``truncated`` flags, and the training loop resets (so a truncated transition bootstraps from
its real final observation, as on the Gymnasium path).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from tandem.core.spaces import EnvSpec, Space
from tandem.errors import EnvError

SUITES = ("gymnax", "brax")
EXTRA_HINT = "install the JAX-native env suites with: pip install 'tandem-rl[jaxenv]'"


@dataclasses.dataclass(frozen=True, eq=False)
class JaxEnv:
    """A JAX-native env.

    reset(key) -> (env_state, obs [obs_dim])
    step(env_state, action (Box: [action_dim] in env units; Discrete: int []), key)
        -> (env_state, next_obs [obs_dim], reward [], terminated [] bool, truncated [] bool)
    """

    env_id: str
    obs_dim: int
    action_dim: int
    action_low: np.ndarray   # [action_dim] float64
    action_high: np.ndarray  # [action_dim] float64
    max_steps: int           # time limit (truncation) of an episode
    reset: Callable[[jax.Array], tuple[Any, jax.Array]]
    step: Callable[..., tuple[Any, jax.Array, jax.Array, jax.Array, jax.Array]]
    action_space: dict = dataclasses.field(default_factory=lambda: {"kind": "box"})

    @property
    def spec(self) -> EnvSpec:
        """Flat Box observations; Box or Discrete actions."""
        if self.action_space["kind"] == "box":
            action = Space.box((self.action_dim,), "float32", self.action_low, self.action_high)
        else:
            action = Space.discrete(self.action_space["nvec"][0])
        return EnvSpec(Space.box((self.obs_dim,)), action, self.env_id, self.max_steps)

    @property
    def space_name(self) -> str:
        """Gymnasium's name of the action space (what AlgoSpec.action_spaces lists)."""
        return {"box": "Box", "discrete": "Discrete"}[self.action_space["kind"]]


def is_jax_env(env: Any) -> bool:
    return isinstance(env, JaxEnv) or (isinstance(env, str) and env.split(":", 1)[0] in SUITES
                                       and ":" in env)


def _import_failure(suite: str, name: str, err: ImportError) -> str:
    """Say whether the suite is missing or one of its own imports failed (a broken install)."""
    missing = getattr(err, "name", None)
    if missing and missing.split(".")[0] != suite:
        return (f"env '{suite}:{name}': importing {suite} failed ({err}); "
                f"install the missing package or reinstall with: pip install 'tandem-rl[jaxenv]'")
    return f"env '{suite}:{name}' needs {suite}; {EXTRA_HINT}"


def make_jax_env(env: str | JaxEnv, env_kwargs: dict | None = None) -> JaxEnv:
    if isinstance(env, JaxEnv):
        return env
    suite, name = env.split(":", 1)
    kwargs = dict(env_kwargs or {})
    return {"gymnax": _gymnax, "brax": _brax}[suite](name, kwargs)


def _gymnax(name: str, kwargs: dict) -> JaxEnv:
    try:
        import gymnax
        from gymnax.environments import spaces
    except ImportError as e:
        raise EnvError(_import_failure("gymnax", name, e)) from None
    if name not in gymnax.registered_envs:
        import difflib
        close = difflib.get_close_matches(name, gymnax.registered_envs, n=3)
        raise EnvError(f"gymnax has no env '{name}'" + (f"; did you mean {', '.join(close)}?"
                                                       if close else ""))
    genv, params = gymnax.make(name, **kwargs)
    space = genv.action_space(params)
    if isinstance(space, spaces.Discrete):
        action_dim, low, high = 1, np.zeros(1), np.zeros(1)
        action_space = {"kind": "discrete", "nvec": [int(space.n)], "start": [0]}
    elif isinstance(space, spaces.Box) and len(np.shape(space.low) or (1,)) == 1:
        action_dim = int(np.prod(space.shape))
        low = np.broadcast_to(np.asarray(space.low, np.float64), (action_dim,)).copy()
        high = np.broadcast_to(np.asarray(space.high, np.float64), (action_dim,)).copy()
        action_space = {"kind": "box"}
    else:
        raise EnvError(f"gymnax:{name} has action space {space}; tandem supports Box and "
                       "Discrete actions on gymnax envs")
    obs_dim = int(np.prod(genv.observation_space(params).shape))
    max_steps = int(params.max_steps_in_episode)

    def reset(key):
        obs, state = genv.reset_env(key, params)
        return state, jnp.ravel(obs).astype(jnp.float32)

    def step(state, action, key):
        obs, state, reward, done, _ = genv.step_env(key, state, action, params)
        # gymnax folds its time limit into `done`; split it back out. (An episode that fails at
        # exactly the last step counts as truncated, a rare and harmless ambiguity.)
        truncated = state.time >= max_steps
        terminated = jnp.logical_and(done, jnp.logical_not(truncated))
        return (state, jnp.ravel(obs).astype(jnp.float32), jnp.asarray(reward, jnp.float32),
                terminated, truncated)

    return JaxEnv(f"gymnax:{name}", obs_dim, action_dim, low, high, max_steps, reset, step,
                  action_space)


def _brax(name: str, kwargs: dict) -> JaxEnv:
    try:
        from brax import envs as brax_envs
    except ImportError as e:
        raise EnvError(_import_failure("brax", name, e)) from None
    episode_length = int(kwargs.pop("episode_length", 1000))
    kwargs.setdefault("backend", "positional")  # pure-JAX physics: fast to compile on CPU
    try:
        benv = brax_envs.get_environment(name, **kwargs)
    except KeyError:
        import difflib
        known = sorted(getattr(brax_envs, "_envs", {}))  # brax's registry (a private dict)
        close = difflib.get_close_matches(name, known, n=3)
        raise EnvError(f"brax has no env '{name}'" + (f"; did you mean {', '.join(close)}?"
                                                     if close else f"; known: {', '.join(known)}")
                       ) from None
    action_dim = int(benv.action_size)

    def reset(key):
        s = benv.reset(key)
        return (s, jnp.zeros((), jnp.int32)), jnp.asarray(s.obs, jnp.float32)

    def step(state, action, key):
        del key  # Brax dynamics are deterministic
        s, t = state
        s = benv.step(s, action)
        t = t + 1
        terminated = jnp.asarray(s.done) > 0.5
        truncated = jnp.logical_and(t >= episode_length, jnp.logical_not(terminated))
        # some Brax envs return Python floats for reward/done: make them arrays
        return ((s, t), jnp.asarray(s.obs, jnp.float32), jnp.asarray(s.reward, jnp.float32),
                terminated, truncated)

    return JaxEnv(f"brax:{name}", int(benv.observation_size), action_dim,
                  -np.ones(action_dim), np.ones(action_dim), episode_length, reset, step)
