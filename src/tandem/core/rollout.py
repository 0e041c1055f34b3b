"""Scanned rollouts on JAX-native envs."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def episode_returns(env, policy: Callable[[jax.Array], jax.Array], key: jax.Array,
                    episodes: int) -> jax.Array:
    """Returns of ``episodes`` full episodes of ``policy`` (obs -> env action), run in
    parallel for ``env.max_steps`` steps each; steps after an episode ends are ignored.
    ``env`` is a :class:`tandem.envs.jaxenv.JaxEnv`. Returns [episodes]."""
    def one(k):
        k_reset, k_steps = jax.random.split(k)
        env_state, obs = env.reset(k_reset)

        def body(carry, k_step):
            env_state, obs, total, alive = carry
            env_state, obs, r, term, trunc = env.step(env_state, policy(obs), k_step)
            total = total + jnp.where(alive, r, 0.0)
            alive = jnp.logical_and(alive, jnp.logical_not(jnp.logical_or(term, trunc)))
            return (env_state, obs, total, alive), None
        carry = (env_state, obs, jnp.zeros(()), jnp.ones((), bool))
        (_, _, total, _), _ = jax.lax.scan(body, carry, jax.random.split(k_steps, env.max_steps))
        return total
    return jax.vmap(one)(jax.random.split(key, episodes))
