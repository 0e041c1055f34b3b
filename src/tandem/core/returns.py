"""Return and target computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def td_target(reward: jax.Array, terminated: jax.Array, next_value: jax.Array,
              gamma: float) -> jax.Array:
    """One-step TD target r + gamma * (1 - terminated) * V(s').

    Only termination stops bootstrapping; a time-limit truncation keeps it, because the
    state after a truncation still has value (Pardo et al., 2018).
    """
    return reward + gamma * (1.0 - terminated) * next_value


def gae(reward: jax.Array, value: jax.Array, next_value: jax.Array, terminated: jax.Array,
        done: jax.Array, gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al., 2016, eq. 16), time-major.

    All inputs are [T, ...]. ``next_value[t]`` is V of the state the env reached after step t
    (the *final* observation when the episode ended there, not the reset one), ``terminated``
    stops bootstrapping from it, and ``done`` (terminated or truncated) stops the advantage
    from flowing back across an episode boundary:

        delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - value_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1},      A_T = 0

    A truncated step therefore bootstraps from its final observation's value, which is the
    correct target for a time limit. Returns (advantages, value targets = advantages + value).
    """
    delta = td_target(reward, terminated, next_value, gamma) - value
    carry_on = gamma * lam * (1.0 - done)

    def back(adv_next, x):
        d, c = x
        adv = d + c * adv_next
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(delta[0]), (delta, carry_on), reverse=True)
    return adv, adv + value
