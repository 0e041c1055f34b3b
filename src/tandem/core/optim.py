"""Optimiser factory and target-network updates."""

from __future__ import annotations

import jax
import optax


def make_optimizer(learning_rate: float, max_grad_norm: float | None = None
                   ) -> optax.GradientTransformation:
    """Adam, optionally preceded by global gradient-norm clipping."""
    adam = optax.adam(learning_rate)
    if max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def polyak(target, online, tau: float):
    """target <- (1 - tau) * target + tau * online, leaf by leaf."""
    return jax.tree_util.tree_map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
