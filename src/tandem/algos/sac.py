"""Soft Actor-Critic (Haarnoja et al., 2018) with learned temperature (Haarnoja et al., 2018b).

Read top to bottom: config -> networks -> state -> losses -> update -> policy -> make_sac.
The env loop lives in ``tandem.host.offpolicy``; this file only holds pure functions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tandem.config import Config, param
from tandem.core.distributions import TanhNormal
from tandem.core.nets import MLP, QEnsemble
from tandem.core.normalize import normalize_obs
from tandem.core.optim import make_optimizer, polyak
from tandem.core.returns import td_target
from tandem.core.types import ObsStats, Transition, mean_metrics
from tandem.errors import ConfigError


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class SACConfig(Config):
    """Soft Actor-Critic hyperparameters. Defaults follow the SAC papers and SB3."""

    algo = "sac"

    actor_lr: float = param(3e-4, "actor learning rate (Adam)", gt=0.0, le=1.0)
    critic_lr: float = param(3e-4, "critic learning rate (Adam)", gt=0.0, le=1.0)
    alpha_lr: float = param(3e-4, "temperature learning rate (Adam)", gt=0.0, le=1.0)
    gamma: float = param(0.99, "discount factor", ge=0.0, le=1.0)
    tau: float = param(0.005, "polyak coefficient of the target critics", gt=0.0, le=1.0)
    batch_size: int = param(256, "transitions per gradient step", ge=1)
    buffer_size: int = param(1_000_000, "replay buffer capacity (transitions)", ge=1)
    learning_starts: int = param(1000, "env steps of uniform random actions before learning",
                                 ge=0)
    train_freq: int = param(1, "env steps between two training calls", ge=1)
    gradient_steps: int = param(1, "gradient steps per training call, fused in one jitted "
                                "scan (update-to-data ratio = gradient_steps / train_freq)",
                                ge=1)
    hidden_sizes: tuple[int, ...] = param((256, 256), "hidden layer widths of actor and critics")
    activation: str = param("relu", "hidden activation", choices=("relu", "tanh", "elu", "gelu",
                                                                  "silu"))
    n_critics: int = param(2, "number of Q networks; targets use their minimum", ge=1)
    autotune_alpha: bool = param(True, "learn the temperature to hit target_entropy")
    init_alpha: float = param(1.0, "initial temperature (fixed value if not autotuned)", gt=0.0)
    target_entropy: float | None = param(None, "entropy target; None means -action_dim",
                                         optional=True)
    target_update_interval: int = param(1, "gradient steps between target updates", ge=1)
    max_grad_norm: float | None = param(None, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    normalize_obs: bool = param(False, "normalise observations with running statistics "
                                "(saved with the policy)")
    eval_episodes: int = param(10, "deterministic episodes for the final evaluation", ge=0)
    log_every: int = param(1000, "env steps between metric log lines", ge=1)
    checkpoint_every: int = param(10_000, "env steps between checkpoints (0: only at the end)",
                                  ge=0)
    keep_checkpoints: int = param(3, "how many recent checkpoints to keep", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"SACConfig.batch_size={self.batch_size} exceeds buffer_size="
                              f"{self.buffer_size}: lower batch_size or raise buffer_size")


# ============================================================================ networks
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # as in SB3; keeps exp(log_std) finite


class Actor(nn.Module):
    """obs -> TanhNormal over actions in (-1, 1)."""

    hidden_sizes: tuple[int, ...]
    action_dim: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> TanhNormal:
        out = MLP(self.hidden_sizes, 2 * self.action_dim, self.activation)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        log_std = jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
        return TanhNormal(mean, jnp.exp(log_std))


class Nets(NamedTuple):
    actor: Actor
    critic: QEnsemble
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    alpha_opt: optax.GradientTransformation


# ============================================================================ state
class SACState(NamedTuple):
    """Everything that changes during training (host state lives in the driver)."""

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: jax.Array          # []
    actor_opt_state: Any
    critic_opt_state: Any
    alpha_opt_state: Any
    key: jax.Array                # PRNG key for the updates
    updates: jax.Array            # [] int32, gradient steps taken


def init_state(cfg: SACConfig, nets: Nets, obs_dim: int, action_dim: int,
               key: jax.Array) -> SACState:
    k_actor, k_critic, key = jax.random.split(key, 3)
    obs = jnp.zeros((1, obs_dim), jnp.float32)
    act = jnp.zeros((1, action_dim), jnp.float32)
    actor_params = nets.actor.init(k_actor, obs)
    critic_params = nets.critic.init(k_critic, obs, act)
    log_alpha = jnp.asarray(jnp.log(cfg.init_alpha), jnp.float32)
    return SACState(actor_params, critic_params, critic_params, log_alpha,
                    nets.actor_opt.init(actor_params), nets.critic_opt.init(critic_params),
                    nets.alpha_opt.init(log_alpha), key, jnp.zeros((), jnp.int32))


# ============================================================================ losses
def critic_loss(critic_params, actor_params, target_critic_params, log_alpha, batch: Transition,
                key: jax.Array, nets: Nets, gamma: float) -> tuple[jax.Array, dict]:
    """Soft Bellman residual (SAC eq. 5), halved and summed over the critics as in SB3.

    The target uses a fresh action from the current policy at s' and the minimum of the target
    critics (clipped double-Q); it is a constant for the gradient.
    """
    next_a, next_logp = nets.actor.apply(actor_params, batch.next_obs).sample_and_log_prob(key)
    next_q = nets.critic.apply(target_critic_params, batch.next_obs, next_a).min(axis=0)  # [B]
    soft_v = next_q - jnp.exp(log_alpha) * next_logp
    target = jax.lax.stop_gradient(td_target(batch.reward, batch.terminated, soft_v, gamma))
    q = nets.critic.apply(critic_params, batch.obs, batch.action)  # [n_critics, B]
    loss = 0.5 * jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"train/critic_loss": loss, "train/q_mean": q.mean()}


def actor_loss(actor_params, critic_params, log_alpha, obs: jax.Array, key: jax.Array,
               nets: Nets) -> tuple[jax.Array, jax.Array]:
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a reparameterised (SAC eq. 12).

    Critic parameters and alpha are constants here, so this loss never moves the critic.
    """
    a, logp = nets.actor.apply(actor_params, obs).sample_and_log_prob(key)
    q = nets.critic.apply(jax.lax.stop_gradient(critic_params), obs, a).min(axis=0)
    alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
    return jnp.mean(alpha * logp - q), logp


