"""Optimiser factory and target-network updates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def make_optimizer(learning_rate: float | optax.Schedule, max_grad_norm: float | None = None
                   ) -> optax.GradientTransformation:
    """Adam (a fixed rate or an optax schedule), optionally preceded by global gradient-norm
    clipping."""
    adam = optax.adam(learning_rate)
    if max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def annealable_optimizer(cfg) -> optax.GradientTransformation:
    """The on-policy learners' optimiser from their config fields (``optimizer``: Adam or
    PyTorch-style RMSprop with eps outside the square root and a zero initial average;
    ``optimizer_eps``, ``rmsprop_decay``, ``max_grad_norm``). The learning rate lives in the
    optimiser state (``with_learning_rate``), so annealing it never recompiles."""
    def optimizer(learning_rate):
        if cfg.optimizer == "adam":
            base = optax.adam(learning_rate, eps=cfg.optimizer_eps)
        else:
            base = optax.rmsprop(learning_rate, decay=cfg.rmsprop_decay, eps=cfg.optimizer_eps,
                                 eps_in_sqrt=False)
        if cfg.max_grad_norm is None:
            return base
        return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), base)

    return optax.inject_hyperparams(optimizer)(learning_rate=cfg.learning_rate)


def with_learning_rate(opt_state, learning_rate):
    """``opt_state`` of an ``annealable_optimizer`` with its learning rate replaced."""
    return opt_state._replace(hyperparams={
        **opt_state.hyperparams, "learning_rate": jnp.asarray(learning_rate, jnp.float32)})


def polyak(target, online, tau: float):
    """target <- (1 - tau) * target + tau * online, leaf by leaf."""
    return jax.tree_util.tree_map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def gradient_step(params, opt_state, opt: optax.GradientTransformation, loss_fn, *args):
    """One optimiser step on ``loss_fn(params, *args) -> (loss, metrics)``: the new params,
    the new optimiser state and the loss's metrics."""
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics
