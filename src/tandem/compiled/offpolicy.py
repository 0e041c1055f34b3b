"""Off-policy training as one compiled program (PureJaxRL-style) for JAX-native envs.

``make_train(cfg, env, fns)`` returns pure functions over a :class:`LoopState` pytree that
holds everything: the algorithm state (from the same ``update`` functions the Gymnasium path
uses), the env state, the replay buffer, keys and counters. A chunk of many env steps, buffer
inserts, batch sampling and gradient steps is one ``lax.scan``, so it runs without returning
to Python; ``jax.vmap`` over the initial keys trains several seeds as one program. Because the
whole state is one pytree, a checkpoint is that pytree and resuming is exact.

Schedule: ``learning_starts`` env steps with uniform random actions and no updates (warm-up),
then iterations of ``train_freq`` policy steps followed by ``gradient_steps`` updates.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from tandem.core.agent import AgentFns
from tandem.core.rollout import episode_returns
from tandem.core.types import Transition
from tandem.envs.jaxenv import JaxEnv

BUFFER_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "first")


class LoopState(NamedTuple):
    """The whole training state of one seed (vmapped: every leaf gains a leading [S] axis)."""

    algo: Any               # the algorithm's state pytree (params, optimisers, ...)
    env_state: Any
    obs: jax.Array          # [obs_dim] current observation
    noise: jax.Array        # [action_dim] exploration-noise state (OU), zeroed at each reset
    buffer: dict            # BUFFER_FIELDS -> [capacity, ...] ring buffer
    pos: jax.Array          # [] int32 next write index
    size: jax.Array         # [] int32 filled entries
    key: jax.Array          # env, random-action and sampling randomness
    explore_key: jax.Array  # folded with the step for policy noise (as on the host path)
    step: jax.Array         # [] int32 env steps taken (= rows ever added to the buffer)
    episode_return: jax.Array  # [] float32 return of the running episode
    episodes: jax.Array     # [] int32 finished episodes
    first: jax.Array        # [] bool: obs is the first observation of its episode


class CompiledTrain(NamedTuple):
    init: Callable[[jax.Array], LoopState]
    warmup: Callable[[LoopState, jax.Array], tuple[LoopState, dict]]  # n random-action steps
    train: Callable[[LoopState, jax.Array], tuple[LoopState, dict]]   # n training iterations
    evaluate: Callable[[Any, jax.Array, int], jax.Array]         # -> [episodes] returns
    policy_of: Callable[[Any], Any]  # loop state -> what ``evaluate`` takes as its policy


def _scale(a: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    return low + (a + 1.0) * 0.5 * (high - low)


def _episode_sums(done: jax.Array, finished_returns: jax.Array) -> dict:
    return {"rollout/episodes_done": jnp.sum(done).astype(jnp.float32),
            "rollout/ep_return_sum": jnp.sum(finished_returns)}


def _repeat(body: Callable, ls: LoopState, n: jax.Array) -> tuple[LoopState, dict]:
    """Apply ``body: ls -> (ls, metrics)`` n times (n may be traced), summing the metrics."""
    shapes = jax.eval_shape(lambda s: body(s)[1], ls)
    zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)

    def step(_, carry):
        ls, acc = carry
        ls, m = body(ls)
        return ls, jax.tree_util.tree_map(jnp.add, acc, m)
    return jax.lax.fori_loop(0, n, step, (ls, zeros))


def make_train(cfg, env: JaxEnv, fns: AgentFns, capacity: int) -> CompiledTrain:
    """Pure (unjitted) chunk functions for one seed; the caller jits/vmaps them."""
    obs_shape, act_dim = fns.spec.obs.shape, fns.spec.action.dim
    low = jnp.asarray(env.action_low, jnp.float32)
    high = jnp.asarray(env.action_high, jnp.float32)
    G, B = cfg.gradient_steps, cfg.batch_size
    explore, update_many = fns.raw["explore"], fns.raw["update_many"]

    def init(key: jax.Array) -> LoopState:
        k_algo, k_explore, k_env, key = jax.random.split(key, 4)
        env_state, obs = env.reset(k_env)
        row = {"obs": obs_shape, "action": (act_dim,), "reward": (), "next_obs": obs_shape,
               "terminated": (), "truncated": (), "first": ()}
        buffer = {k: jnp.zeros((capacity,) + row[k]) for k in BUFFER_FIELDS}
        zero_i, zero_f = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32)
        return LoopState(fns.raw["init"](k_algo), env_state, obs, jnp.zeros(act_dim), buffer,
                         zero_i, zero_i, key, k_explore, zero_i, zero_f, zero_i,
                         jnp.ones((), bool))

    def env_step(ls: LoopState, action: jax.Array, noise: jax.Array):
        """Step with a policy action in [-1, 1], store the transition, reset if done."""
        k_step, k_reset, key = jax.random.split(ls.key, 3)
        env_state, next_obs, reward, terminated, truncated = env.step(
            ls.env_state, _scale(action, low, high), k_step)
        row = {"obs": ls.obs, "action": action, "reward": reward, "next_obs": next_obs,
               "terminated": terminated, "truncated": truncated,
               "first": ls.first}
        buffer = {k: ls.buffer[k].at[ls.pos].set(row[k]) for k in BUFFER_FIELDS}
        done = jnp.logical_or(terminated, truncated)
        ep_return = ls.episode_return + reward
        env_state, obs = jax.lax.cond(done, lambda: env.reset(k_reset),
                                      lambda: (env_state, next_obs))
        ls = ls._replace(env_state=env_state, obs=obs, buffer=buffer, key=key,
                         noise=jnp.where(done, 0.0, noise),
                         pos=(ls.pos + 1) % capacity, size=jnp.minimum(ls.size + 1, capacity),
                         step=ls.step + 1, episode_return=jnp.where(done, 0.0, ep_return),
                         episodes=ls.episodes + done, first=done)
        return ls, (done, jnp.where(done, ep_return, 0.0))

    def random_step(ls: LoopState) -> tuple[LoopState, tuple]:
        k_act, key = jax.random.split(ls.key)
        a = jax.random.uniform(k_act, (act_dim,), minval=-1.0, maxval=1.0)
        return env_step(ls._replace(key=key), a, ls.noise)

    def policy_step(ls: LoopState) -> tuple[LoopState, tuple]:
        a, noise, _ = explore(fns.policy_params(ls.algo), None, ls.obs, ls.explore_key,
                              ls.step, ls.noise)
        return env_step(ls, a, noise)

    def iteration(ls: LoopState) -> tuple[LoopState, dict]:
        """train_freq policy steps, then G gradient steps on G x B sampled transitions."""
        ls, (done, rets) = jax.lax.scan(lambda s, _: policy_step(s), ls, None,
                                        length=cfg.train_freq)
        k_sample, key = jax.random.split(ls.key)
        idx = jax.random.randint(k_sample, (G, B), 0, ls.size)  # [G, B]
        b = ls.buffer
        batches = Transition(b["obs"][idx], b["action"][idx], b["reward"][idx],
                             b["next_obs"][idx], b["terminated"][idx])
        algo, metrics = update_many(ls.algo, batches, None)
        return ls._replace(algo=algo, key=key), {**metrics, **_episode_sums(done, rets)}

    def warmup(ls: LoopState, n: jax.Array) -> tuple[LoopState, dict]:
        """``n`` (traced) random-action steps: one compilation serves every chunk length."""
        def one(ls):
            ls, (done, ret) = random_step(ls)
            return ls, _episode_sums(done, ret)
        ls, sums = _repeat(one, ls, n)
        return ls, sums

    def train(ls: LoopState, n: jax.Array) -> tuple[LoopState, dict]:
        """``n`` (traced) training iterations; learner metrics averaged over them."""
        ls, sums = _repeat(iteration, ls, n)
        return ls, {k: (v if k.startswith("rollout/") else v / jnp.maximum(n, 1))
                    for k, v in sums.items()}

    def evaluate(policy_params, key: jax.Array, episodes: int) -> jax.Array:
        """Deterministic returns of ``episodes`` full episodes, in parallel: [episodes]."""
        return episode_returns(
            env, lambda obs: _scale(fns.raw["act"](policy_params, None, obs), low, high), key,
            episodes)

    return CompiledTrain(init, warmup, train, evaluate, lambda ls: fns.policy_params(ls.algo))
