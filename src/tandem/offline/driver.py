"""Offline driver (issue 16): an algorithm learns from a fixed dataset; steps are gradient steps.

The dataset (:class:`tandem.envs.datasets.Dataset`) is held as one :class:`Transition` of
arrays [N, ...] in the policy's units (actions mapped from the env's bounds into [-1, 1]).
One jitted function samples B rows per gradient step, with a key folded from the run's seed
and the step, and runs n steps in a loop whose length is an argument: one compilation for any
n, and a resumed run samples exactly the batches an uninterrupted one does.

Preprocessing as each paper does it, fixed at the start from the dataset and saved with the
policy: observation normalisation by the dataset's mean and std (``normalize_obs``: TD3+BC,
SAC-RND) and reward scaling (``reward_scale``: IQL's 1000 / (max return - min return) on
locomotion). A checkpoint names the dataset and its checksum; resuming on other data is
refused.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from tandem.core.agent import AgentFns, counted_jit
from tandem.core.evaluate import evaluate_policy
from tandem.core.logging import to_floats
from tandem.core.pytree import flatten_pytree, restore_pytree
from tandem.core.spaces import Space, canonical
from tandem.core.types import ObsStats, Transition
from tandem.envs.datasets import Dataset
from tandem.errors import CheckpointError
from tandem.run.checkpoint import MALFORMED, Snapshot, counters
from tandem.run.driver import Control
from tandem.run.results import Policy

OBS_STD_EPS = 1e-3  # TD3+BC's (s - mean) / (std + 1e-3)


def from_env_action(space: Space, a: np.ndarray) -> np.ndarray:
    """Env action -> the policy's [-1, 1] (the inverse of ``to_env_action``), clipped."""
    low, high = np.asarray(space.low), np.asarray(space.high)
    return np.clip(2.0 * (np.asarray(a, np.float64) - low) / (high - low) - 1.0, -1.0,
                   1.0).astype(np.float32)


def dataset_obs_stats(obs: np.ndarray) -> ObsStats:
    """The dataset's per-dimension mean and std (+ 1e-3) of a flat observation."""
    x = np.asarray(obs, np.float64)
    return ObsStats(x.mean(0).astype(np.float32), (x.std(0) + OBS_STD_EPS).astype(np.float32))


def returns_reward_scale(data: Dataset) -> float:
    """IQL's locomotion reward scale: 1000 / (max - min episode return) (Kostrikov et al.,
    2022, App. B)."""
    r = data.episode_returns
    spread = float(r.max() - r.min())
    return 1000.0 / spread if spread > 0 else 1.0


def _train_steps(state, data: Transition, stats, key, start, n, *, update, batch_size: int):
    """``n`` gradient steps from step ``start``: step t trains on B rows drawn with
    fold_in(key, t). Returns the state and the metrics averaged over the steps."""
    rows = data.reward.shape[0]

    def batch_at(t):
        idx = jax.random.randint(jax.random.fold_in(key, t), (batch_size,), 0, rows)
        return jax.tree_util.tree_map(lambda x: x[idx], data)

    shapes = jax.eval_shape(lambda: update(state, batch_at(start), stats)[1])
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)

    def one(i, carry):
        st, sums = carry
        st, m = update(st, batch_at(start + i), stats)
        return st, jax.tree_util.tree_map(lambda a, b: a + b.astype(jnp.float32), sums, m)

    state, sums = jax.lax.fori_loop(0, n, one, (state, zeros))
    return state, jax.tree_util.tree_map(lambda s: s / jnp.maximum(n, 1), sums)


_TRAIN_FNS: dict[tuple[int, int], tuple[AgentFns, Any]] = {}


def _train_fn(fns: AgentFns, batch_size: int):
    """The jitted :func:`_train_steps` of an algorithm's functions (the builders cache those
    per config), shared by every driver on them: one compilation per run, resumes included."""
    key = (id(fns), batch_size)
    hit = _TRAIN_FNS.get(key)
    if hit is None or hit[0] is not fns:
        hit = (fns, counted_jit(functools.partial(_train_steps, update=fns.raw["update"],
                                                  batch_size=batch_size),
                                "offline_train", fns.traces))
        _TRAIN_FNS[key] = hit
    return hit[1]


def dataset_transitions(data: Dataset, spec, reward_scale: float = 1.0) -> Transition:
    """A dataset as flat NumPy transitions [N, ...] in the policy's units: canonical
    observations, actions mapped from the env's bounds into [-1, 1], rewards x
    ``reward_scale``."""
    n = data.size
    return Transition(np.asarray(canonical(spec.obs, data.obs, (n,))),
                      np.asarray(from_env_action(spec.action, data.action), np.float32),
                      np.asarray(data.reward * reward_scale, np.float32),
                      np.asarray(canonical(spec.obs, data.next_obs, (n,))),
                      np.asarray(data.terminated, np.float32))


