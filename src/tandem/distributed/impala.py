"""IMPALA's driver: Ray rollout workers stream trajectories to one learner.

Each of the W workers always has one request in flight: "act with these parameters for
n_steps steps of your envs_per_worker envs". When a trajectory arrives, the learner queues it;
every ``rollouts_per_update`` trajectories it takes one jitted V-trace step, puts the new
actor parameters into Ray's object store once, and hands the worker that just reported its
next request with them. Workers never wait for the learner and the learner never waits for a
particular worker. ``rollout/policy_lag`` is the number of learner updates between the
parameters a trajectory was collected with and the update that learns from it (V-trace
corrects for exactly that).

Checkpoints hold the learner state, counters and recent episode statistics. A resume starts
fresh workers (fresh episodes): asynchronous collection is not reproducible step for step,
so, unlike the single-process drivers, an IMPALA resume is not bit-exact.
"""

from __future__ import annotations

import logging
import time

import jax
import numpy as np

from tandem.core.agent import AgentFns
from tandem.core.evaluate import evaluate_policy
from tandem.core.logging import episode_metrics, record_episodes, to_floats
from tandem.core.pytree import flatten_pytree, restore_pytree
from tandem.core.types import Rollout, Trajectory
from tandem.distributed.cluster import driver_spec
from tandem.distributed.workers import TrajectoryWorker, WorkerPool, worker_seed
from tandem.envs.gym import GymEnv
from tandem.errors import CheckpointError
from tandem.run.checkpoint import MALFORMED, Snapshot, counters
from tandem.run.driver import Control
from tandem.run.results import Policy

log = logging.getLogger("tandem")

_FIELDS = ("obs", "action", "reward", "terminated", "done", "final_obs")


