"""The off-policy learner outside jit, shared by the drivers that feed a replay buffer (the
Gymnasium host loop and the Ray workers' learner): the algorithm state, the replay buffer,
the observation statistics, the NumPy generator (random actions and replay sampling), and
the training calls at the configured update-to-data ratio, with their checkpoint arrays.

With ``prior`` (the dataset of an offline run this online run started from, ``--init``)
each batch is half prior data, half the run's own (RLPD's symmetric sampling), all prior
while the run has fewer rows than one batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from tandem.core.agent import AgentFns
from tandem.core.normalize import ObsRMS
from tandem.core.pytree import flatten_pytree, restore_pytree
from tandem.core.replay import HostReplay
from tandem.core.types import Transition


@dataclasses.dataclass
class ReplayLearner:
    cfg: Any
    fns: AgentFns
    seed: int
    state: Any
    replay: HostReplay
    rms: ObsRMS | None
    rng: np.random.Generator     # random actions + replay sampling
    explore_key: jax.Array
    last_metrics: dict = dataclasses.field(default_factory=dict)
    prior: Transition | None = None  # [N, ...] NumPy transitions sampled beside the replay

    @staticmethod
    def keys(seed: int) -> tuple[jax.Array, jax.Array]:
        k_init, k_explore = jax.random.split(jax.random.PRNGKey(seed))
        return k_init, k_explore

    @classmethod
    def create(cls, cfg, fns: AgentFns, seed: int, state: Any = None,
               prior: Transition | None = None) -> "ReplayLearner":
        """A fresh learner: ``state`` (default ``fns.init``) and an empty buffer."""
        k_init, k_explore = cls.keys(seed)
        spec = fns.spec
        return cls(cfg, fns, seed, fns.init(k_init) if state is None else state,
                   HostReplay(cfg.buffer_size, spec.obs, spec.action.dim),
                   ObsRMS.create(spec.obs) if cfg.normalize_obs else None,
                   np.random.default_rng(seed), k_explore, prior=prior)

    def obs_stats(self):
        return None if self.rms is None else self.rms.stats()

    def random_action(self) -> np.ndarray:
        """Uniform in [-1, 1]^A: the actions before ``learning_starts``."""
        return self.rng.uniform(-1.0, 1.0, self.fns.spec.action.dim).astype(np.float32)

    def train_calls(self, before: int, after: int) -> int:
        """Training calls due while the env step goes before+1..after: one at every multiple
        of train_freq past learning_starts."""
        cfg = self.cfg
        lo = max(before, cfg.learning_starts)
        return max(0, after // cfg.train_freq - lo // cfg.train_freq)

    def sample(self, G: int, B: int) -> Transition:
        """G x B transitions: from the replay, or half from ``prior`` when there is one."""
        if self.prior is None:
            return self.replay.sample(self.rng, G, B)
        n_prior = B if self.replay.size < B else B // 2
        idx = self.rng.integers(0, len(self.prior.reward), size=(G, n_prior))
        old = Transition(*(x[idx] for x in self.prior))
        if n_prior == B:
            return old
        new = self.replay.sample(self.rng, G, B - n_prior)
        return Transition(*(np.concatenate([a, np.asarray(b, a.dtype)], axis=1)
                            for a, b in zip(old, new)))

    def learn(self, calls: int = 1) -> None:
        """``calls`` times: G gradient steps on G x B sampled transitions, in one jitted call."""
        G, B = self.cfg.gradient_steps, self.cfg.batch_size
        stats = self.obs_stats()
        for _ in range(calls):
            self.state, self.last_metrics = self.fns.update_many(
                self.state, self.sample(G, B), stats)

    def learn_and_explore(self, obs, step: int, carry) -> tuple[np.ndarray, Any]:
        """One training call (``learn()``), and the behaviour action for env step ``step``
        from the updated parameters, in one jitted call: (action, exploration carry)."""
        G, B = self.cfg.gradient_steps, self.cfg.batch_size
        stats = self.obs_stats()
        self.state, self.last_metrics, action, carry = self.fns.update_and_explore(
            self.state, self.sample(G, B), stats, obs, self.explore_key, step, carry)
        return np.asarray(action), carry

    # ------------------------------------------------------------------ checkpoint
    def arrays(self) -> dict[str, np.ndarray]:
        arrays = flatten_pytree(self.state, "state")
        if self.rms is not None:
            arrays.update(self.rms.state_arrays())
        return arrays

    def meta(self) -> dict:
        return {"seed": self.seed, "rng": self.rng.bit_generator.state,
                "normalize_obs": self.rms is not None}

    @classmethod
    def restore(cls, cfg, fns: AgentFns, host_meta: dict, arrays: dict, store: dict | None,
                source: str, prior: Transition | None = None) -> "ReplayLearner":
        """From a checkpoint (``store``: the replay store's meta; None for a checkpoint
        written before segments, whose ``host_meta["replay"]`` says where the rows are).
        Raises what MALFORMED lists, or CheckpointError, on a checkpoint that does not fit."""
        seed = int(host_meta["seed"])
        k_init, k_explore = cls.keys(seed)
        state = restore_pytree(jax.eval_shape(fns.init, k_init), arrays, "state", source)
        spec = fns.spec
        replay = HostReplay(cfg.buffer_size, spec.obs, spec.action.dim)
        replay.restore(arrays, store, None if store is not None else host_meta["replay"])
        rms = ObsRMS.from_state(spec.obs, arrays) if host_meta["normalize_obs"] else None
        rng = np.random.default_rng()
        rng.bit_generator.state = host_meta["rng"]
        return cls(cfg, fns, seed, state, replay, rms, rng, k_explore, prior=prior)