class OfflineDriver:
    """One seed learning from ``data``; evaluates in ``eval_env`` (None: no evaluation)."""

    unit = "gradient_steps"
    per_seed_folders = False

    def __init__(self, cfg, data: Dataset, fns: AgentFns, seed: int, algo: str,
                 eval_env: gym.Env | None, reward_scale: float = 1.0) -> None:
        self.cfg, self.fns, self.algo, self.seeds = cfg, fns, algo, [seed]
        self.dataset, self.eval_env = data, eval_env
        self.reward_scale = float(reward_scale)
        spec = fns.spec
        self.obs_stats = (dataset_obs_stats(data.obs) if cfg.normalize_obs else None)
        self.data = Transition(*map(jnp.asarray,  # [N, ...], device arrays
                                    dataset_transitions(data, spec, self.reward_scale)))
        self._train = _train_fn(fns, cfg.batch_size)
        k_init, self.sample_key = jax.random.split(jax.random.PRNGKey(seed))
        self._init_key = k_init
        self.step_ = 0
        self.state_: Any = None
        self.last_metrics: dict = {}
        self.compile_s = 0.0
        self._compiled = False

    # ------------------------------------------------------------------ Driver
    @property
    def step(self) -> int:
        return self.step_

    @property
    def state(self):
        return self.state_

    def start(self) -> None:
        self.state_ = self.fns.init(self._init_key)
        if self.fns.offline_init is not None:  # constants the algorithm takes from its data
            self.state_ = self.fns.offline_init(self.state_, self.data)

    def restore(self, meta: dict, arrays: dict, source: str) -> None:
        try:
            hm = meta["host"]
            (self.step_,) = counters(hm, "step")
            saved = hm["dataset"]
            if saved["checksum"] != self.dataset.checksum:
                raise CheckpointError(
                    f"{source} was trained on dataset '{saved['name']}' with checksum "
                    f"{saved['checksum']}; '{self.dataset.name}' has {self.dataset.checksum} "
                    "now: the data changed, so this run cannot continue on it")
            self.state_ = restore_pytree(jax.eval_shape(self.fns.init, self._init_key), arrays,
                                         "state", source)
        except MALFORMED as exc:
            raise CheckpointError(f"{source}: offline state is incomplete or malformed "
                                  f"({exc!r})") from None

    def advance(self, until: int, control: Control) -> None:
        every = max(1, control.tick_every)
        while self.step_ < until and not control.stop:
            # the first call compiles: it takes one step, and its time is kept out of steps/s
            n = 1 if not self._compiled else min(until - self.step_,
                                                 every - self.step_ % every)
            t0 = time.perf_counter()
            self.state_, metrics = self._train(self.state_, self.data, self.obs_stats,
                                               self.sample_key, self.step_, n)
            self.last_metrics = jax.device_get(metrics)
            if not self._compiled:
                self.compile_s += time.perf_counter() - t0
                self._compiled = True
            self.step_ += n
            control.tick(self.step_)

    def metrics(self) -> list[dict]:
        return [to_floats(self.last_metrics)]

    def evaluate(self, episodes: int) -> list[dict]:
        if self.eval_env is None:
            return [{"returns": [], "lengths": None}]
        r = evaluate_policy(self.policy().act, self.eval_env, episodes, self.seeds[0])
        scores = self.dataset.normalized(np.mean(r["returns"]))
        r["extra"] = {f"eval/normalized_score_{k}": float(v) for k, v in scores.items()}
        return [r]

    def snapshot(self) -> Snapshot:
        arrays = flatten_pytree(self.state_, "state")
        if self.obs_stats is not None:  # the policy's input transform, kept with it
            arrays["offline/obs_mean"], arrays["offline/obs_std"] = (
                np.asarray(x) for x in self.obs_stats)
        meta = {"host": {"step": self.step_, "seed": self.seeds[0],
                         "offline_obs_stats": self.obs_stats is not None,
                         "reward_scale": self.reward_scale,
                         "dataset": {"name": self.dataset.name,
                                     "checksum": self.dataset.checksum}}}
        return Snapshot(arrays, meta, {})

    def policy(self, index: int = 0) -> Policy:
        return Policy(self.algo, self.fns.policy_params(self.state_), self.obs_stats,
                      self.fns.spec, self.fns.act)

    def summary(self, wall_s: float) -> dict:
        return {"jax_backend": jax.default_backend(), "dataset": self.dataset.name,
                "dataset_checksum": self.dataset.checksum}

    def close(self) -> None:
        if self.eval_env is not None:
            self.eval_env.close()