class IMPALADriver:
    """The V-trace learner and its Ray workers (see the module docstring)."""

    unit = "env_steps"
    per_seed_folders = False
    compile_s = 0.0

    def __init__(self, cfg, genv: GymEnv, fns: AgentFns, seed: int, algo: str, eval_env=None,
                 mujoco_log: str | None = None) -> None:
        driver_spec(genv.env_id)  # an unregistered instance cannot be made by a worker: say so
        self.cfg, self.genv, self.fns, self.algo = cfg, genv, fns, algo
        self.seeds = [int(seed)]
        self.eval_env = eval_env if eval_env is not None else genv.env
        self.mujoco_log = mujoco_log
        self.state = None
        self.step_ = self.episode = 0        # env steps learned from
        self.recent_returns: list = []
        self.recent_lengths: list = []
        self.lost_trajectories = 0
        self.restarts = 0                    # worker processes replaced (this session)
        self.pool: WorkerPool | None = None
        self.last_metrics: dict = {}
        self.lags: list = []                 # since the last log line
        self.worker_s: list = []
        self.learn_s = 0.0
        self.batch: list[dict] = []

    @property
    def step(self) -> int:
        return self.step_

    def start(self) -> None:
        self.state = self.fns.init(jax.random.PRNGKey(self.seeds[0]))

    def restore(self, meta: dict, arrays: dict, source: str) -> None:
        try:
            hm = meta["host"]
            self.seeds = list(counters(hm, "seed"))
            self.state = restore_pytree(
                jax.eval_shape(self.fns.init, jax.random.PRNGKey(self.seeds[0])), arrays,
                "state", source)
            self.step_, self.episode = counters(hm, "step", "episode")
            self.recent_returns = list(hm["recent_returns"])
            self.recent_lengths = list(hm["recent_lengths"])
            self.lost_trajectories = int(hm.get("lost_trajectories", 0))
        except MALFORMED as exc:
            raise CheckpointError(f"{source}: host state is incomplete or malformed "
                                  f"({exc!r})") from None

    def _start_pool(self) -> WorkerPool:
        cfg, gym_spec = self.cfg, driver_spec(self.genv.env_id)
        cfg_dict, env_spec, source = cfg.to_dict(), self.fns.spec.to_json(), self.genv.source

        def args(i: int, incarnation: int) -> tuple:
            # a resumed run's workers get other seeds than the first session's (step in the seed)
            return ("impala", cfg_dict, env_spec, source.name, source.kwargs, gym_spec,
                    worker_seed(self.seeds[0] + 1_000_003 * self.step_, i, incarnation),
                    cfg.envs_per_worker, self.mujoco_log)

        log.info("starting %d IMPALA rollout workers (%d envs each)", cfg.workers,
                 cfg.envs_per_worker)
        return WorkerPool(TrajectoryWorker, cfg.workers, args, "rollout", cfg.worker_cpus,
                          cfg.ray_address, max_restarts=max(10, 5 * cfg.workers))

    def _put_params(self) -> None:
        self.params_ref = self.pool.ray.put(jax.device_get(self.fns.policy_params(self.state)))

    def advance(self, until: int, control: Control) -> None:
        """Learn until ``until`` env steps have been learned from (whole batches)."""
        cfg, fns = self.cfg, self.fns
        if self.pool is None:
            self.pool = self._start_pool()
            self.version = int(self.state.updates)
            self._put_params()
            for i in range(cfg.workers):
                self.pool.submit(i, self.params_ref, self.version, cfg.n_steps)
        pool = self.pool
        while self.step_ < until and not control.stop:
            i, result = pool.next_result()
            if result is None:  # the worker died; its replacement gets the newest parameters
                self.lost_trajectories += 1
                pool.submit(i, self.params_ref, self.version, cfg.n_steps)
                continue
            record_episodes(self, result["returns"], result["lengths"])
            self.batch.append(result)
            if len(self.batch) == cfg.rollouts_per_update:
                start, t0 = self.step_, time.perf_counter()
                self.lags.extend(self.version - r["version"] for r in self.batch)
                self.worker_s.extend(r["seconds"] for r in self.batch)
                frac = np.float32(1.0 - start / max(control.total, 1))
                self.state, self.last_metrics = fns.update(self.state, _batch(self.batch), frac)
                self.version += 1
                self._put_params()
                self.learn_s += time.perf_counter() - t0
                self.step_ += sum(r["steps"] for r in self.batch)
                self.batch = []
                control.tick(self.step_)
            pool.submit(i, self.params_ref, self.version, cfg.n_steps)

    def metrics(self) -> list[dict]:
        m = to_floats(self.last_metrics)
        m.update(episode_metrics(self.recent_returns, self.recent_lengths, self.episode))
        pool = self.pool
        m.update({"rollout/policy_lag": float(np.mean(self.lags)) if self.lags else 0.0,
                  "rollout/policy_lag_max": float(np.max(self.lags)) if self.lags else 0.0,
                  "rollout/worker_restarts": float(pool.restarts if pool else self.restarts),
                  "rollout/lost_trajectories": float(self.lost_trajectories),
                  "time/learn_s": self.learn_s})
        if self.worker_s:
            m["time/worker_rollout_s"] = float(np.mean(self.worker_s))
        self.lags, self.worker_s = [], []
        return [m]

    def evaluate(self, episodes: int) -> list[dict]:
        return [evaluate_policy(self.policy().act, self.eval_env, episodes, self.seeds[0])]

    def snapshot(self) -> Snapshot:
        return Snapshot(flatten_pytree(self.state, "state"), {"host": {
            "step": self.step_, "episode": self.episode, "seed": self.seeds[0],
            "recent_returns": self.recent_returns, "recent_lengths": self.recent_lengths,
            "lost_trajectories": self.lost_trajectories,
            "restarts": self.pool.restarts if self.pool is not None else self.restarts}})

    def policy(self, index: int = 0) -> Policy:
        return Policy(self.algo, self.fns.policy_params(self.state), None, self.fns.spec,
                      self.fns.act)

    def summary(self, wall_s: float) -> dict:
        restarts = self.pool.restarts if self.pool is not None else self.restarts
        return {"rollout/worker_restarts": restarts,
                "rollout/lost_trajectories": self.lost_trajectories,
                "jax_backend": jax.default_backend()}

    def close(self) -> None:
        if self.pool is not None:
            self.restarts = self.pool.restarts
            self.pool.shutdown()  # requests in flight are not learned from
            self.pool = None


def _batch(results: list[dict]) -> Trajectory:
    """K worker trajectories [T, E] -> one learner batch [T, K * E]."""
    cat = lambda *xs: np.concatenate(xs, axis=1)  # noqa: E731
    a = [r["arrays"] for r in results]
    fields = {k: jax.tree_util.tree_map(cat, *[x[k] for x in a])
              for k in _FIELDS + ("behaviour_logp",)}
    last = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0),
                                  *[x["last_obs"] for x in a])
    return Trajectory(Rollout(*(fields[k] for k in _FIELDS), last), fields["behaviour_logp"])
