"""Observation and action spaces as plain, hashable data (NumPy only), and the env spec.

An :class:`EnvSpec` says what an agent needs to know about an env: the structure of its
observations (a :class:`Space` tree whose leaves keep their own shape and dtype: a uint8
image stays uint8, a Discrete observation stays one integer), its action space and its time
limit. It replaces a flat ``obs_dim``: replay buffers store each observation leaf as it is,
networks encode the leaves into features (``tandem.core.nets.encode``), and a deployed
policy turns raw observations, single or batched, into that structure.

This module imports NumPy only, so a deployed policy (and the run layer) can use it without
JAX or Gymnasium. Gymnasium spaces are converted in ``tandem.envs.gym``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

import numpy as np

LEAF_KINDS = ("box", "discrete", "multidiscrete", "multibinary")


@dataclasses.dataclass(frozen=True)
class Space:
    """One space. Leaves: ``box`` (``shape``, ``dtype``; action boxes also ``low``/``high``,
    flat), ``discrete`` (one integer in [start, start + n): ``nvec == (n,)``, ``shape == ()``),
    ``multidiscrete`` (``shape == (k,)`` integers, the i-th in [start_i, start_i + nvec_i)),
    ``multibinary`` (0/1 of ``shape``). Containers: ``dict`` (``items`` = ((key, Space), ...)
    in the env's key order) and ``tuple`` (``items`` = (Space, ...))."""

    kind: str
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    nvec: tuple[int, ...] = ()
    start: tuple[int, ...] = ()
    items: tuple = ()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def box(cls, shape, dtype: str = "float32", low=None, high=None) -> "Space":
        shape = tuple(int(d) for d in shape)
        flat = lambda v: None if v is None else tuple(  # noqa: E731
            float(x) for x in np.broadcast_to(np.asarray(v, np.float64), shape).reshape(-1))
        return cls("box", shape, str(np.dtype(dtype)), flat(low), flat(high))

    @classmethod
    def discrete(cls, n: int, start: int = 0) -> "Space":
        return cls("discrete", (), "int32", nvec=(int(n),), start=(int(start),))

    @classmethod
    def multidiscrete(cls, nvec, start=None) -> "Space":
        nvec = tuple(int(n) for n in nvec)
        start = tuple(int(s) for s in start) if start is not None else (0,) * len(nvec)
        return cls("multidiscrete", (len(nvec),), "int32", nvec=nvec, start=start)

    @classmethod
    def multibinary(cls, shape) -> "Space":
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
        return cls("multibinary", tuple(int(d) for d in shape), "int8")

    @classmethod
    def dict_of(cls, items) -> "Space":
        return cls("dict", items=tuple((str(k), v) for k, v in
                                       (items.items() if isinstance(items, dict) else items)))

    @classmethod
    def tuple_of(cls, items) -> "Space":
        return cls("tuple", items=tuple(items))

    # ------------------------------------------------------------------ properties
    @property
    def is_leaf(self) -> bool:
        return self.kind in LEAF_KINDS

    @property
    def dim(self) -> int:
        """Action dimensions: the Box's size, 1 for Discrete, k for MultiDiscrete."""
        if self.kind == "discrete":
            return 1
        return int(math.prod(self.shape))

    @property
    def is_image(self) -> bool:
        """A Box that looks like pixels: [H, W, C] / [C, H, W] with C in 1, 3, 4 or uint8
        of rank 3, or a uint8 [H, W]."""
        if self.kind != "box":
            return False
        s = self.shape
        return (len(s) == 3 and (self.dtype == "uint8" or s[-1] in (1, 3, 4) or
                                 s[0] in (1, 3, 4))) or (len(s) == 2 and self.dtype == "uint8")

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        if self.kind == "dict":
            return {"kind": "dict", "items": [[k, v.to_json()] for k, v in self.items]}
        if self.kind == "tuple":
            return {"kind": "tuple", "items": [v.to_json() for v in self.items]}
        out: dict[str, Any] = {"kind": self.kind, "shape": list(self.shape), "dtype": self.dtype}
        if self.low is not None:
            out["low"], out["high"] = list(self.low), list(self.high)
        if self.kind in ("discrete", "multidiscrete"):
            out["nvec"], out["start"] = list(self.nvec), list(self.start)
        return out

    @classmethod
    def from_json(cls, d: dict) -> "Space":
        kind = d["kind"]
        if kind == "dict":
            return cls.dict_of([(k, cls.from_json(v)) for k, v in d["items"]])
        if kind == "tuple":
            return cls.tuple_of([cls.from_json(v) for v in d["items"]])
        if kind == "box":
            return cls.box(d["shape"], d.get("dtype", "float32"), d.get("low"), d.get("high"))
        if kind == "discrete":
            return cls.discrete(d["nvec"][0], d.get("start", [0])[0])
        if kind == "multidiscrete":
            return cls.multidiscrete(d["nvec"], d.get("start"))
        if kind == "multibinary":
            return cls.multibinary(d["shape"])
        raise ValueError(f"unknown space kind {kind!r}")


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an env (hashable: a cache key of the builders)."""

    obs: Space
    action: Space
    env_id: str | None = None
    max_steps: int | None = None  # the time limit of an episode, where known

    @classmethod
    def box(cls, obs_dim: int, action_dim: int, low: float = -1.0, high: float = 1.0,
            env_id: str | None = None) -> "EnvSpec":
        """A flat Box observation and a Box action space (tests, benchmarks)."""
        return cls(Space.box((obs_dim,)), Space.box((action_dim,), low=low, high=high), env_id)

    def to_json(self) -> dict:
        return {"env_id": self.env_id, "obs": self.obs.to_json(),
                "action": self.action.to_json(), "max_steps": self.max_steps}

    @classmethod
    def from_json(cls, d: dict) -> "EnvSpec":
        """From a run's ``env_spec``, including those written before this format (flat
        ``obs_dim`` with an ``obs_layout``, ``action_low``/``action_high``/``action_space``)."""
        if "obs" in d:
            return cls(Space.from_json(d["obs"]), Space.from_json(d["action"]), d.get("env_id"),
                       d.get("max_steps"))
        return cls(_legacy_obs(d.get("obs_layout") or {"type": "box",
                                                       "shape": [d["obs_dim"]]}),
                   _legacy_action(d), d.get("env_id"), d.get("max_steps"))


def _legacy_obs(layout: dict) -> Space:
    t = layout["type"]
    if t == "box":
        return Space.box(layout["shape"])
    if t == "discrete":
        return Space.discrete(layout["n"], layout.get("start", 0))
    if t == "dict":
        return Space.dict_of([(k, _legacy_obs(v)) for k, v in layout["items"]])
    if t == "tuple":
        return Space.tuple_of([_legacy_obs(v) for v in layout["items"]])
    raise ValueError(f"unknown observation layout {t!r}")


def _legacy_action(d: dict) -> Space:
    a = d.get("action_space") or {"kind": "box"}
    if a["kind"] == "box":
        return Space.box((int(d["action_dim"]),), "float32", d["action_low"], d["action_high"])
    if a["kind"] == "discrete":
        return Space.discrete(a["nvec"][0], a.get("start", [0])[0])
    return Space.multidiscrete(a["nvec"], a.get("start"))


# ============================================================================ leaves
def leaves(space: Space, path: tuple = ()) -> Iterator[tuple[tuple, Space]]:
    """(path, leaf space) in order; a path is the dict keys / tuple indices to the leaf."""
    if space.kind == "dict":
        for k, sub in space.items:
            yield from leaves(sub, path + (k,))
    elif space.kind == "tuple":
        for i, sub in enumerate(space.items):
            yield from leaves(sub, path + (i,))
    else:
        yield path, space


def leaf_name(path: tuple) -> str:
    """'a/b' for path ('a', 'b'); '' for the root (a single-leaf space)."""
    return "/".join(str(p) for p in path)


def get_leaf(obs: Any, path: tuple) -> Any:
    for p in path:
        obs = obs[p]
    return obs


def build(space: Space, leaf_fn, path: tuple = ()) -> Any:
    """A structure shaped like ``space`` with ``leaf_fn(path, leaf)`` at each leaf."""
    if space.kind == "dict":
        return {k: build(sub, leaf_fn, path + (k,)) for k, sub in space.items}
    if space.kind == "tuple":
        return tuple(build(sub, leaf_fn, path + (i,)) for i, sub in enumerate(space.items))
    return leaf_fn(path, space)


def feature_dim(space: Space) -> int:
    """Width of the flat feature vector the networks see (one-hot for discrete leaves, as
    ``gymnasium.spaces.flatten``)."""
    total = 0
    for _, leaf in leaves(space):
        if leaf.kind == "discrete":
            total += leaf.nvec[0]
        elif leaf.kind == "multidiscrete":
            total += sum(leaf.nvec)
        else:
            total += int(math.prod(leaf.shape))
    return total


def zeros(space: Space, batch: tuple[int, ...] = ()) -> Any:
    """Zero observations [*batch, *leaf shape] in each leaf's dtype."""
    return build(space, lambda _, leaf: np.zeros(batch + leaf.shape, leaf.dtype))


