"""Rollout workers as Ray actors, and the pool that keeps one request in flight per worker.

A worker is a process with its own envs and a copy of the policy's jitted sampling function.
The learner sends it the newest parameters (a Ray object reference, put once per update and
shared by every worker) with each request, so a worker acts with parameters at most as old as
the update before its request; the lag is measured, not assumed.

Fault tolerance: when a worker process dies (killed, out of memory, its node gone), the
pool's next result for it is ``None``, the death is logged with what was lost (only that
worker's trajectory in flight), and a fresh worker with a new seed stream takes its place.
An exception raised *inside* a worker (the env returned NaN, the env cannot be made) is not a
death: it stops training with the worker's message.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any, Callable

import numpy as np

from tandem.core.spaces import EnvSpec, build, canonical, get_leaf, leaves, to_env_action
from tandem.distributed.cluster import init_ray, register_spec, setup_worker_process
from tandem.errors import EnvError, TandemError

log = logging.getLogger("tandem")


def worker_seed(seed: int, index: int, incarnation: int) -> int:
    """Independent env/action streams per (run seed, worker, restart)."""
    return int(np.random.SeedSequence([seed, 7_919, index, incarnation]).generate_state(1)[0])


class _Worker:
    """What both worker kinds share: env and policy functions built in the worker."""

    def __init__(self, algo: str, cfg: dict, env_spec: dict, env_id: str,
                 env_kwargs: dict | None, gym_spec: Any, seed: int, n_envs: int,
                 mujoco_log: str | None = None) -> None:
        # JAX (which the env adapter and the algorithms import) must start after the worker's
        # XLA settings, so these imports wait until the settings are made
        setup_worker_process()
        import jax

        from tandem.algos import get_algo
        from tandem.envs.gym import make_env, redirect_mujoco_log

        register_spec(gym_spec)
        algo_spec = get_algo(algo)
        self.cfg = algo_spec.config_cls.from_dict(cfg)
        spec = EnvSpec.from_json(env_spec)
        self.fns = algo_spec.build(self.cfg, spec)
        self.genv = make_env(env_id, algo, algo_spec.action_spaces, env_kwargs)
        redirect_mujoco_log(mujoco_log)
        if self.genv.spec.obs != spec.obs or self.genv.spec.action != spec.action:
            raise EnvError(f"the worker's env '{env_id}' has other spaces than the learner's")
        self.spec = spec
        self.seed, self.n, self.t = seed, n_envs, 0
        self.key = jax.random.PRNGKey(seed)

    def pid(self) -> int:
        return os.getpid()


class TrajectoryWorker(_Worker):
    """On-policy trajectories for IMPALA: ``n_envs`` envs stepped together, T steps per
    request, with the behaviour policy's log-probabilities."""

    def __init__(self, algo, cfg, env_spec, env_id, env_kwargs, gym_spec, seed, n_envs,
                 mujoco_log=None):
        super().__init__(algo, cfg, env_spec, env_id, env_kwargs, gym_spec, seed, n_envs,
                         mujoco_log)
        from tandem.envs.gym import make_vector_env
        self.envs = make_vector_env(self.genv, n_envs, seed, "sync", mujoco_log)
        obs, _ = self.envs.reset()
        self.obs = canonical(self.spec.obs, obs, (n_envs,))
        self.ep_return = np.zeros(n_envs)
        self.ep_length = np.zeros(n_envs, np.int64)

    def rollout(self, params: Any, version: int, n_steps: int) -> dict:
        from tandem.envs.gym import vector_step
        space, action = self.spec.obs, self.spec.action
        N, T = self.n, n_steps
        act_shape = (action.dim,) if action.kind != "discrete" else ()
        obs_buf = build(space, lambda _, leaf: np.zeros((T, N) + leaf.shape, leaf.dtype))
        final_buf = build(space, lambda _, leaf: np.zeros((T, N) + leaf.shape, leaf.dtype))
        out = {"action": np.zeros((T, N) + act_shape,
                                  np.float32 if action.kind == "box" else np.int32),
               "reward": np.zeros((T, N), np.float32),
               "terminated": np.zeros((T, N), np.float32),
               "done": np.zeros((T, N), np.float32),
               "behaviour_logp": np.zeros((T, N), np.float32)}
        returns, lengths = [], []
        t0 = time.perf_counter()
        for t in range(T):
            for path, _ in leaves(space):
                get_leaf(obs_buf, path)[t] = get_leaf(self.obs, path)
            a, _, logp = self.fns.explore(params, None, self.obs, self.key, self.t, None)
            a = np.asarray(a)
            out["action"][t], out["behaviour_logp"][t] = a, np.asarray(logp)
            env_a = to_env_action(action, a)
            self.obs, reward, terminated, done, final = vector_step(self.envs, env_a, N, space,
                                                                    self.t)
            self.t += 1
            out["reward"][t], out["terminated"][t], out["done"][t] = reward, terminated, done
            for path, _ in leaves(space):
                get_leaf(final_buf, path)[t] = get_leaf(final, path)
            self.ep_return += reward
            self.ep_length += 1
            for i in np.flatnonzero(done):
                returns.append(float(self.ep_return[i]))
                lengths.append(int(self.ep_length[i]))
            self.ep_return[done], self.ep_length[done] = 0.0, 0
        out["obs"], out["final_obs"] = obs_buf, final_buf
        out["last_obs"] = build(space, lambda path, _: np.array(get_leaf(self.obs, path)))
        return {"arrays": out, "version": version, "returns": returns, "lengths": lengths,
                "steps": T * N, "seconds": time.perf_counter() - t0}


