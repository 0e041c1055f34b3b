"""On-policy training loop (PPO, A2C) for Gymnasium vector envs.

Per rollout: n_steps vector steps, each one jitted ``sample`` call for all n_envs envs and one
``envs.step``; the observations the policy saw, actions, (scaled) rewards and episode flags go
into preallocated NumPy arrays; then one jitted ``update`` call does GAE and every epoch and
minibatch. Sub-envs are reset in the same step they finish (Gymnasium's SAME_STEP autoreset),
and their final observation is kept, so a truncated episode bootstraps from its value.

Exact resume. Checkpoints are taken between rollouts and hold the algorithm state, the
observation and return statistics, the per-env running returns, and for every sub-env its
episode index and the actions taken in that episode (the driver logs the env actions of every
step back to the start of the oldest running episode); a resume resets each sub-env with that
episode's seed and replays the actions (``SeededEpisodes``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import gymnasium as gym
import jax
import numpy as np

from tandem.core.checkpoint import MALFORMED, flatten_pytree, restore_pytree
from tandem.core.logging import checkpoint_due, log_due, log_metrics, record_episodes
from tandem.core.normalize import RunningMeanStd, normalize_obs, scale_reward
from tandem.core.types import Rollout
from tandem.envs.gym import (EnvInfo, check_finite_batch, make_vector_env, to_env_action,
                             vector_step)
from tandem.errors import CheckpointError

log = logging.getLogger("tandem")


@dataclasses.dataclass
class HostState:
    """Driver state outside the jitted pytree."""

    step: int
    episode: int                  # finished episodes, all envs
    obs: np.ndarray               # [N, obs_dim] current raw (flat) observations
    ep_return: np.ndarray         # [N] float64 undiscounted return of the running episodes
    ep_length: np.ndarray         # [N] int64
    disc_return: np.ndarray       # [N] float64 discounted return, for reward scaling
    recent_returns: list = dataclasses.field(default_factory=list)
    recent_lengths: list = dataclasses.field(default_factory=list)
    # env actions [N, ...] and done flags [N] of every vector step since the oldest running
    # episode began: what a resume replays
    action_log: list = dataclasses.field(default_factory=list)
    done_log: list = dataclasses.field(default_factory=list)

    def episode_actions(self, i: int) -> np.ndarray:
        """Env actions taken so far in sub-env i's running episode: [k, ...]."""
        ends = [t for t, d in enumerate(self.done_log) if d[i]]
        first = ends[-1] + 1 if ends else 0
        return np.asarray([a[i] for a in self.action_log[first:]])

    def trim_log(self) -> None:
        """Drop log entries older than the start of every running episode."""
        if not self.done_log:
            return
        dones = np.asarray(self.done_log)  # [L, N]
        last = np.where(dones.any(axis=0), dones.shape[0] - 1 - np.argmax(dones[::-1], axis=0),
                        -1)
        first = int(last.min()) + 1
        del self.action_log[:first], self.done_log[:first]

    @staticmethod
    def log_from(actions: list[np.ndarray], n: int) -> tuple[list, list]:
        """A log that reproduces per-env episode actions of different lengths (a resume)."""
        k = max(len(a) for a in actions)
        width = next((a.shape[1:] for a in actions if len(a)), ())
        dtype = next((a.dtype for a in actions if len(a)), np.float64)
        acts = np.zeros((k, n) + tuple(width), dtype)
        dones = np.zeros((k, n), bool)
        for i, a in enumerate(actions):
            if len(a):
                acts[k - len(a):, i] = a
            if len(a) < k:  # a marker end just before env i's episode began
                dones[k - len(a) - 1, i] = True
        return list(acts), list(dones)


@dataclasses.dataclass
class Learner:
    cfg: Any
    info: EnvInfo
    envs: gym.vector.VectorEnv
    fns: Any
    seed: int
    state: Any
    host: HostState
    rms: RunningMeanStd | None       # observations
    ret_rms: RunningMeanStd | None   # discounted returns (reward scaling)
    explore_key: jax.Array
    last_metrics: dict = dataclasses.field(default_factory=dict)
    stop_requested: bool = False
    env_s: float = 0.0    # seconds inside envs.step, for the time/ split
    learn_s: float = 0.0  # seconds inside update

    def obs_stats(self):
        return None if self.rms is None else self.rms.stats()


