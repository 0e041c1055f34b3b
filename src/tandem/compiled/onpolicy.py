"""On-policy training (PPO, A2C) as one compiled program for JAX-native envs (PureJaxRL-style).

One training iteration is a rollout of ``n_steps`` steps of ``n_envs`` vmapped envs (a
``lax.scan``), then the algorithm's own ``update`` (GAE and every epoch and minibatch); a chunk
of many iterations is a ``fori_loop`` with a traced length, so it compiles once. Everything
lives in one :class:`OnPolicyLoopState` pytree (algorithm state, env states, observation and
return statistics, keys, counters): a checkpoint is that pytree and resuming is exact, and
``jax.vmap`` over the initial keys trains several seeds as one program.

The transition logic mirrors ``tandem.host.onpolicy`` step for step: the policy samples with
its key folded with the env step, finished envs are reset in the same step keeping their final
observation, observation statistics are updated with the post-reset observations, rewards are
divided by the running std of the discounted return.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from tandem.compiled.offpolicy import CompiledTrain, _episode_sums, _repeat
from tandem.core.normalize import RMS, normalize_obs, scale_reward
from tandem.core.rollout import episode_returns
from tandem.core.types import Rollout
from tandem.envs.jaxenv import JaxEnv


class OnPolicyLoopState(NamedTuple):
    """The whole training state of one seed (vmapped: every leaf gains a leading [S] axis)."""

    algo: Any               # the algorithm's state pytree
    env_state: Any          # [N, ...] one state per env
    obs: jax.Array          # [N, obs_dim] current raw observations
    obs_rms: RMS            # observation statistics (unused unless normalize_obs)
    ret_rms: RMS            # discounted-return statistics (unused unless normalize_reward)
    disc_return: jax.Array  # [N] running discounted return, for reward scaling
    episode_return: jax.Array  # [N] undiscounted return of the running episodes
    key: jax.Array          # env randomness
    explore_key: jax.Array  # folded with the step for the policy's samples
    step: jax.Array         # [] int32 env steps taken (all envs)
    episodes: jax.Array     # [] int32 finished episodes
    total: jax.Array        # [] int32 the run's total steps (learning-rate annealing)


def env_action(a: jax.Array, env: JaxEnv) -> jax.Array:
    """Policy action -> env action (Box: clip to [-1, 1], scale to the bounds)."""
    if env.action_space["kind"] != "box":
        return a
    low = jnp.asarray(env.action_low, jnp.float32)
    high = jnp.asarray(env.action_high, jnp.float32)
    return low + (jnp.clip(a, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


def _select(done: jax.Array, a, b):
    """Per env: ``a`` where done else ``b``, leaf by leaf (done: [N])."""
    def pick(x, y):
        return jnp.where(done.reshape(done.shape + (1,) * (x.ndim - 1)), x, y)
    return jax.tree_util.tree_map(pick, a, b)


def make_train(cfg, env: JaxEnv, fns) -> CompiledTrain:
    """Pure (unjitted) chunk functions for one seed; the caller jits/vmaps them."""
    N, T = cfg.n_envs, cfg.n_steps
    explore, update = fns.raw["explore"], fns.raw["update"]
    v_reset, v_step = jax.vmap(env.reset), jax.vmap(env.step)

    def stats_of(rms: RMS):
        return rms.stats() if cfg.normalize_obs else None

    def init(key: jax.Array) -> OnPolicyLoopState:
        k_algo, k_explore, k_env, key = jax.random.split(key, 4)
        env_state, obs = v_reset(jax.random.split(k_env, N))
        obs_rms = RMS.create(fns.spec.obs.dim)
        if cfg.normalize_obs:
            obs_rms = obs_rms.update(obs)
        zi, zf = jnp.zeros((), jnp.int32), jnp.zeros(N, jnp.float32)
        return OnPolicyLoopState(fns.raw["init"](k_algo), env_state, obs, obs_rms, RMS.create(1),
                                 zf, zf, key, k_explore, zi, zi, zi)

    def env_step(ls: OnPolicyLoopState, _):
        stats = stats_of(ls.obs_rms)
        obs_in = normalize_obs(ls.obs, stats)
        a, _, _ = explore(fns.policy_params(ls.algo), None, obs_in, ls.explore_key,
                          ls.step, None)  # [N, ...]
        k_step, k_reset, key = jax.random.split(ls.key, 3)
        env_state, next_obs, reward, terminated, truncated = v_step(
            ls.env_state, env_action(a, env), jax.random.split(k_step, N))
        done = jnp.logical_or(terminated, truncated)
        reset_state, reset_obs = v_reset(jax.random.split(k_reset, N))
        env_state = _select(done, reset_state, env_state)
        obs = _select(done, reset_obs, next_obs)
        obs_rms = ls.obs_rms.update(obs) if cfg.normalize_obs else ls.obs_rms
        stats = stats_of(obs_rms)
        disc, ret_rms, r = ls.disc_return, ls.ret_rms, reward
        if cfg.normalize_reward:
            disc = disc * cfg.gamma + reward
            ret_rms = ret_rms.update(disc[:, None])
            r = scale_reward(reward, ret_rms.var[0])
        ep_return = ls.episode_return + reward
        tr = (obs_in, a, r, terminated.astype(jnp.float32), done.astype(jnp.float32),
              normalize_obs(next_obs, stats))
        ls = ls._replace(algo=ls.algo, env_state=env_state, obs=obs, obs_rms=obs_rms,
                         ret_rms=ret_rms, disc_return=jnp.where(done, 0.0, disc),
                         episode_return=jnp.where(done, 0.0, ep_return), key=key,
                         step=ls.step + N, episodes=ls.episodes + jnp.sum(done))
        return ls, (tr, done, jnp.where(done, ep_return, 0.0))

    def iteration(ls: OnPolicyLoopState) -> tuple[OnPolicyLoopState, dict]:
        start = ls.step
        ls, (tr, done, rets) = jax.lax.scan(env_step, ls, None, length=T)
        ro = Rollout(*tr, last_obs=normalize_obs(ls.obs, stats_of(ls.obs_rms)))
        frac = 1.0 - start.astype(jnp.float32) / jnp.maximum(ls.total, 1).astype(jnp.float32)
        algo, metrics = update(ls.algo, ro, frac)
        return ls._replace(algo=algo), {**metrics, **_episode_sums(done, rets)}

    def train(ls: OnPolicyLoopState, n: jax.Array):
        """``n`` (traced) rollouts and updates; learner metrics averaged over them."""
        ls, sums = _repeat(iteration, ls, n)
        return ls, {k: (v if k.startswith("rollout/") else v / jnp.maximum(n, 1))
                    for k, v in sums.items()}

    def policy_of(ls: OnPolicyLoopState):
        return fns.policy_params(ls.algo), stats_of(ls.obs_rms)

    def evaluate(policy, key: jax.Array, episodes: int) -> jax.Array:
        """Deterministic returns of ``episodes`` full episodes, in parallel: [episodes]."""
        params, stats = policy
        return episode_returns(
            env, lambda obs: env_action(fns.raw["act"](params, stats, obs), env), key, episodes)

    return CompiledTrain(init, None, train, evaluate, policy_of)
