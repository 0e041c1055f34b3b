"""IMPALA's distributed loop: Ray rollout workers stream trajectories to one learner.

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

import dataclasses
import logging
import time
from typing import Any, Callable

import jax
import numpy as np

from tandem.algos.impala import Trajectory
from tandem.core.checkpoint import MALFORMED, flatten_pytree, restore_pytree
from tandem.core.logging import checkpoint_due, log_due, log_metrics, record_episodes
from tandem.core.types import Rollout
from tandem.distributed.cluster import driver_spec
from tandem.distributed.workers import TrajectoryWorker, WorkerPool, worker_seed
from tandem.envs.gym import EnvInfo
from tandem.errors import CheckpointError

log = logging.getLogger("tandem")

_FIELDS = ("obs", "action", "reward", "terminated", "done", "final_obs")


@dataclasses.dataclass
class HostState:
    step: int                 # env steps learned from
    episode: int
    recent_returns: list = dataclasses.field(default_factory=list)
    recent_lengths: list = dataclasses.field(default_factory=list)
    lost_trajectories: int = 0
    restarts: int = 0         # worker processes replaced (this session)


@dataclasses.dataclass
class Learner:
    cfg: Any
    info: EnvInfo
    fns: Any
    seed: int
    state: Any
    host: HostState
    env_id: str
    env_kwargs: dict | None
    pool: WorkerPool | None = None
    rms: None = None          # IMPALA does not normalise observations
    last_metrics: dict = dataclasses.field(default_factory=dict)
    stop_requested: bool = False
    lags: list = dataclasses.field(default_factory=list)   # since the last log line
    worker_s: list = dataclasses.field(default_factory=list)
    learn_s: float = 0.0


def _keys(seed: int) -> jax.Array:
    return jax.random.PRNGKey(seed)


def new_learner(cfg, info: EnvInfo, fns, seed: int, source, env_kwargs: dict | None
                ) -> Learner:
    env_id = source if isinstance(source, str) else info.env_id
    driver_spec(env_id)  # an unregistered instance cannot be made by a worker: say so now
    return Learner(cfg, info, fns, seed, fns.init(_keys(seed)), HostState(0, 0), env_id,
                   env_kwargs)


def learner_arrays(ln: Learner) -> dict[str, np.ndarray]:
    return flatten_pytree(ln.state, "state")


def learner_meta(ln: Learner) -> dict:
    h = ln.host
    return {"host": {"step": h.step, "episode": h.episode, "seed": ln.seed,
                     "recent_returns": h.recent_returns, "recent_lengths": h.recent_lengths,
                     "lost_trajectories": h.lost_trajectories,
                     "restarts": ln.pool.restarts if ln.pool is not None else 0}}


def restore_learner(cfg, info: EnvInfo, fns, meta: dict, arrays: dict, source_name: str,
                    source, env_kwargs: dict | None) -> Learner:
    try:
        hm = meta["host"]
        seed = int(hm["seed"])
        state = restore_pytree(jax.eval_shape(fns.init, _keys(seed)), arrays, "state",
                               source_name)
        host = HostState(int(hm["step"]), int(hm["episode"]), list(hm["recent_returns"]),
                         list(hm["recent_lengths"]), int(hm.get("lost_trajectories", 0)))
    except MALFORMED as exc:
        raise CheckpointError(f"{source_name}: host state is incomplete or malformed "
                              f"({exc!r})") from None
    env_id = source if isinstance(source, str) else info.env_id
    driver_spec(env_id)
    return Learner(cfg, info, fns, seed, state, host, env_id, env_kwargs)


def _start_pool(ln: Learner) -> WorkerPool:
    cfg = ln.cfg
    gym_spec = driver_spec(ln.env_id)
    cfg_dict = cfg.to_dict()
    env_spec = ln.info.spec_json()

    def args(i: int, incarnation: int) -> tuple:
        # a resumed run's workers get other seeds than the first session's (step in the seed)
        return ("impala", cfg_dict, env_spec, ln.env_id, ln.env_kwargs, gym_spec,
                worker_seed(ln.seed + 1_000_003 * ln.host.step, i, incarnation),
                cfg.envs_per_worker)

    log.info("starting %d IMPALA rollout workers (%d envs each)", cfg.workers,
             cfg.envs_per_worker)
    return WorkerPool(TrajectoryWorker, cfg.workers, args, "rollout", cfg.worker_cpus,
                      cfg.ray_address, max_restarts=max(10, 5 * cfg.workers))


def _batch(results: list[dict]) -> Trajectory:
    """K worker trajectories [T, E] -> one learner batch [T, K * E]."""
    cat = {k: np.concatenate([r["arrays"][k] for r in results], axis=1)
           for k in _FIELDS + ("behaviour_logp",)}
    last = np.concatenate([r["arrays"]["last_obs"] for r in results], axis=0)
    return Trajectory(Rollout(*(cat[k] for k in _FIELDS), last), cat["behaviour_logp"])


def run_steps(ln: Learner, until: int, on_log: Callable[[int, dict], None],
              on_checkpoint: Callable[[int], None], on_progress: Callable[[int, float], None]
              ) -> None:
    """Learn until ``until`` env steps have been learned from (whole batches)."""
    cfg, h, fns = ln.cfg, ln.host, ln.fns
    if ln.pool is None:
        ln.pool = _start_pool(ln)
    pool, ray = ln.pool, ln.pool.ray
    version = int(ln.state.updates)
    params_ref = ray.put(jax.device_get(fns.policy_params(ln.state)))
    for i in range(cfg.workers):
        pool.submit(i, params_ref, version, cfg.n_steps)
    batch: list[dict] = []
    t_last, step_last = time.perf_counter(), h.step

    while h.step < until:
        i, result = pool.next_result()
        if result is None:  # the worker died; its replacement gets the newest parameters
            h.lost_trajectories += 1
            pool.submit(i, params_ref, version, cfg.n_steps)
            continue
        record_episodes(h, result["returns"], result["lengths"])
        batch.append(result)
        if len(batch) == cfg.rollouts_per_update:
            start, t0 = h.step, time.perf_counter()
            ln.lags.extend(version - r["version"] for r in batch)
            ln.worker_s.extend(r["seconds"] for r in batch)
            frac = np.float32(1.0 - start / max(until, 1))
            ln.state, ln.last_metrics = fns.update(ln.state, _batch(batch), frac)
            version += 1
            params_ref = ray.put(jax.device_get(fns.policy_params(ln.state)))
            ln.learn_s += time.perf_counter() - t0
            h.step += sum(r["steps"] for r in batch)
            batch = []
            now = time.perf_counter()
            on_progress(h.step, (h.step - step_last) / max(now - t_last, 1e-9))
            if log_due(cfg, start, h.step, until):
                metrics = log_metrics(ln.last_metrics, h.recent_returns, h.recent_lengths,
                                      h.episode, (h.step - step_last) / max(now - t_last, 1e-9))
                metrics.update(_lag_metrics(ln, pool))
                t_last, step_last = now, h.step
                on_log(h.step, metrics)
            if checkpoint_due(cfg, start, h.step, until):
                on_checkpoint(h.step)
            if ln.stop_requested:
                break
        pool.submit(i, params_ref, version, cfg.n_steps)
    pool.pending.clear()  # requests in flight are not learned from


def _lag_metrics(ln: Learner, pool: WorkerPool) -> dict:
    m = {"rollout/policy_lag": float(np.mean(ln.lags)) if ln.lags else 0.0,
         "rollout/policy_lag_max": float(np.max(ln.lags)) if ln.lags else 0.0,
         "rollout/worker_restarts": float(pool.restarts),
         "rollout/lost_trajectories": float(ln.host.lost_trajectories),
         "time/learn_s": ln.learn_s}
    if ln.worker_s:
        m["time/worker_rollout_s"] = float(np.mean(ln.worker_s))
    ln.lags, ln.worker_s = [], []
    return m


def summary_fields(ln: Learner) -> dict:
    return {"rollout/worker_restarts": ln.host.restarts,
            "rollout/lost_trajectories": ln.host.lost_trajectories}


def close(ln: Learner) -> None:
    if ln.pool is not None:
        ln.host.restarts = ln.pool.restarts
        ln.pool.shutdown()
        ln.pool = None
