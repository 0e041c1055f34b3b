"""One env resolver: what an ``--env`` string (or an env object) names, and how to make it.

- ``gymnax:Name`` and ``brax:name``: JAX-native envs, trained as one compiled program;
- ``mamujoco:``, ``jaxmarl:``, ``text:``: reserved for the multi-agent and text envs to come
  (a clear error until then);
- ``module:Name``: imports ``module``, then uses ``Name`` as a Gymnasium id it registered or,
  failing that, as a factory attribute of the module (a class or function making the env,
  called with the env kwargs, as PettingZoo's ``parallel_env``);
- a registered Gymnasium id; a ``gymnasium.Env`` instance; a ``JaxEnv``.

``parse_env_kwargs`` reads ``--env-kwargs k=v,...`` (numbers, booleans, None and strings).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any, Callable

import gymnasium as gym

from tandem.envs.jaxenv import SUITES, JaxEnv
from tandem.errors import EnvError

RESERVED = {"mamujoco": "multi-agent MuJoCo", "jaxmarl": "JaxMARL multi-agent",
            "text": "text"}


@dataclasses.dataclass
class EnvSource:
    """A resolved env. ``kind``: "gym" (a registered id, ``name`` re-makes it), "factory"
    (``module:attr``), "instance" (a user's ``gymnasium.Env``) or "jax" (a JAX-native env)."""

    kind: str
    name: str | None               # what config.json records (None: an unregistered instance)
    kwargs: dict
    instance: Any = None           # the user's gymnasium.Env or JaxEnv
    factory: Callable | None = None

    @property
    def remakeable(self) -> bool:
        """Whether more instances can be made (evaluation env, vector envs, workers)."""
        return self.kind in ("gym", "factory") or (
            self.kind == "instance" and self.instance.spec is not None)

    def make(self) -> gym.Env:
        """A fresh Gymnasium instance."""
        if self.kind == "gym":
            try:
                return gym.make(self.name, **self.kwargs)
            except gym.error.DependencyNotInstalled as exc:
                raise EnvError(f"env '{self.name}' needs an optional dependency: {exc}. For "
                               "MuJoCo envs run: pip install 'tandem-rl[mujoco]'") from None
            except TypeError as exc:
                if not self.kwargs or "unexpected keyword argument" not in str(exc):
                    raise
                raise EnvError(f"env '{self.name}' does not take the argument(s) "
                               f"{', '.join(sorted(self.kwargs))}: "
                               f"{str(exc).splitlines()[0].split(' was raised')[0]}") from None
        if self.kind == "factory":
            env = self.factory(**self.kwargs)
            if not isinstance(env, gym.Env):
                raise EnvError(f"env '{self.name}': the factory returned a "
                               f"{type(env).__name__}, not a gymnasium.Env")
            return env
        if self.kind == "instance" and self.instance.spec is not None:
            return gym.make(self.instance.spec)
        raise EnvError("this env was passed as an unregistered instance, so tandem cannot make "
                       "another copy: register it (gymnasium.register) and pass its id")


def resolve_env(env: Any, env_kwargs: dict | None = None) -> EnvSource:
    """What ``env`` names; EnvError with close names when it names nothing."""
    kwargs = dict(env_kwargs or {})
    if isinstance(env, JaxEnv):
        return EnvSource("jax", env.env_id, kwargs, env)
    if isinstance(env, gym.Env):
        return EnvSource("instance", env.spec.id if env.spec is not None else None, kwargs, env)
    if not isinstance(env, str):
        raise EnvError(f"expected an env id or a gymnasium.Env instance, got "
                       f"{type(env).__name__}")
    prefix, sep, rest = env.partition(":")
    if sep and prefix in SUITES:
        return EnvSource("jax", env, kwargs)
    if sep and prefix in RESERVED:
        raise EnvError(f"'{prefix}:' envs ({RESERVED[prefix]}) are not supported by this "
                       f"version of tandem yet; '{env}' cannot be trained")
    if env in gym.registry:
        return EnvSource("gym", env, kwargs)
    if sep:
        try:
            module = importlib.import_module(prefix)
        except ImportError as exc:
            raise EnvError(f"env '{env}': cannot import module '{prefix}' ({exc})") from None
        if rest in gym.registry:
            return EnvSource("gym", env, kwargs)  # gym.make imports the module again: cheap
        attr = getattr(module, rest, None)
        if callable(attr):
            return EnvSource("factory", env, kwargs, factory=attr)
        raise EnvError(f"env '{env}': module '{prefix}' registers no Gymnasium id '{rest}' and "
                       f"has no env factory of that name")
    names = list(gym.registry.keys())
    close = difflib.get_close_matches(env, names, n=3, cutoff=0.6)
    if not close:  # also match ignoring version and case, e.g. "pendulum" -> Pendulum-v1
        base = env.split("-v")[0].lower()
        close = [n for n in names if n.split("-v")[0].lower() == base][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else \
        "; register it with gymnasium.register(...) or pass an env instance"
    raise EnvError(f"unknown env id '{env}'{hint}")


def parse_env_kwargs(text: str | None) -> dict:
    """``"a=1,b=0.5,c=true,d=none,e=name"`` -> {'a': 1, 'b': 0.5, 'c': True, 'd': None,
    'e': 'name'}."""
    out: dict[str, Any] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise EnvError(f"--env-kwargs {text!r}: give key=value pairs separated by commas, "
                           "e.g. --env-kwargs g=9.81,max_torque=2")
        out[key] = parse_value(value.strip())
    return out


def parse_value(text: str) -> Any:
    """One --env-kwargs value: a number, true/false, none, or the text itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