def alpha_loss(log_alpha, logp: jax.Array, target_entropy: float) -> jax.Array:
    """Temperature loss -log(alpha) * (log pi + H_target), as in SB3 (SAC v2 eq. 18)."""
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(logp + target_entropy))


# ============================================================================ update
def update(state: SACState, batch: Transition, obs_stats: ObsStats | None, *, cfg: SACConfig,
           nets: Nets, target_entropy: float) -> tuple[SACState, dict]:
    """One gradient step on critics, actor and temperature, then the target update."""
    key, k_critic, k_actor = jax.random.split(state.key, 3)
    batch = batch._replace(obs=normalize_obs(batch.obs, obs_stats),
                           next_obs=normalize_obs(batch.next_obs, obs_stats))

    (_, c_metrics), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic_params, state.actor_params, state.target_critic_params, state.log_alpha,
        batch, k_critic, nets, cfg.gamma)
    c_updates, critic_opt_state = nets.critic_opt.update(c_grads, state.critic_opt_state)
    critic_params = optax.apply_updates(state.critic_params, c_updates)

    (a_loss, logp), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        state.actor_params, critic_params, state.log_alpha, batch.obs, k_actor, nets)
    a_updates, actor_opt_state = nets.actor_opt.update(a_grads, state.actor_opt_state)
    actor_params = optax.apply_updates(state.actor_params, a_updates)

    log_alpha, alpha_opt_state, t_loss = state.log_alpha, state.alpha_opt_state, 0.0
    if cfg.autotune_alpha:
        t_loss, t_grad = jax.value_and_grad(alpha_loss)(state.log_alpha, logp, target_entropy)
        t_update, alpha_opt_state = nets.alpha_opt.update(t_grad, state.alpha_opt_state)
        log_alpha = optax.apply_updates(state.log_alpha, t_update)

    updates = state.updates + 1
    do_target = (updates % cfg.target_update_interval) == 0
    target_critic_params = jax.tree_util.tree_map(
        lambda new, old: jnp.where(do_target, new, old),
        polyak(state.target_critic_params, critic_params, cfg.tau), state.target_critic_params)

    metrics = {**c_metrics, "train/actor_loss": a_loss, "train/alpha_loss": t_loss,
               "train/alpha": jnp.exp(log_alpha), "train/entropy": -jnp.mean(logp)}
    new_state = SACState(actor_params, critic_params, target_critic_params, log_alpha,
                         actor_opt_state, critic_opt_state, alpha_opt_state, key, updates)
    return new_state, metrics


