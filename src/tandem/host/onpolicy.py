"""On-policy driver (PPO, A2C) for Gymnasium vector envs.

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
from typing import Any

import jax
import numpy as np

from tandem.core.agent import AgentFns
from tandem.core.evaluate import evaluate_policy
from tandem.core.logging import episode_metrics, record_episodes, to_floats
from tandem.core.normalize import ObsRMS, RunningMeanStd, normalize_obs, scale_reward
from tandem.core.pytree import flatten_pytree, restore_pytree
from tandem.core.spaces import build, canonical, get_leaf, leaf_name, leaves, to_env_action
from tandem.core.types import Rollout
from tandem.envs.gym import GymEnv, check_finite_batch, make_vector_env, vector_step
from tandem.errors import CheckpointError
from tandem.run.checkpoint import MALFORMED, Snapshot, counters
from tandem.run.driver import Control
from tandem.run.results import Policy

log = logging.getLogger("tandem")


@dataclasses.dataclass
class HostState:
    """Driver state outside the jitted pytree."""

    step: int
    episode: int                  # finished episodes, all envs
    obs: Any                      # [N, *obs] current raw observations (canonical)
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


class OnPolicyDriver:
    """n_envs Gymnasium envs stepped together, one jitted update per rollout."""

    unit = "env_steps"
    per_seed_folders = False
    compile_s = 0.0

    def __init__(self, cfg, genv: GymEnv, fns: AgentFns, seed: int, algo: str,
                 eval_env=None, mujoco_log: str | None = None) -> None:
        self.cfg, self.genv, self.fns, self.algo = cfg, genv, fns, algo
        self.seeds = [int(seed)]
        self.eval_env = eval_env if eval_env is not None else genv.env
        self.mujoco_log = mujoco_log
        self.envs = None
        self.state: Any = None
        self.host: HostState | None = None
        self.rms: ObsRMS | None = None              # observations
        self.ret_rms: RunningMeanStd | None = None  # discounted returns (reward scaling)
        self.explore_key: jax.Array | None = None
        self.last_metrics: dict = {}
        self.env_s = 0.0    # seconds inside envs.step, for the time/ split
        self.learn_s = 0.0  # seconds inside update

    @property
    def step(self) -> int:
        return self.host.step

    def _keys(self) -> tuple[jax.Array, jax.Array]:
        k_init, k_explore = jax.random.split(jax.random.PRNGKey(self.seeds[0]))
        return k_init, k_explore

    def start(self) -> None:
        cfg, n, space = self.cfg, self.cfg.n_envs, self.fns.spec.obs
        self.envs = make_vector_env(self.genv, n, self.seeds[0], cfg.vec_env, self.mujoco_log)
        k_init, self.explore_key = self._keys()
        obs, _ = self.envs.reset()
        obs = canonical(space, obs, (n,))
        check_finite_batch(obs, np.zeros(1), 0)
        self.rms = ObsRMS.create(space) if cfg.normalize_obs else None
        if self.rms is not None:
            self.rms.update(obs)
        self.ret_rms = RunningMeanStd.create(1) if cfg.normalize_reward else None
        self.host = HostState(0, 0, obs, np.zeros(n), np.zeros(n, np.int64), np.zeros(n))
        self.state = self.fns.init(k_init)

    def restore(self, meta: dict, arrays: dict, source: str) -> None:
        cfg, space = self.cfg, self.fns.spec.obs
        try:
            hm = meta["host"]
            self.seeds = list(counters(hm, "seed"))
            if int(hm["n_envs"]) != cfg.n_envs:
                raise ValueError(f"n_envs {hm['n_envs']} != {cfg.n_envs}")
            k_init, self.explore_key = self._keys()
            self.state = restore_pytree(jax.eval_shape(self.fns.init, k_init), arrays, "state",
                                        source)
            self.rms = ObsRMS.from_state(space, arrays) if hm["normalize_obs"] else None
            self.ret_rms = (RunningMeanStd.from_state(arrays, "ret_rms")
                            if hm["normalize_reward"] else None)
            saved_obs = canonical(space, build(space, lambda p, _: arrays[_name("host/obs", p)]),
                                  (cfg.n_envs,))
            positions = [(int(arrays[f"host/env_{i}/episode"]),
                          np.asarray(arrays[f"host/env_{i}/actions"]))
                         for i in range(cfg.n_envs)]
            host = HostState(*counters(hm, "step", "episode"), saved_obs,
                             np.array(arrays["host/ep_return"], np.float64),
                             np.array(arrays["host/ep_length"], np.int64),
                             np.array(arrays["host/disc_return"], np.float64),
                             list(hm["recent_returns"]), list(hm["recent_lengths"]),
                             *HostState.log_from([a for _, a in positions], cfg.n_envs))
        except MALFORMED as exc:
            raise CheckpointError(f"{source}: host state is incomplete or malformed "
                                  f"({exc!r})") from None
        self.envs = make_vector_env(self.genv, cfg.n_envs, self.seeds[0], cfg.vec_env,
                                    self.mujoco_log)
        obs, _ = self.envs.reset(options={"tandem_restore": positions})
        obs = canonical(space, obs, (cfg.n_envs,))
        if not all(np.array_equal(get_leaf(obs, p), get_leaf(saved_obs, p))
                   for p, _ in leaves(space)):
            log.warning("resume: replaying the running episodes did not reproduce the saved "
                        "observations (the env is not deterministic given its seed); starting "
                        "fresh episodes, so this run will not match an uninterrupted one exactly")
            obs, _ = self.envs.reset()
            host.obs = canonical(space, obs, (cfg.n_envs,))
            host.ep_return[:], host.ep_length[:], host.disc_return[:] = 0.0, 0, 0.0
            host.action_log, host.done_log = [], []
        self.host = host

    def obs_stats(self):
        return None if self.rms is None else self.rms.stats()

    def advance(self, until: int, control: Control) -> None:
        """Collect rollouts and learn from them until env step ``until`` (whole rollouts: the
        last one may go past ``until`` by less than n_envs x n_steps steps, as in SB3)."""
        cfg, fns, h, envs = self.cfg, self.fns, self.host, self.envs
        T, N, space = cfg.n_steps, cfg.n_envs, fns.spec.obs
        action_space = fns.spec.action
        act_shape = (action_space.dim,) if action_space.kind != "discrete" else ()
        act_dtype = np.float32 if action_space.kind == "box" else np.int32
        # rollout storage; normalised leaves are float32
        normed = self.rms is not None and {p for p in self.rms.leaves}

        def buffer(path, leaf):
            dtype = np.float32 if normed and path in normed else leaf.dtype
            return np.zeros((T, N) + leaf.shape, dtype)
        obs_buf, final_buf = build(space, buffer), build(space, buffer)
        act_buf = np.zeros((T, N) + act_shape, act_dtype)
        rew_buf = np.zeros((T, N), np.float32)
        term_buf = np.zeros((T, N), np.float32)
        done_buf = np.zeros((T, N), np.float32)
        explore, update = fns.explore, fns.update

        while h.step < until:
            start = h.step
            params = fns.policy_params(self.state)
            stats = self.obs_stats()
            for t in range(T):
                obs_in = normalize_obs(h.obs, stats)
                _store(obs_buf, t, obs_in, space)
                a, _, _ = explore(params, None, obs_in, self.explore_key, h.step, None)
                a = np.asarray(a)
                act_buf[t] = a
                t0 = time.perf_counter()
                env_a = to_env_action(action_space, a)
                next_obs, reward, terminated, done, final = vector_step(envs, env_a, N, space,
                                                                        h.step)
                self.env_s += time.perf_counter() - t0
                h.action_log.append(env_a)
                h.done_log.append(done)
                if self.rms is not None:
                    self.rms.update(next_obs)
                    stats = self.rms.stats()
                _store(final_buf, t, normalize_obs(final, stats), space)
                if self.ret_rms is not None:
                    h.disc_return = h.disc_return * cfg.gamma + reward
                    self.ret_rms.update(h.disc_return[:, None])
                    rew_buf[t] = scale_reward(reward, self.ret_rms.var[0])
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
            frac = 1.0 - start / max(control.total, 1)
            t0 = time.perf_counter()
            self.state, self.last_metrics = update(self.state, ro, np.float32(frac))
            jax.block_until_ready(self.state)
            self.learn_s += time.perf_counter() - t0
            control.tick(h.step)
            if control.stop:
                return

    def metrics(self) -> list[dict]:
        h = self.host
        m = to_floats(self.last_metrics)
        m.update(episode_metrics(h.recent_returns, h.recent_lengths, h.episode))
        m["time/env_s"], m["time/learn_s"] = self.env_s, self.learn_s
        return [m]

    def evaluate(self, episodes: int) -> list[dict]:
        return [evaluate_policy(self.policy().act, self.eval_env, episodes, self.seeds[0])]

    def snapshot(self) -> Snapshot:
        h, cfg = self.host, self.cfg
        arrays = flatten_pytree(self.state, "state")
        if self.rms is not None:
            arrays.update(self.rms.state_arrays("obs_rms"))
        if self.ret_rms is not None:
            arrays.update(self.ret_rms.state_arrays("ret_rms"))
        for path, _ in leaves(self.fns.spec.obs):
            arrays[_name("host/obs", path)] = np.asarray(get_leaf(h.obs, path))
        arrays.update({"host/ep_return": h.ep_return, "host/ep_length": h.ep_length,
                       "host/disc_return": h.disc_return})
        for i, episode in enumerate(self.envs.get_attr("tandem_episode")):
            arrays[f"host/env_{i}/actions"] = h.episode_actions(i)  # [k, ...] env actions
            arrays[f"host/env_{i}/episode"] = np.asarray(episode, np.int64)
        meta = {"host": {"step": h.step, "episode": h.episode, "seed": self.seeds[0],
                         "recent_returns": h.recent_returns, "recent_lengths": h.recent_lengths,
                         "n_envs": cfg.n_envs, "normalize_obs": self.rms is not None,
                         "normalize_reward": self.ret_rms is not None}}
        return Snapshot(arrays, meta)

    def policy(self, index: int = 0) -> Policy:
        return Policy(self.algo, self.fns.policy_params(self.state), self.obs_stats(),
                      self.fns.spec, self.fns.act)

    def summary(self, wall_s: float) -> dict:
        """Where the time went: env stepping vs learning."""
        return {"time/env_fraction": self.env_s / max(wall_s, 1e-9),
                "time/learn_fraction": self.learn_s / max(wall_s, 1e-9),
                "jax_backend": jax.default_backend()}

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()
            self.envs = None


def _name(prefix: str, path: tuple) -> str:
    return "/".join(filter(None, (prefix, leaf_name(path))))


def _store(buf: Any, t: int, obs: Any, space) -> None:
    """buf[t] = obs, leaf by leaf."""
    if space.is_leaf:
        buf[t] = obs
        return
    for path, _ in leaves(space):
        get_leaf(buf, path)[t] = get_leaf(obs, path)
