"""Off-policy training loop for Gymnasium envs.

Per env step: act (uniform random before ``learning_starts``, then the jitted stochastic
policy), step the env, store the transition (with the true final observation when an episode
ends), and every ``train_freq`` steps sample G x B transitions and run G gradient steps in one
jitted ``update_many`` call.

Exact resume. Everything the next step depends on is checkpointed: the algorithm state pytree,
the replay buffer, the NumPy generator (random actions and replay sampling), the observation
statistics, counters, and the env itself. The env's internal state cannot be saved
generically, so each episode is reset with its own seed derived from (seed, episode index) and
the actions taken so far in the current episode are saved; a resume resets with that seed and
replays those actions, which reproduces the env exactly for any env that is deterministic
given its seed (all Gymnasium classic-control and MuJoCo envs are). If the replayed
observation differs, the resume says so and starts a fresh episode instead.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable

import jax
import numpy as np

from tandem.core.checkpoint import MALFORMED, flatten_pytree, restore_pytree
from tandem.core.logging import log_metrics, record_episodes
from tandem.core.normalize import RunningMeanStd
from tandem.core.replay import HostReplay
from tandem.envs.gym import EnvInfo, check_finite, episode_seed, scale_action

log = logging.getLogger("tandem")


@dataclasses.dataclass
class HostState:
    """Driver state outside the jitted pytree."""

    step: int
    episode: int
    obs: np.ndarray                      # [obs_dim] current flat observation
    rng: np.random.Generator             # random actions + replay sampling
    episode_return: float = 0.0
    episode_actions: list = dataclasses.field(default_factory=list)  # env-scaled actions
    recent_returns: list = dataclasses.field(default_factory=list)
    recent_lengths: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Learner:
    """Everything a training session holds: config, env, compiled functions and state."""

    cfg: Any
    info: EnvInfo
    fns: Any
    seed: int
    state: Any
    host: HostState
    replay: HostReplay
    rms: RunningMeanStd | None
    explore_key: jax.Array
    noise: np.ndarray                    # [action_dim] OU exploration state, reset per episode
    last_metrics: dict = dataclasses.field(default_factory=dict)
    stop_requested: bool = False  # set by a signal handler; the loop stops at a step boundary

    def obs_stats(self):
        return None if self.rms is None else self.rms.stats()


def _reset(info: EnvInfo, seed: int, episode: int) -> np.ndarray:
    obs, _ = info.env.reset(seed=episode_seed(seed, episode))
    obs = np.asarray(obs, np.float32)
    check_finite(obs, 0.0, -1, episode)
    return obs


def _keys(seed: int) -> tuple[jax.Array, jax.Array]:
    k_init, k_explore = jax.random.split(jax.random.PRNGKey(seed))
    return k_init, k_explore


def new_learner(cfg, info: EnvInfo, fns, seed: int) -> Learner:
    k_init, k_explore = _keys(seed)
    obs = _reset(info, seed, 0)
    rms = RunningMeanStd.create(info.obs_dim) if cfg.normalize_obs else None
    if rms is not None:
        rms.update(obs)
    return Learner(cfg, info, fns, seed, fns.init(k_init),
                   HostState(0, 0, obs, np.random.default_rng(seed)),
                   HostReplay(cfg.buffer_size, info.obs_dim, info.action_dim), rms, k_explore,
                   _zero_noise(info))


def _zero_noise(info: EnvInfo) -> np.ndarray:
    return np.zeros(info.action_dim, np.float32)


# ------------------------------------------------------------------------------ checkpoint
def learner_arrays(ln: Learner) -> dict[str, np.ndarray]:
    arrays = flatten_pytree(ln.state, "state")
    arrays.update(ln.replay.state_arrays())
    if ln.rms is not None:
        arrays.update(ln.rms.state_arrays())
    acts = np.asarray(ln.host.episode_actions, np.float64).reshape(-1, ln.info.action_dim)
    arrays["host/episode_actions"] = acts  # [k, action_dim]
    arrays["host/obs"] = ln.host.obs
    arrays["host/noise"] = np.asarray(ln.noise, np.float32)
    return arrays


def learner_meta(ln: Learner) -> dict:
    h = ln.host
    return {"host": {"step": h.step, "episode": h.episode, "episode_return": h.episode_return,
                     "rng": h.rng.bit_generator.state, "recent_returns": h.recent_returns,
                     "recent_lengths": h.recent_lengths, "seed": ln.seed,
                     "replay": ln.replay.state_meta(), "normalize_obs": ln.rms is not None}}


def restore_learner(cfg, info: EnvInfo, fns, meta: dict, arrays: dict, source: str) -> Learner:
    from tandem.errors import CheckpointError

    try:
        hm = meta["host"]
        seed = int(hm["seed"])
        k_init, k_explore = _keys(seed)
        state = restore_pytree(jax.eval_shape(fns.init, k_init), arrays, "state", source)
        replay = HostReplay.from_state(hm["replay"], arrays, info.obs_dim, info.action_dim,
                                       cfg.buffer_size)
        rms = RunningMeanStd.from_state(arrays) if hm["normalize_obs"] else None
        rng = np.random.default_rng()
        rng.bit_generator.state = hm["rng"]
        saved_obs = np.asarray(arrays["host/obs"], np.float32)
        actions = np.asarray(arrays["host/episode_actions"], np.float64)
        noise = np.asarray(arrays["host/noise"], np.float32).reshape(info.action_dim)
        host = HostState(int(hm["step"]), int(hm["episode"]), saved_obs, rng,
                         float(hm["episode_return"]), list(actions),
                         list(hm["recent_returns"]), list(hm["recent_lengths"]))
    except MALFORMED as exc:
        raise CheckpointError(f"{source}: host state is incomplete or malformed ({exc!r})") from None

    # Fast-forward the env to where the checkpoint left it (see the module docstring).
    obs = _reset(info, seed, host.episode)
    for a in actions:
        obs, *_ = info.env.step(a)
    obs = np.asarray(obs, np.float32)
    if not np.array_equal(obs, saved_obs):
        log.warning("resume: replaying the current episode did not reproduce the saved "
                    "observation (the env is not deterministic given its seed); starting a "
                    "fresh episode, so this run will not match an uninterrupted one exactly")
        host.episode += 1
        host.episode_return, host.episode_actions = 0.0, []
        host.obs = _reset(info, seed, host.episode)
        noise = _zero_noise(info)
    return Learner(cfg, info, fns, seed, state, host, replay, rms, k_explore, noise)


# ------------------------------------------------------------------------------ the loop
def run_steps(ln: Learner, until: int, on_log: Callable[[int, dict], None],
              on_checkpoint: Callable[[int], None], on_progress: Callable[[int, float], None]
              ) -> None:
    """Advance training to env step ``until``; calls back for logs, checkpoints, progress."""
    cfg, info, fns, h = ln.cfg, ln.info, ln.fns, ln.host
    env, replay = info.env, ln.replay
    explore, update_many = fns.explore, fns.update_many
    G, B = cfg.gradient_steps, cfg.batch_size
    stats = ln.obs_stats()
    t_last, step_last = time.perf_counter(), h.step
    progress_every = max(1, min(cfg.log_every, 200))

    while h.step < until:
        t = h.step
        if t < cfg.learning_starts:
            a = h.rng.uniform(-1.0, 1.0, info.action_dim).astype(np.float32)
        else:
            a, ln.noise = explore(fns.policy_params(ln.state), stats, h.obs, ln.explore_key, t,
                                  ln.noise)
            a = np.asarray(a)
        env_a = scale_action(a, info.action_low, info.action_high)
        next_obs, reward, terminated, truncated, _ = env.step(env_a)
        next_obs = np.asarray(next_obs, np.float32)
        check_finite(next_obs, reward, t, h.episode)
        replay.add(h.obs, a, reward, next_obs, float(terminated))
        h.episode_actions.append(env_a)
        h.episode_return += float(reward)
        if ln.rms is not None:
            ln.rms.update(next_obs)
        h.step = t + 1
        if terminated or truncated:
            record_episodes(h, [h.episode_return], [len(h.episode_actions)])
            h.episode_return, h.episode_actions = 0.0, []
            h.obs = _reset(info, ln.seed, h.episode)
            ln.noise = _zero_noise(info)
            if ln.rms is not None:
                ln.rms.update(h.obs)
        else:
            h.obs = next_obs
        if ln.rms is not None:
            stats = ln.rms.stats()

        if h.step > cfg.learning_starts and h.step % cfg.train_freq == 0:
            ln.state, ln.last_metrics = update_many(ln.state, replay.sample(h.rng, G, B), stats)

        if h.step % progress_every == 0 or h.step == until:
            now = time.perf_counter()
            on_progress(h.step, (h.step - step_last) / max(now - t_last, 1e-9))
        if h.step % cfg.log_every == 0 or h.step == until or \
                (cfg.eval_every and h.step % cfg.eval_every == 0):  # evaluations log too
            now = time.perf_counter()
            metrics = log_metrics(ln.last_metrics, h.recent_returns, h.recent_lengths,
                                  h.episode, (h.step - step_last) / max(now - t_last, 1e-9))
            t_last, step_last = now, h.step
            on_log(h.step, metrics)
        if cfg.checkpoint_every and h.step % cfg.checkpoint_every == 0 and h.step < until:
            on_checkpoint(h.step)
        if ln.stop_requested:
            return