class TransitionWorker(_Worker):
    """Transitions for a replay buffer (SAC, TD3, DDPG, DroQ): one env, ``n_steps`` steps per
    request with the algorithm's exploration (uniform random actions before learning
    starts), raw observations as the host driver stores them."""

    def __init__(self, algo, cfg, env_spec, env_id, env_kwargs, gym_spec, seed, n_envs,
                 mujoco_log=None):
        super().__init__(algo, cfg, env_spec, env_id, env_kwargs, gym_spec, seed, 1,
                         mujoco_log)
        self.rng = np.random.default_rng(seed)
        self.episode = 0
        self.noise = np.zeros(self.spec.action.dim, np.float32)
        self._reset()

    def _reset(self) -> None:
        from tandem.envs.gym import check_finite, episode_seed
        obs, _ = self.genv.env.reset(seed=episode_seed(self.seed, self.episode))
        self.obs = canonical(self.spec.obs, obs)
        check_finite(self.obs, 0.0, -1, self.episode)
        self.ep_return, self.ep_length = 0.0, 0
        self.first = True
        self.noise = np.zeros(self.spec.action.dim, np.float32)

    def collect(self, params: Any, obs_stats: Any, version: int, n_steps: int,
                random_actions: bool) -> dict:
        from tandem.envs.gym import check_finite
        space, k = self.spec.obs, self.spec.action.dim
        obs_buf = build(space, lambda _, leaf: np.zeros((n_steps,) + leaf.shape, leaf.dtype))
        next_buf = build(space, lambda _, leaf: np.zeros((n_steps,) + leaf.shape, leaf.dtype))
        out = {"action": np.zeros((n_steps, k), np.float32),
               "reward": np.zeros(n_steps, np.float32),
               "terminated": np.zeros(n_steps, np.float32),
               "truncated": np.zeros(n_steps, bool), "first": np.zeros(n_steps, bool)}
        returns, lengths = [], []
        t0 = time.perf_counter()
        for t in range(n_steps):
            if random_actions:
                a = self.rng.uniform(-1.0, 1.0, k).astype(np.float32)
            else:
                a, self.noise, _ = self.fns.explore(params, obs_stats, self.obs, self.key,
                                                    self.t, self.noise)
                a = np.asarray(a)
            next_obs, reward, terminated, truncated, _ = self.genv.env.step(
                to_env_action(self.spec.action, a))
            next_obs = canonical(space, next_obs)
            check_finite(next_obs, reward, self.t, self.episode)
            for path, _ in leaves(space):
                get_leaf(obs_buf, path)[t] = get_leaf(self.obs, path)
                get_leaf(next_buf, path)[t] = get_leaf(next_obs, path)
            out["action"][t], out["reward"][t] = a, reward
            out["terminated"][t], out["truncated"][t] = float(terminated), truncated
            out["first"][t] = self.first
            self.t += 1
            self.ep_return += float(reward)
            self.ep_length += 1
            self.first = False
            if terminated or truncated:
                returns.append(self.ep_return)
                lengths.append(self.ep_length)
                self.episode += 1
                self._reset()
            else:
                self.obs = next_obs
        out["obs"], out["next_obs"] = obs_buf, next_buf
        return {"arrays": out, "version": version, "returns": returns, "lengths": lengths,
                "steps": n_steps, "seconds": time.perf_counter() - t0}


class WorkerPool:
    """``n`` workers of one kind with one request in flight each; replaces dead ones."""

    def __init__(self, worker_cls: type, n: int, args: Callable[[int, int], tuple],
                 method: str, cpus: float, address: str | None, max_restarts: int) -> None:
        self.ray = init_ray(address)
        self.remote_cls = self.ray.remote(num_cpus=cpus, max_restarts=0)(worker_cls)
        self.args, self.method, self.max_restarts = args, method, max_restarts
        self.run_id = uuid.uuid4().hex[:8]
        self.incarnation = [0] * n
        self.restarts = 0
        self.pending: dict[Any, int] = {}
        self.actors = [self._start(i) for i in range(n)]

    def _start(self, i: int):
        name = f"tandem-{self.run_id}-worker{i}-{self.incarnation[i]}"
        return self.remote_cls.options(name=name).remote(*self.args(i, self.incarnation[i]))

    def submit(self, i: int, *args: Any) -> None:
        self.pending[getattr(self.actors[i], self.method).remote(*args)] = i

    def next_result(self) -> tuple[int, dict | None]:
        """(worker index, its result) for the first request to finish; ``None`` for a worker
        that died (already replaced; resubmit to it)."""
        ray = self.ray
        ready, _ = ray.wait(list(self.pending), num_returns=1)
        i = self.pending.pop(ready[0])
        try:
            return i, ray.get(ready[0])
        except ray.exceptions.RayActorError as exc:
            if exc.actor_init_failed:
                self.shutdown()
                raise EnvError(f"rollout worker {i} could not start: {_cause(exc)}") from None
            self.restarts += 1
            if self.restarts > self.max_restarts:
                self.shutdown()
                raise TandemError(f"rollout workers died {self.restarts} times (limit "
                                  f"{self.max_restarts}); last: {_cause(exc)}") from None
            log.warning("rollout worker %d died (%s); its trajectory in flight is lost, the "
                        "rest of training is not; starting a replacement (restart %d)", i,
                        _cause(exc), self.restarts)
            self.incarnation[i] += 1
            self.actors[i] = self._start(i)
            return i, None
        except ray.exceptions.RayTaskError as exc:
            self.shutdown()
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            if isinstance(cause, TandemError):
                raise type(cause)(f"rollout worker {i}: {cause}") from None
            raise

    def shutdown(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.pending.clear()


def _cause(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
