"""Return and target computations."""

from __future__ import annotations

import jax


def td_target(reward: jax.Array, terminated: jax.Array, next_value: jax.Array,
              gamma: float) -> jax.Array:
    """One-step TD target r + gamma * (1 - terminated) * V(s').

    Only termination stops bootstrapping; a time-limit truncation keeps it, because the
    state after a truncation still has value (Pardo et al., 2018).
    """
    return reward + gamma * (1.0 - terminated) * next_value
