"""Exploration noise for deterministic policies (TD3, DDPG), as pure functions of a carried
noise state, so the host loop and the compiled loop draw the same numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def exploration_noise(kind: str, noise: jax.Array, key: jax.Array, sigma: float,
                      theta: float = 0.15, dt: float = 1e-2) -> tuple[jax.Array, jax.Array]:
    """One draw of exploration noise; returns (epsilon to add to the action, next state).

    ``gaussian``: eps ~ N(0, sigma^2), the state is unused (TD3 paper, Sec. 6).
    ``ou``: Ornstein-Uhlenbeck process x' = x - theta * x * dt + sigma * sqrt(dt) * N(0, 1)
    (DDPG paper, Sec. 7), temporally correlated; the driver zeroes the state at each reset.
    Shapes: ``noise`` [action_dim] -> both outputs [action_dim].
    """
    z = jax.random.normal(key, noise.shape, noise.dtype)
    if kind == "gaussian":
        return sigma * z, noise
    if kind == "ou":
        nxt = noise - theta * noise * dt + sigma * jnp.sqrt(dt) * z
        return nxt, nxt
    raise ValueError(f"unknown exploration noise {kind!r}")
