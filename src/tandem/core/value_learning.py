"""Value learning from dataset actions only (IQL, and CFPI's one-step Q): V fitted to an
expectile of Q over the dataset's actions, Q to r + gamma V(s'). Q is never queried at an
action outside the data (Kostrikov et al., 2022, eq. 5-6).

``nets`` needs ``critic`` (a Q ensemble: (obs, action) -> [n, B]) and ``value``
((obs) -> [B]); ``cfg`` needs ``expectile`` and ``gamma``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tandem.core.returns import td_target
from tandem.core.types import Transition


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """Asymmetric squared loss |tau - 1(diff < 0)| diff^2 (eq. 5), diff = Q - V: with tau
    > 0.5, V below Q is punished more, so V tends to an upper expectile of Q."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def expectile_value_loss(value_params, target_critic_params, batch: Transition, nets,
                         cfg) -> tuple[jax.Array, dict]:
    """V(s) to the ``cfg.expectile`` expectile of min_i Q'_i(s, a) over dataset (s, a)."""
    q = nets.critic.apply(target_critic_params, batch.obs, batch.action).min(axis=0)  # [B]
    v = nets.value.apply(value_params, batch.obs)  # [B]
    loss = expectile_loss(jax.lax.stop_gradient(q) - v, cfg.expectile).mean()
    return loss, {"train/value_loss": loss, "train/v_mean": v.mean()}


def bootstrap_q_loss(critic_params, value_params, batch: Transition, nets,
                     cfg) -> tuple[jax.Array, dict]:
    """Every Q to r + gamma (1 - terminated) V(s') (eq. 6), summed over the ensemble."""
    target = td_target(batch.reward, batch.terminated,
                       nets.value.apply(value_params, batch.next_obs), cfg.gamma)
    q = nets.critic.apply(critic_params, batch.obs, batch.action)  # [n, B]
    loss = jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=1))
    return loss, {"train/critic_loss": loss, "train/q_mean": q.mean()}
