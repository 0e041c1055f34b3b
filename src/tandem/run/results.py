"""What training hands back: a deployable :class:`Policy`, a :class:`Run`, a :class:`Sweep`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tandem.config import Config
from tandem.core.spaces import EnvSpec, batch_size, canonical, to_env_action
from tandem.errors import EnvError


@dataclasses.dataclass
class Policy:
    """A trained deterministic policy: raw env observation in, env action out.

    ``act(obs)`` takes one observation or a batch (a leading axis on every leaf) of any space
    tandem trains on (Box of any shape, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple),
    and returns the env's action (Box actions scaled to its bounds, integer actions with
    Gymnasium's ``start``), batched the same way."""

    algo: str
    params: Any
    obs_stats: Any            # normalisation statistics (None when not normalised)
    spec: EnvSpec
    _act: Callable            # (params, obs_stats, obs [N, ...]) -> policy actions [N, ...]

    def act(self, obs: Any) -> np.ndarray:
        space = self.spec.obs
        try:
            n = batch_size(space, obs)
        except ValueError as exc:
            raise EnvError(f"Policy.act: {exc}") from None
        batch = (1,) if n is None else (n,)
        x = canonical(space, obs, batch)
        a = to_env_action(self.spec.action, np.asarray(self._act(self.params, self.obs_stats,
                                                                 x)))
        return a[0] if n is None else a

    __call__ = act

    @property
    def action_low(self) -> np.ndarray:
        return np.asarray(self.spec.action.low, np.float64)

    @property
    def action_high(self) -> np.ndarray:
        return np.asarray(self.spec.action.high, np.float64)


@dataclasses.dataclass
class Run:
    """A finished (or resumed) training run."""

    dir: Path
    algo: str
    env_id: str | None
    seed: int
    config: Config
    summary: dict
    state: Any
    policy: Policy

    def act(self, obs: Any) -> np.ndarray:
        return self.policy.act(obs)


@dataclasses.dataclass
class Sweep:
    """Several seeds of one configuration: one compiled program (JAX-native envs) or runs one
    after another (Gymnasium envs). ``summary`` aggregates across seeds."""

    dir: Path
    algo: str
    env_id: str | None
    seeds: list[int]
    summaries: list[dict]
    summary: dict
    policies: list[Policy]
    state: Any = None  # the compiled path's vmapped state
