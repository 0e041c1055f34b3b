"""Off-policy driver for Gymnasium envs (SAC, DroQ, TD3, DDPG): one env, one replay buffer.

Per env step: act (uniform random before ``learning_starts``, then the jitted stochastic
policy), step the env, store the transition (with the true final observation when an episode
ends), and every ``train_freq`` steps sample G x B transitions and run G gradient steps in one
jitted call, which also computes the next step's action from the updated parameters
(``update_and_explore``: one dispatch instead of two per step at train_freq 1).

Exact resume. Everything the next step depends on is checkpointed: the algorithm state, the
replay buffer, the NumPy generator (random actions and replay sampling), the observation
statistics, counters, the action already computed for the next step (if any), and the env
itself. The env's internal state cannot be saved generically, so each episode is reset with
its own seed derived from (seed, episode index) and the actions taken so far in the current
episode are saved; a resume resets with that seed and replays those actions, which reproduces
the env exactly for any env that is deterministic given its seed (all Gymnasium
classic-control and MuJoCo envs are). If the replayed observation differs, the resume says so and
starts a fresh episode instead.
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import numpy as np

from tandem.core.agent import AgentFns
from tandem.core.evaluate import evaluate_policy
from tandem.core.logging import episode_metrics, record_episodes, to_floats
from tandem.core.offpolicy import ReplayLearner
from tandem.core.spaces import build, canonical, get_leaf, leaf_name, leaves, to_env_action
from tandem.envs.gym import GymEnv, check_finite, episode_seed
from tandem.errors import CheckpointError
from tandem.run.checkpoint import MALFORMED, Segmented, Snapshot, counters, store_meta
from tandem.run.driver import Control
from tandem.run.results import Policy

log = logging.getLogger("tandem")


class OffPolicyDriver:
    """One Gymnasium env feeding a :class:`ReplayLearner` (see the module docstring)."""

    unit = "env_steps"
    per_seed_folders = False
    compile_s = 0.0

    def __init__(self, cfg, genv: GymEnv, fns: AgentFns, seed: int, algo: str,
                 eval_env=None, init_state: Any = None, prior: Any = None) -> None:
        """``init_state``: the algorithm state to start from (``--init``; default: fresh);
        ``prior``: a dataset's transitions, half of every batch (see ReplayLearner)."""
        self.cfg, self.genv, self.fns, self.algo = cfg, genv, fns, algo
        self.init_state, self.prior = init_state, prior
        self.seeds = [int(seed)]
        self.eval_env = eval_env if eval_env is not None else genv.env
        self.ln: ReplayLearner | None = None
        self.step_ = self.episode = 0
        self.obs: Any = None
        self.episode_return = 0.0
        self.episode_actions: list = []   # env actions of the running episode
        self.recent_returns: list = []
        self.recent_lengths: list = []
        self.noise = np.zeros(fns.spec.action.dim, np.float32)  # OU state, reset per episode
        # (action, noise) for the next env step, computed with the last update; None if not
        self.pending: tuple[np.ndarray, Any] | None = None

    # ------------------------------------------------------------------ Driver
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
        seed = self.seeds[0]
        self.ln = ReplayLearner.create(self.cfg, self.fns, seed, self.init_state, self.prior)
        self.obs = self._reset(0)
        if self.ln.rms is not None:
            self.ln.rms.update(self.obs)

    def restore(self, meta: dict, arrays: dict, source: str) -> None:
        spec = self.fns.spec
        try:
            hm = meta["host"]
            counters(hm, "seed")
            self.ln = ReplayLearner.restore(self.cfg, self.fns, hm, arrays,
                                            store_meta(meta, "replay"), source, self.prior)
            self.seeds = [self.ln.seed]
            saved_obs = canonical(spec.obs, _obs_from(arrays, "host/obs", spec.obs))
            actions = np.asarray(arrays["host/episode_actions"], np.float64)
            self.noise = np.asarray(arrays["host/noise"], np.float32).reshape(spec.action.dim)
            self.pending = None
            if "host/pending_action" in arrays:  # (checkpoints before it have none)
                self.pending = tuple(
                    np.asarray(arrays[k], np.float32).reshape(spec.action.dim)
                    for k in ("host/pending_action", "host/pending_noise"))
            self.step_, self.episode = counters(hm, "step", "episode")
            self.episode_return = float(hm["episode_return"])
            self.episode_actions = list(actions)
            self.recent_returns = list(hm["recent_returns"])
            self.recent_lengths = list(hm["recent_lengths"])
        except MALFORMED as exc:
            raise CheckpointError(f"{source}: host state is incomplete or malformed "
                                  f"({exc!r})") from None
        # Fast-forward the env to where the checkpoint left it (see the module docstring).
        obs = self._reset(self.episode)
        for a in actions:
            obs, *_ = self.genv.env.step(a)
        obs = canonical(spec.obs, obs)
        if not _same(obs, saved_obs):
            log.warning("resume: replaying the current episode did not reproduce the saved "
                        "observation (the env is not deterministic given its seed); starting a "
                        "fresh episode, so this run will not match an uninterrupted one exactly")
            self.episode += 1
            self.episode_return, self.episode_actions = 0.0, []
            obs = self._reset(self.episode)
            self.noise = np.zeros_like(self.noise)
            self.pending = None
        self.obs = obs

    def advance(self, until: int, control: Control) -> None:
        """Step the env until env step ``until`` (or a stop request)."""
        ln, cfg, fns = self.ln, self.cfg, self.fns
        env, replay, space = self.genv.env, ln.replay, fns.spec.obs
        action_space = fns.spec.action
        explore, params_of = fns.explore, fns.policy_params
        starts, freq, tick_every = cfg.learning_starts, cfg.train_freq, control.tick_every
        stats = ln.obs_stats()
        first = not self.episode_actions
        while self.step_ < until:
            t = self.step_
            if t < starts:
                a = ln.random_action()
            elif self.pending is not None:
                a, self.noise = self.pending
                self.pending = None
            else:
                a, self.noise, _ = explore(params_of(ln.state), stats, self.obs, ln.explore_key,
                                           t, self.noise)
                a = np.asarray(a)
            env_a = to_env_action(action_space, a)
            next_obs, reward, terminated, truncated, _ = env.step(env_a)
            next_obs = canonical(space, next_obs)
            check_finite(next_obs, reward, t, self.episode)
            replay.add(self.obs, a, reward, next_obs, float(terminated), truncated, first)
            self.episode_actions.append(env_a)
            self.episode_return += float(reward)
            if ln.rms is not None:
                ln.rms.update(next_obs)
            self.step_ = t + 1
            first = terminated or truncated
            if first:
                record_episodes(self, [self.episode_return], [len(self.episode_actions)])
                self.episode_return, self.episode_actions = 0.0, []
                self.obs = self._reset(self.episode)
                self.noise = np.zeros_like(self.noise)
                if ln.rms is not None:
                    ln.rms.update(self.obs)
            else:
                self.obs = next_obs
            if ln.rms is not None:
                stats = ln.rms.stats()
            if self.step_ > starts and self.step_ % freq == 0:
                self.pending = ln.learn_and_explore(self.obs, self.step_, self.noise)
            if self.step_ % tick_every == 0:
                control.tick(self.step_)
            if control.stop:
                return

    def metrics(self) -> list[dict]:
        m = to_floats(self.ln.last_metrics)
        m.update(episode_metrics(self.recent_returns, self.recent_lengths, self.episode))
        return [m]

    def evaluate(self, episodes: int) -> list[dict]:
        return [evaluate_policy(self.policy().act, self.eval_env, episodes, self.seeds[0])]

    def snapshot(self) -> Snapshot:
        ln, spec = self.ln, self.fns.spec
        arrays = ln.arrays()
        acts = np.asarray(self.episode_actions, np.float64).reshape(-1, spec.action.dim)
        arrays["host/episode_actions"] = acts  # [k, action_dim]
        for path, _ in leaves(spec.obs):
            arrays[_name("host/obs", path)] = np.asarray(get_leaf(self.obs, path))
        arrays["host/noise"] = np.asarray(self.noise, np.float32)
        if self.pending is not None:
            arrays["host/pending_action"], arrays["host/pending_noise"] = (
                np.asarray(x, np.float32) for x in self.pending)
        meta = {"host": {**ln.meta(), "step": self.step_, "episode": self.episode,
                         "episode_return": self.episode_return,
                         "recent_returns": self.recent_returns,
                         "recent_lengths": self.recent_lengths}}
        return Snapshot(arrays, meta, {"replay": Segmented(ln.replay.count, ln.replay.capacity,
                                                           ln.replay.rows)})

    def policy(self, index: int = 0) -> Policy:
        return Policy(self.algo, self.fns.policy_params(self.ln.state), self.ln.obs_stats(),
                      self.fns.spec, self.fns.act)

    def summary(self, wall_s: float) -> dict:
        return {"jax_backend": jax.default_backend()}

    def close(self) -> None:
        pass  # the env belongs to the caller (an instance) or is closed with the process

    # ------------------------------------------------------------------ helpers
    def _reset(self, episode: int) -> Any:
        obs, _ = self.genv.env.reset(seed=episode_seed(self.seeds[0], episode))
        obs = canonical(self.fns.spec.obs, obs)
        check_finite(obs, 0.0, -1, episode)
        return obs


def _name(prefix: str, path: tuple) -> str:
    return "/".join(filter(None, (prefix, leaf_name(path))))


def _obs_from(arrays: dict, prefix: str, space) -> Any:
    """The structured observation saved leaf by leaf under ``prefix``."""
    return build(space, lambda path, _: arrays[_name(prefix, path)])


def _same(a: Any, b: Any) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                      jax.tree_util.tree_leaves(b)))
