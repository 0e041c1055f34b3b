"""Off-policy training (SAC, TD3, DDPG, DroQ) with Ray rollout workers: ``--workers W``.

W workers each step their own env with a recent copy of the actor (uniform random actions
until ``learning_starts``, then the algorithm's exploration) and return ``worker_steps``
transitions per request; the learner adds them to its replay buffer and takes the same
number of gradient steps per env step as the single-process loop (``gradient_steps`` every
``train_freq`` steps), then sends the worker its next request with the newest parameters. A
slow simulator then bounds each worker, not the learner: collection scales with W until the
learner's updates become the limit.

Checkpoints are the single-process loop's (algorithm state, replay buffer, RNG, observation
statistics); a resume starts fresh workers and fresh episodes, so it is not bit-exact.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

import jax
import numpy as np

from tandem.core.logging import checkpoint_due, log_due, log_metrics, record_episodes
from tandem.distributed.cluster import driver_spec
from tandem.distributed.workers import TransitionWorker, WorkerPool, worker_seed
from tandem.envs.gym import EnvInfo
from tandem.host import offpolicy as host

log = logging.getLogger("tandem")

# checkpoints are the single-process loop's
learner_arrays, learner_meta = host.learner_arrays, host.learner_meta


@dataclasses.dataclass
class WorkerLearner(host.Learner):
    env_id: str | None = None
    env_kwargs: dict | None = None
    pool: WorkerPool | None = None
    restarts: int = 0


def _wrap(ln: host.Learner, source, env_kwargs: dict | None) -> WorkerLearner:
    env_id = source if isinstance(source, str) else ln.info.env_id
    driver_spec(env_id)  # workers make their own envs: an unregistered instance cannot do
    fields = {f.name: getattr(ln, f.name) for f in dataclasses.fields(host.Learner)}
    return WorkerLearner(**fields, env_id=env_id, env_kwargs=env_kwargs)


def new_learner(cfg, info: EnvInfo, fns, seed: int, source, env_kwargs: dict | None
                ) -> WorkerLearner:
    return _wrap(host.new_learner(cfg, info, fns, seed), source, env_kwargs)


def restore_learner(cfg, info: EnvInfo, fns, meta: dict, arrays: dict, source_name: str,
                    source, env_kwargs: dict | None) -> WorkerLearner:
    return _wrap(host.restore_learner(cfg, info, fns, meta, arrays, source_name), source,
                 env_kwargs)


def _start_pool(ln: WorkerLearner) -> WorkerPool:
    cfg, gym_spec = ln.cfg, driver_spec(ln.env_id)
    cfg_dict, env_spec = cfg.to_dict(), ln.info.spec_json()

    def args(i: int, incarnation: int) -> tuple:
        return (cfg.algo, cfg_dict, env_spec, ln.env_id, ln.env_kwargs, gym_spec,
                worker_seed(ln.seed + 1_000_003 * ln.host.step, i, incarnation), 1)

    log.info("starting %d rollout workers for %s", cfg.workers, cfg.algo)
    return WorkerPool(TransitionWorker, cfg.workers, args, "collect", cfg.worker_cpus,
                      cfg.ray_address, max_restarts=max(10, 5 * cfg.workers))


def _calls(start: int, end: int, cfg) -> int:
    """Training calls the single-process loop makes while its step goes start+1..end: one at
    every multiple of train_freq past learning_starts."""
    lo = max(start, cfg.learning_starts)
    return max(0, end // cfg.train_freq - lo // cfg.train_freq)


def run_steps(ln: WorkerLearner, until: int, on_log: Callable[[int, dict], None],
              on_checkpoint: Callable[[int], None], on_progress: Callable[[int, float], None]
              ) -> None:
    cfg, h, fns, replay = ln.cfg, ln.host, ln.fns, ln.replay
    G, B = cfg.gradient_steps, cfg.batch_size
    if ln.pool is None:
        ln.pool = _start_pool(ln)
    pool, ray = ln.pool, ln.pool.ray
    version = 0
    lags: list[int] = []
    t_last, step_last = time.perf_counter(), h.step

    def request(i: int) -> None:
        pool.submit(i, params_ref, ln.obs_stats(), version, cfg.worker_steps,
                    h.step < cfg.learning_starts)

    params_ref = ray.put(jax.device_get(fns.policy_params(ln.state)))
    for i in range(cfg.workers):
        request(i)
    while h.step < until:
        i, result = pool.next_result()
        if result is None:  # a worker died: its replacement starts with the newest params
            request(i)
            continue
        a = result["arrays"]
        n = min(result["steps"], until - h.step)  # never past the asked total
        replay.add_batch(*(a[k][:n] for k in ("obs", "action", "reward", "next_obs",
                                               "terminated")))
        if ln.rms is not None:
            ln.rms.update(a["next_obs"][:n])
        record_episodes(h, result["returns"], result["lengths"])
        lags.append(version - result["version"])
        start = h.step
        h.step += n
        calls = _calls(start, h.step, cfg)
        stats = ln.obs_stats()
        for _ in range(calls):
            ln.state, ln.last_metrics = fns.update_many(ln.state, replay.sample(h.rng, G, B),
                                                        stats)
        if calls:
            version += 1
            params_ref = ray.put(jax.device_get(fns.policy_params(ln.state)))
        request(i)
        now = time.perf_counter()
        on_progress(h.step, (h.step - step_last) / max(now - t_last, 1e-9))
        if log_due(cfg, start, h.step, until):
            metrics = log_metrics(ln.last_metrics, h.recent_returns, h.recent_lengths,
                                  h.episode, (h.step - step_last) / max(now - t_last, 1e-9))
            metrics["rollout/policy_lag"] = float(np.mean(lags)) if lags else 0.0
            metrics["rollout/worker_restarts"] = float(pool.restarts)
            lags = []
            t_last, step_last = now, h.step
            on_log(h.step, metrics)
        if checkpoint_due(cfg, start, h.step, until):
            on_checkpoint(h.step)
        if ln.stop_requested:
            break
    pool.pending.clear()


def summary_fields(ln: WorkerLearner) -> dict:
    return {"rollout/worker_restarts": ln.restarts, "workers": ln.cfg.workers}


def close(ln: WorkerLearner) -> None:
    if ln.pool is not None:
        ln.restarts = ln.pool.restarts
        ln.pool.shutdown()
        ln.pool = None
