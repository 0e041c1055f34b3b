"""Off-policy driver (SAC, TD3, DDPG, DroQ) with Ray rollout workers: ``--workers W``.

W workers each step their own env with a recent copy of the actor (uniform random actions
until ``learning_starts``, then the algorithm's exploration) and return ``worker_steps``
transitions per request; the learner adds them to its replay buffer and takes the same
number of gradient steps per env step as the single-process loop (``gradient_steps`` every
``train_freq`` steps), then sends the worker its next request with the newest parameters. A
slow simulator then bounds each worker, not the learner: collection scales with W until the
learner's updates become the limit.

Checkpoints hold the same learner as the single-process driver's (algorithm state, replay
buffer, RNG, observation statistics); a resume starts fresh workers and fresh episodes, so it
is not bit-exact.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from tandem.core.agent import AgentFns
from tandem.core.evaluate import evaluate_policy
from tandem.core.logging import episode_metrics, record_episodes, to_floats
from tandem.core.offpolicy import ReplayLearner
from tandem.distributed.cluster import driver_spec
from tandem.distributed.workers import TransitionWorker, WorkerPool, worker_seed
from tandem.envs.gym import GymEnv
from tandem.errors import CheckpointError
from tandem.run.checkpoint import MALFORMED, Segmented, Snapshot, counters, store_meta
from tandem.run.driver import Control
from tandem.run.results import Policy

log = logging.getLogger("tandem")


class WorkerOffPolicyDriver:
    """A :class:`ReplayLearner` fed by Ray workers (see the module docstring)."""

    unit = "env_steps"
    per_seed_folders = False
    compile_s = 0.0

    def __init__(self, cfg, genv: GymEnv, fns: AgentFns, seed: int, algo: str, eval_env=None,
                 mujoco_log: str | None = None) -> None:
        driver_spec(genv.env_id)  # workers make their own envs: an unregistered instance cannot
        self.cfg, self.genv, self.fns, self.algo = cfg, genv, fns, algo
        self.seeds = [int(seed)]
        self.eval_env = eval_env if eval_env is not None else genv.env
        self.mujoco_log = mujoco_log
        self.ln: ReplayLearner | None = None
        self.step_ = self.episode = 0
        self.recent_returns: list = []
        self.recent_lengths: list = []
        self.pool: WorkerPool | None = None
        self.restarts = 0
        self.version = 0
        self.lags: list[int] = []

    @property
    def step(self) -> int:
        return self.step_

    @property
    def state(self):
        return self.ln.state

    @property
    def replay(self):
        return self.ln.replay

    def start(self) -> None:
        self.ln = ReplayLearner.create(self.cfg, self.fns, self.seeds[0])

    def restore(self, meta: dict, arrays: dict, source: str) -> None:
        try:
            hm = meta["host"]
            counters(hm, "seed")
            self.ln = ReplayLearner.restore(self.cfg, self.fns, hm, arrays,
                                            store_meta(meta, "replay"), source)
            self.seeds = [self.ln.seed]
            self.step_, self.episode = counters(hm, "step", "episode")
            self.recent_returns = list(hm["recent_returns"])
            self.recent_lengths = list(hm["recent_lengths"])
        except MALFORMED as exc:
            raise CheckpointError(f"{source}: host state is incomplete or malformed "
                                  f"({exc!r})") from None

    def _start_pool(self) -> WorkerPool:
        cfg, gym_spec = self.cfg, driver_spec(self.genv.env_id)
        cfg_dict, env_spec = cfg.to_dict(), self.fns.spec.to_json()
        source = self.genv.source

        def args(i: int, incarnation: int) -> tuple:
            return (cfg.algo, cfg_dict, env_spec, source.name, source.kwargs, gym_spec,
                    worker_seed(self.seeds[0] + 1_000_003 * self.step_, i, incarnation), 1,
                    self.mujoco_log)

        log.info("starting %d rollout workers for %s", cfg.workers, cfg.algo)
        return WorkerPool(TransitionWorker, cfg.workers, args, "collect", cfg.worker_cpus,
                          cfg.ray_address, max_restarts=max(10, 5 * cfg.workers))

    def _request(self, i: int) -> None:
        cfg = self.cfg
        self.pool.submit(i, self.params_ref, self.ln.obs_stats(), self.version,
                         cfg.worker_steps, self.step_ < cfg.learning_starts)

    def advance(self, until: int, control: Control) -> None:
        ln = self.ln
        if self.pool is None:
            self.pool = self._start_pool()
            self.params_ref = self.pool.ray.put(jax.device_get(self.fns.policy_params(ln.state)))
            for i in range(self.cfg.workers):
                self._request(i)
        pool = self.pool
        while self.step_ < until and not control.stop:
            i, result = pool.next_result()
            if result is None:  # a worker died: its replacement starts with the newest params
                self._request(i)
                continue
            a = result["arrays"]
            n = min(result["steps"], control.total - self.step_)  # never past the asked total
            cut = lambda x: jax.tree_util.tree_map(lambda v: v[:n], x)  # noqa: E731
            ln.replay.add_batch(cut(a["obs"]), a["action"][:n], a["reward"][:n],
                                cut(a["next_obs"]), a["terminated"][:n], a["truncated"][:n],
                                a["first"][:n])
            if ln.rms is not None:
                ln.rms.update(cut(a["next_obs"]))
            record_episodes(self, result["returns"], result["lengths"])
            self.lags.append(self.version - result["version"])
            start = self.step_
            self.step_ += n
            calls = ln.train_calls(start, self.step_)
            ln.learn(calls)
            if calls:
                self.version += 1
                self.params_ref = pool.ray.put(jax.device_get(self.fns.policy_params(ln.state)))
            self._request(i)
            control.tick(self.step_)

    def metrics(self) -> list[dict]:
        m = to_floats(self.ln.last_metrics)
        m.update(episode_metrics(self.recent_returns, self.recent_lengths, self.episode))
        m["rollout/policy_lag"] = float(np.mean(self.lags)) if self.lags else 0.0
        m["rollout/worker_restarts"] = float(self.pool.restarts if self.pool else 0)
        self.lags = []
        return [m]

    def evaluate(self, episodes: int) -> list[dict]:
        return [evaluate_policy(self.policy().act, self.eval_env, episodes, self.seeds[0])]

    def snapshot(self) -> Snapshot:
        ln = self.ln
        meta = {"host": {**ln.meta(), "step": self.step_, "episode": self.episode,
                         "recent_returns": self.recent_returns,
                         "recent_lengths": self.recent_lengths}}
        return Snapshot(ln.arrays(), meta, {"replay": Segmented(ln.replay.count,
                                                                ln.replay.capacity,
                                                                ln.replay.rows)})

    def policy(self, index: int = 0) -> Policy:
        return Policy(self.algo, self.fns.policy_params(self.ln.state), self.ln.obs_stats(),
                      self.fns.spec, self.fns.act)

    def summary(self, wall_s: float) -> dict:
        restarts = self.pool.restarts if self.pool is not None else self.restarts
        return {"rollout/worker_restarts": restarts, "workers": self.cfg.workers,
                "jax_backend": jax.default_backend()}

    def close(self) -> None:
        if self.pool is not None:
            self.restarts = self.pool.restarts
            self.pool.shutdown()
            self.pool = None