def _keys(seed: int) -> tuple[jax.Array, jax.Array]:
    k_init, k_explore = jax.random.split(jax.random.PRNGKey(seed))
    return k_init, k_explore


def new_learner(cfg, info: EnvInfo, fns, seed: int, source: str | gym.Env,
                env_kwargs: dict | None) -> Learner:
    envs = make_vector_env(info, source, cfg.n_envs, seed, cfg.vec_env, env_kwargs)
    k_init, k_explore = _keys(seed)
    obs, _ = envs.reset()
    obs = np.asarray(obs, np.float32).reshape(cfg.n_envs, -1)
    check_finite_batch(obs, np.zeros(1), 0)
    n = cfg.n_envs
    rms = RunningMeanStd.create(info.obs_dim) if cfg.normalize_obs else None
    if rms is not None:
        rms.update(obs)
    ret_rms = RunningMeanStd.create(1) if cfg.normalize_reward else None
    host = HostState(0, 0, obs, np.zeros(n), np.zeros(n, np.int64), np.zeros(n))
    return Learner(cfg, info, envs, fns, seed, fns.init(k_init), host, rms, ret_rms, k_explore)


# ------------------------------------------------------------------------------ checkpoint
def learner_arrays(ln: Learner) -> dict[str, np.ndarray]:
    arrays = flatten_pytree(ln.state, "state")
    if ln.rms is not None:
        arrays.update(ln.rms.state_arrays("obs_rms"))
    if ln.ret_rms is not None:
        arrays.update(ln.ret_rms.state_arrays("ret_rms"))
    h = ln.host
    arrays.update({"host/obs": h.obs, "host/ep_return": h.ep_return,
                   "host/ep_length": h.ep_length, "host/disc_return": h.disc_return})
    for i, episode in enumerate(ln.envs.get_attr("tandem_episode")):
        arrays[f"host/env_{i}/actions"] = h.episode_actions(i)  # [k, ...] env actions
        arrays[f"host/env_{i}/episode"] = np.asarray(episode, np.int64)
    return arrays


def learner_meta(ln: Learner) -> dict:
    h = ln.host
    return {"host": {"step": h.step, "episode": h.episode, "seed": ln.seed,
                     "recent_returns": h.recent_returns, "recent_lengths": h.recent_lengths,
                     "n_envs": ln.cfg.n_envs, "normalize_obs": ln.rms is not None,
                     "normalize_reward": ln.ret_rms is not None}}


def restore_learner(cfg, info: EnvInfo, fns, meta: dict, arrays: dict, source_name: str,
                    source: str | gym.Env, env_kwargs: dict | None) -> Learner:
    try:
        hm = meta["host"]
        seed = int(hm["seed"])
        if int(hm["n_envs"]) != cfg.n_envs:
            raise ValueError(f"n_envs {hm['n_envs']} != {cfg.n_envs}")
        k_init, k_explore = _keys(seed)
        state = restore_pytree(jax.eval_shape(fns.init, k_init), arrays, "state", source_name)
        rms = RunningMeanStd.from_state(arrays, "obs_rms") if hm["normalize_obs"] else None
        ret_rms = (RunningMeanStd.from_state(arrays, "ret_rms") if hm["normalize_reward"]
                   else None)
        saved_obs = np.asarray(arrays["host/obs"], np.float32)
        positions = [(int(arrays[f"host/env_{i}/episode"]),
                      np.asarray(arrays[f"host/env_{i}/actions"])) for i in range(cfg.n_envs)]
        host = HostState(int(hm["step"]), int(hm["episode"]), saved_obs,
                         np.array(arrays["host/ep_return"], np.float64),
                         np.array(arrays["host/ep_length"], np.int64),
                         np.array(arrays["host/disc_return"], np.float64),
                         list(hm["recent_returns"]), list(hm["recent_lengths"]),
                         *HostState.log_from([a for _, a in positions], cfg.n_envs))
    except MALFORMED as exc:
        raise CheckpointError(f"{source_name}: host state is incomplete or malformed "
                              f"({exc!r})") from None

    envs = make_vector_env(info, source, cfg.n_envs, seed, cfg.vec_env, env_kwargs)
    obs, _ = envs.reset(options={"tandem_restore": positions})
    obs = np.asarray(obs, np.float32).reshape(cfg.n_envs, -1)
    if not np.array_equal(obs, saved_obs):
        log.warning("resume: replaying the running episodes did not reproduce the saved "
                    "observations (the env is not deterministic given its seed); starting "
                    "fresh episodes, so this run will not match an uninterrupted one exactly")
        obs, _ = envs.reset()
        host.obs = np.asarray(obs, np.float32).reshape(cfg.n_envs, -1)
        host.ep_return[:], host.ep_length[:], host.disc_return[:] = 0.0, 0, 0.0
        host.action_log, host.done_log = [], []
    return Learner(cfg, info, envs, fns, seed, state, host, rms, ret_rms, k_explore)


