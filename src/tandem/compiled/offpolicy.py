"""Off-policy training as one compiled program (PureJaxRL-style) for JAX-native envs.

``make_train(cfg, env, fns)`` returns pure functions over a :class:`LoopState` pytree that
holds everything: the algorithm state (from the same ``update`` functions the Gymnasium path
uses), the env state, the replay buffer, keys and counters. A chunk of many env steps, buffer
inserts, batch sampling and gradient steps is one loop, so it runs without returning to
Python, and several seeds train as one program. Because the whole state is one pytree, a
checkpoint is that pytree and resuming is exact.

Seeds: ``init`` makes one seed's state (the caller vmaps it over the seeds' keys);
``warmup`` and ``train`` take every seed at once (each leaf has a leading [S] axis) and vmap
the per-seed work inside. All seeds step in lockstep, so they write the replay buffer at one
shared position: one in-place slice update of the [S, capacity, ...] arrays per step. (A
vmapped per-seed write is a scatter, which XLA on the CPU computes over the whole buffer:
steps/s then fell with the buffer's size.)

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
    """The whole training state of one seed (of S seeds: every leaf gains a leading [S]
    axis; ``pos`` and ``size`` are then equal across seeds)."""

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
    batched: bool = False  # warmup/train take every seed's state (else one seed's: vmap them)


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
    """Pure (unjitted) functions: ``init`` for one seed, the chunks for all seeds at once
    (see the module docstring); the caller jits them."""
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
        """One seed: step with a policy action in [-1, 1], reset if done; returns the new
        state (buffer untouched) and the transition's row for the buffer."""
        k_step, k_reset, key = jax.random.split(ls.key, 3)
        env_state, next_obs, reward, terminated, truncated = env.step(
            ls.env_state, _scale(action, low, high), k_step)
        row = {"obs": ls.obs, "action": action, "reward": reward, "next_obs": next_obs,
               "terminated": terminated, "truncated": truncated, "first": ls.first}
        done = jnp.logical_or(terminated, truncated)
        ep_return = ls.episode_return + reward
        env_state, obs = jax.lax.cond(done, lambda: env.reset(k_reset),
                                      lambda: (env_state, next_obs))
        ls = ls._replace(env_state=env_state, obs=obs, key=key,
                         noise=jnp.where(done, 0.0, noise),
                         step=ls.step + 1, episode_return=jnp.where(done, 0.0, ep_return),
                         episodes=ls.episodes + done, first=done)
        return ls, row, _episode_sums(done, jnp.where(done, ep_return, 0.0))

    def random_step(ls: LoopState):
        k_act, key = jax.random.split(ls.key)
        a = jax.random.uniform(k_act, (act_dim,), minval=-1.0, maxval=1.0)
        return env_step(ls._replace(key=key), a, ls.noise)

    def policy_step(ls: LoopState):
        a, noise, _ = explore(fns.policy_params(ls.algo), None, ls.obs, ls.explore_key,
                              ls.step, ls.noise)
        return env_step(ls, a, noise)

    def stepped(step_fn: Callable) -> Callable:
        """Every seed takes one step (vmapped); their rows go into the buffer at the shared
        position with one in-place slice update per field."""
        def body(ls: LoopState) -> tuple[LoopState, dict]:
            without = ls._replace(buffer=None)
            new, rows, sums = jax.vmap(step_fn)(without)
            pos = ls.pos[0]  # the seeds step together: one position for all
            buffer = {k: jax.lax.dynamic_update_index_in_dim(
                ls.buffer[k], rows[k].astype(ls.buffer[k].dtype), pos, axis=1)
                for k in BUFFER_FIELDS}
            return new._replace(buffer=buffer, pos=(ls.pos + 1) % capacity,
                                size=jnp.minimum(ls.size + 1, capacity)), sums
        return body

    def learn(ls: LoopState) -> tuple[LoopState, dict]:
        """One seed: G gradient steps on G x B transitions sampled from its buffer."""
        k_sample, key = jax.random.split(ls.key)
        idx = jax.random.randint(k_sample, (G, B), 0, ls.size)  # [G, B]
        b = ls.buffer
        batches = Transition(b["obs"][idx], b["action"][idx], b["reward"][idx],
                             b["next_obs"][idx], b["terminated"][idx])
        algo, metrics = update_many(ls.algo, batches, None)
        return ls._replace(algo=algo, key=key), metrics

    random_body, policy_body = stepped(random_step), stepped(policy_step)

    def iteration(ls: LoopState) -> tuple[LoopState, dict]:
        """Every seed: train_freq policy steps, then G gradient steps."""
        # The steps run in a loop with a trip count XLA cannot fold (it would inline a
        # train_freq of 1): inlined, XLA fused each buffer write into the sampling gather
        # after it and then copied whole buffer fields on every step.
        # tests/test_compiled.py checks that the program holds no copy of the buffer.
        ls, sums = _repeat(policy_body, ls, jnp.where(ls.step[0] >= 0, cfg.train_freq, 0))
        ls, metrics = jax.vmap(learn)(ls)
        return ls, {**metrics, **sums}

    def warmup(ls: LoopState, n: jax.Array) -> tuple[LoopState, dict]:
        """``n`` (traced) random-action steps of every seed: one compilation serves every
        chunk length."""
        return _repeat(random_body, ls, n)

    def train(ls: LoopState, n: jax.Array) -> tuple[LoopState, dict]:
        """``n`` (traced) training iterations of every seed; learner metrics averaged over
        them (per seed: [S])."""
        ls, sums = _repeat(iteration, ls, n)
        return ls, {k: (v if k.startswith("rollout/") else v / jnp.maximum(n, 1))
                    for k, v in sums.items()}

    def evaluate(policy_params, key: jax.Array, episodes: int) -> jax.Array:
        """Deterministic returns of ``episodes`` full episodes, in parallel: [episodes]."""
        return episode_returns(
            env, lambda obs: _scale(fns.raw["act"](policy_params, None, obs), low, high), key,
            episodes)

    return CompiledTrain(init, warmup, train, evaluate, lambda ls: fns.policy_params(ls.algo),
                         batched=True)