def canonical(space: Space, obs: Any, batch: tuple[int, ...] = ()) -> Any:
    """An env's observation (dicts, tuples, lists, scalars, any dtype) as the structure of
    ``space`` with NumPy arrays of each leaf's dtype and shape [*batch, *leaf shape]."""
    if space.kind == "box" and not batch:  # the common case, kept cheap
        return np.asarray(obs, space.dtype).reshape(space.shape)

    def leaf(path, s):
        return np.asarray(get_leaf(obs, path), s.dtype).reshape(batch + s.shape)
    return build(space, leaf)


def batch_size(space: Space, obs: Any) -> int | None:
    """None if ``obs`` is one observation of ``space``, else the size of its leading batch
    axis; ValueError if its shape fits neither."""
    path, leaf = next(iter(leaves(space)))
    x = np.asarray(get_leaf(obs, path))
    if x.ndim == len(leaf.shape):
        return None
    if x.ndim == len(leaf.shape) + 1 and x.shape[1:] == leaf.shape:
        return x.shape[0]
    raise ValueError(f"observation{' ' + leaf_name(path) if path else ''} has shape {x.shape}; "
                     f"expected {leaf.shape} (one observation) or [N, *{leaf.shape}] (a batch)")


def flatten(space: Space, obs: Any, batch: tuple[int, ...] = ()) -> np.ndarray:
    """Flat float32 features [*batch, feature_dim] of canonical ``obs`` (NumPy; the same
    encoding as the networks' ``tandem.core.nets.encode``)."""
    parts = []
    for path, leaf in leaves(space):
        x = np.asarray(get_leaf(obs, path))
        if leaf.kind == "discrete":
            parts.append(np.eye(leaf.nvec[0], dtype=np.float32)[x - leaf.start[0]])
        elif leaf.kind == "multidiscrete":
            parts += [np.eye(n, dtype=np.float32)[x[..., i] - leaf.start[i]]
                      for i, n in enumerate(leaf.nvec)]
        else:
            parts.append(x.astype(np.float32).reshape(batch + (-1,)))
    return np.concatenate(parts, axis=-1)


# ============================================================================ actions
def to_env_action(space: Space, a: Any) -> np.ndarray:
    """Policy action -> env action. Box: the policy acts in [-1, 1]; clipped, scaled to
    [low, high] (float64), clipped to the bounds again against rounding. Discrete and
    MultiDiscrete: Gymnasium's ``start`` added."""
    if space.kind == "box":
        low, high = np.asarray(space.low), np.asarray(space.high)
        scaled = low + (np.clip(np.asarray(a, np.float64), -1.0, 1.0) + 1.0) * 0.5 * (high - low)
        return np.clip(scaled, low, high)
    a = np.asarray(a, np.int64)
    if space.kind == "discrete":
        return a + space.start[0]
    return a + np.asarray(space.start, np.int64)