# ============================================================================ policy
def explore(actor_params, obs_stats: ObsStats | None, obs: jax.Array, key: jax.Array,
            step: jax.Array, *, nets: Nets) -> jax.Array:
    """Stochastic action in [-1, 1] for env step ``step`` (key folded with the step, so a
    resumed run draws the same noise as an uninterrupted one)."""
    dist = nets.actor.apply(actor_params, normalize_obs(obs, obs_stats))
    a, _ = dist.sample_and_log_prob(jax.random.fold_in(key, step))
    return a


def act(actor_params, obs_stats: ObsStats | None, obs: jax.Array, *, nets: Nets) -> jax.Array:
    """Deterministic action tanh(mean) in [-1, 1]; obs may have any leading batch dims."""
    return nets.actor.apply(actor_params, normalize_obs(obs, obs_stats)).mode()


# ============================================================================ assembly
class SACFns(NamedTuple):
    """Compiled entry points for one (config, obs_dim, action_dim)."""

    init: Callable[[jax.Array], SACState]
    update_many: Callable[..., tuple[SACState, dict]]
    explore: Callable[..., jax.Array]
    act: Callable[..., jax.Array]
    nets: Nets
    traces: dict  # how many times each function was traced (the no-retrace test reads it)

    @staticmethod
    def policy_params(state: SACState):
        return state.actor_params


# Fields read only by the host driver; they do not change the compiled functions, so configs
# that differ only here share one compilation (tests and sweeps compile once).
HOST_FIELDS = ("batch_size", "buffer_size", "learning_starts", "train_freq", "gradient_steps",
               "normalize_obs", "eval_episodes", "log_every", "checkpoint_every",
               "keep_checkpoints")


def make_sac(cfg: SACConfig, obs_dim: int, action_dim: int) -> SACFns:
    """Build networks, optimisers and jitted functions for ``cfg`` (cached, see HOST_FIELDS)."""
    defaults = SACConfig()
    return _make_sac(cfg.replace(**{k: getattr(defaults, k) for k in HOST_FIELDS}),
                     obs_dim, action_dim)


@functools.lru_cache(maxsize=32)
def _make_sac(cfg: SACConfig, obs_dim: int, action_dim: int) -> SACFns:
    nets = Nets(Actor(cfg.hidden_sizes, action_dim, cfg.activation),
                QEnsemble(cfg.hidden_sizes, cfg.n_critics, cfg.activation),
                make_optimizer(cfg.actor_lr, cfg.max_grad_norm),
                make_optimizer(cfg.critic_lr, cfg.max_grad_norm),
                optax.adam(cfg.alpha_lr))
    target_entropy = (-float(action_dim) if cfg.target_entropy is None
                      else float(cfg.target_entropy))
    traces = {"update_many": 0, "explore": 0, "act": 0}
    step_fn = functools.partial(update, cfg=cfg, nets=nets, target_entropy=target_entropy)

    def update_many(state: SACState, batches: Transition, obs_stats: ObsStats | None = None):
        """G gradient steps in one call: batches has leading dims [G, B]."""
        traces["update_many"] += 1
        state, metrics = jax.lax.scan(lambda s, b: step_fn(s, b, obs_stats), state, batches)
        return state, mean_metrics(metrics)

    def explore_fn(actor_params, obs_stats, obs, key, step):
        traces["explore"] += 1
        return explore(actor_params, obs_stats, obs, key, step, nets=nets)

    def act_fn(actor_params, obs_stats, obs):
        traces["act"] += 1
        return act(actor_params, obs_stats, obs, nets=nets)

    return SACFns(
        init=jax.jit(functools.partial(init_state, cfg, nets, obs_dim, action_dim)),
        update_many=jax.jit(update_many),
        explore=jax.jit(explore_fn),
        act=jax.jit(act_fn),
        nets=nets,
        traces=traces,
    )