# ------------------------------------------------------------------------------ the loop
def run_steps(ln: Learner, until: int, on_log: Callable[[int, dict], None],
              on_checkpoint: Callable[[int], None], on_progress: Callable[[int, float], None]
              ) -> None:
    """Collect rollouts and learn from them until env step ``until`` (whole rollouts: the
    last one may go past ``until`` by less than n_envs x n_steps steps, as in SB3)."""
    cfg, info, fns, h, envs = ln.cfg, ln.info, ln.fns, ln.host, ln.envs
    T, N, d = cfg.n_steps, cfg.n_envs, info.obs_dim
    kind = info.action_space["kind"]
    act_shape = (info.action_dim,) if kind != "discrete" else ()
    act_dtype = np.float32 if kind == "box" else np.int32
    # preallocated rollout storage, reused every rollout
    obs_buf = np.zeros((T, N, d), np.float32)
    act_buf = np.zeros((T, N) + act_shape, act_dtype)
    rew_buf = np.zeros((T, N), np.float32)
    term_buf = np.zeros((T, N), np.float32)
    done_buf = np.zeros((T, N), np.float32)
    final_buf = np.zeros((T, N, d), np.float32)
    sample, update = fns.sample, fns.update
    t_last, step_last = time.perf_counter(), h.step

    while h.step < until:
        start, t_start = h.step, time.perf_counter()
        params = fns.policy_params(ln.state)
        stats = ln.obs_stats()
        for t in range(T):
            obs_in = normalize_obs(h.obs, stats)
            obs_buf[t] = obs_in
            a = np.asarray(sample(params, obs_in, ln.explore_key, h.step))
            act_buf[t] = a
            t0 = time.perf_counter()
            env_a = to_env_action(a, info.action_low, info.action_high, info.action_space)
            next_obs, reward, terminated, done, final = vector_step(envs, env_a, N, d, h.step)
            ln.env_s += time.perf_counter() - t0
            h.action_log.append(env_a)
            h.done_log.append(done)
            if ln.rms is not None:
                ln.rms.update(next_obs)
                stats = ln.rms.stats()
            final_buf[t] = normalize_obs(final, stats)
            if ln.ret_rms is not None:
                h.disc_return = h.disc_return * cfg.gamma + reward
                ln.ret_rms.update(h.disc_return[:, None])
                rew_buf[t] = scale_reward(reward, ln.ret_rms.var[0])
            else:
                rew_buf[t] = reward
            term_buf[t] = terminated
            done_buf[t] = done
            h.ep_return += reward
            h.ep_length += 1
            h.step += N
            if done.any():
                record_episodes(h, h.ep_return[done].tolist(), h.ep_length[done].tolist())
                h.ep_return[done], h.ep_length[done], h.disc_return[done] = 0.0, 0, 0.0
            h.obs = next_obs

        h.trim_log()
        ro = Rollout(obs_buf, act_buf, rew_buf, term_buf, done_buf, final_buf,
                     normalize_obs(h.obs, stats))
        frac = 1.0 - start / max(until, 1)
        t0 = time.perf_counter()
        ln.state, ln.last_metrics = update(ln.state, ro, np.float32(frac))
        jax.block_until_ready(ln.state)
        ln.learn_s += time.perf_counter() - t0

        now = time.perf_counter()
        on_progress(h.step, (h.step - start) / max(now - t_start, 1e-9))
        if log_due(cfg, start, h.step, until):
            metrics = log_metrics(ln.last_metrics, h.recent_returns, h.recent_lengths,
                                  h.episode, (h.step - step_last) / max(now - t_last, 1e-9))
            metrics["time/env_s"], metrics["time/learn_s"] = ln.env_s, ln.learn_s
            t_last, step_last = now, h.step
            on_log(h.step, metrics)
        if checkpoint_due(cfg, start, h.step, until):
            on_checkpoint(h.step)
        if ln.stop_requested:
            return


def close(ln: Learner) -> None:
    ln.envs.close()
