"""Soft Actor-Critic (Haarnoja et al., 2018) with learned temperature (Haarnoja et al., 2018b).

Read top to bottom: config -> networks -> state -> losses -> update -> policy -> make_sac.
The drivers (``tandem.host``, ``tandem.compiled``, ``tandem.distributed``) run the env loops;
this file only holds pure functions. DroQ (:class:`DroQConfig`) is this file run with dropout
critics and a high update-to-data ratio. The update takes its critic and actor losses as
arguments, so a variant with other losses reuses it instead of copying it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tandem.config import OffPolicyConfig, choice, log_uniform, param
from tandem.core.agent import AgentFns, agent
from tandem.core.nets import QEnsemble
from tandem.core.normalize import normalize_obs
from tandem.core.optim import make_optimizer, polyak
from tandem.core.policies import TanhGaussianActor
from tandem.core.returns import td_target
from tandem.core.spaces import EnvSpec, zeros
from tandem.core.types import ObsStats, Transition


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """Soft Actor-Critic hyperparameters. Defaults follow the SAC papers and SB3."""

    algo = "sac"

    actor_lr: float = param(3e-4, "actor learning rate (Adam)", gt=0.0, le=1.0)
    critic_lr: float = param(3e-4, "critic learning rate (Adam)", gt=0.0, le=1.0)
    alpha_lr: float = param(3e-4, "temperature learning rate (Adam)", gt=0.0, le=1.0)
    n_critics: int = param(2, "number of Q networks; targets use their minimum", ge=1)
    autotune_alpha: bool = param(True, "learn the temperature to hit target_entropy")
    init_alpha: float = param(1.0, "initial temperature (fixed value if not autotuned)", gt=0.0)
    target_entropy: float | None = param(None, "entropy target; None means -action_dim",
                                         optional=True)
    target_update_interval: int = param(1, "gradient steps between target updates", ge=1)
    policy_delay: int = param(1, "gradient steps between actor/temperature updates (DroQ: "
                              "one actor update per gradient_steps critic updates)", ge=1)
    critic_dropout: float = param(0.0, "dropout rate in the critics (DroQ: 0.01)", ge=0.0,
                                  lt=1.0)
    critic_layer_norm: bool = param(False, "layer normalisation in the critics (DroQ)")
    squash_correction: str = param(
        "bounded", "log-density correction of the tanh squash: bounded = log(1 - tanh(u)^2 + "
        "1e-6) as in SB3, exact = log(1 - tanh(u)^2) as in the SAC paper (docs/sac.md)",
        choices=("bounded", "exact"))

    # Run folders from before issue 22 used the paper's exact correction.
    run_folder_defaults: ClassVar[dict] = {"squash_correction": "exact"}

    # `tandem tune sac`: the ranges of RL Zoo's SAC search, narrowed to what trains on a CPU.
    search_space: ClassVar[dict] = {
        "actor_lr": log_uniform(1e-5, 3e-3), "critic_lr": log_uniform(1e-5, 3e-3),
        "gamma": choice(0.95, 0.98, 0.99, 0.995, 0.999),
        "tau": choice(0.001, 0.005, 0.01, 0.02, 0.05),
        "batch_size": choice(64, 128, 256, 512),
        "hidden_sizes": choice((64, 64), (256, 256), (400, 300)),
    }


@dataclasses.dataclass(frozen=True)
class DroQConfig(SACConfig):
    """DroQ (Hiraoka et al., 2022): SAC whose two critics have Dense -> Dropout -> LayerNorm
    -> ReLU hidden layers, trained with many critic steps per env step. DroQ replaces REDQ's
    large Q ensemble with these dropout critics; everything else is SAC, so DroQ is this
    configuration (paper Table 2 / SBX): UTD 20, dropout 0.01, layer norm, one actor update
    per env step."""

    algo = "droq"

    gradient_steps: int = param(20, "gradient steps per training call, fused in one jitted "
                                "scan (DroQ's update-to-data ratio G = 20)", ge=1,
                                compiled=False)
    policy_delay: int = param(20, "critic steps per actor/temperature step (one actor step per "
                              "env step at G = 20, as in REDQ and DroQ)", ge=1)
    critic_dropout: float = param(0.01, "dropout rate in the critics", ge=0.0, lt=1.0)
    critic_layer_norm: bool = param(True, "layer normalisation in the critics")


# ============================================================================ networks
class Nets(NamedTuple):
    actor: TanhGaussianActor
    critic: QEnsemble
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    alpha_opt: optax.GradientTransformation


def q_values(nets: Nets, params, obs, action: jax.Array, key: jax.Array) -> jax.Array:
    """Training-mode Q-values [n_critics, B]; ``key`` drives dropout when it is configured."""
    return nets.critic.apply(params, obs, action, train=True, rngs={"dropout": key})


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
    actor_metrics: dict           # last actor/temperature metrics (logged between delayed updates)


def init_state(cfg: SACConfig, nets: Nets, spec: EnvSpec, key: jax.Array) -> SACState:
    k_actor, k_critic, key = jax.random.split(key, 3)
    obs = zeros(spec.obs, (1,))
    act = jnp.zeros((1, spec.action.dim), jnp.float32)
    actor_params = nets.actor.init(k_actor, obs)
    critic_params = nets.critic.init(k_critic, obs, act)
    log_alpha = jnp.asarray(jnp.log(cfg.init_alpha), jnp.float32)
    zero = jnp.zeros((), jnp.float32)
    return SACState(actor_params, critic_params, critic_params, log_alpha,
                    nets.actor_opt.init(actor_params), nets.critic_opt.init(critic_params),
                    nets.alpha_opt.init(log_alpha), key, jnp.zeros((), jnp.int32),
                    {"actor_loss": zero, "alpha_loss": zero, "entropy": zero})


# ============================================================================ losses
def critic_loss(critic_params, actor_params, target_critic_params, log_alpha, batch: Transition,
                key: jax.Array, nets: Nets, gamma: float) -> tuple[jax.Array, dict]:
    """Soft Bellman residual (SAC eq. 5), halved and summed over the critics as in SB3.

    The target uses a fresh action from the current policy at s' and the minimum of the target
    critics (clipped double-Q); it is a constant for the gradient.
    """
    k_pi, k_target, k_online = jax.random.split(key, 3)
    next_a, next_logp = nets.actor.apply(actor_params, batch.next_obs).sample_and_log_prob(k_pi)
    next_q = q_values(nets, target_critic_params, batch.next_obs, next_a, k_target).min(axis=0)
    soft_v = next_q - jnp.exp(log_alpha) * next_logp  # [B]
    target = jax.lax.stop_gradient(td_target(batch.reward, batch.terminated, soft_v, gamma))
    q = q_values(nets, critic_params, batch.obs, batch.action, k_online)  # [n_critics, B]
    loss = 0.5 * jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"train/critic_loss": loss, "train/q_mean": q.mean()}


def actor_loss(actor_params, critic_params, log_alpha, obs, key: jax.Array,
               nets: Nets) -> tuple[jax.Array, jax.Array]:
    """E[alpha log pi(a|s) - min_i Q_i(s, a)], a reparameterised (SAC eq. 12).

    Critic parameters and alpha are constants here, so this loss never moves the critic.
    """
    k_pi, k_q = jax.random.split(key)
    a, logp = nets.actor.apply(actor_params, obs).sample_and_log_prob(k_pi)
    q = q_values(nets, jax.lax.stop_gradient(critic_params), obs, a, k_q).min(axis=0)
    alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
    return jnp.mean(alpha * logp - q), logp


def alpha_loss(log_alpha, logp: jax.Array, target_entropy: float) -> jax.Array:
    """Temperature loss -log(alpha) * (log pi + H_target), as in SB3 (SAC v2 eq. 18)."""
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(logp + target_entropy))


# ============================================================================ update
def _actor_step(state: SACState, critic_params, obs, key: jax.Array, *, cfg: SACConfig,
                nets: Nets, target_entropy: float, actor_loss_fn=actor_loss):
    """Actor then temperature step; returns the new (actor, alpha) parts and their metrics."""
    (a_loss, logp), a_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
        state.actor_params, critic_params, state.log_alpha, obs, key, nets)
    a_updates, actor_opt_state = nets.actor_opt.update(a_grads, state.actor_opt_state)
    actor_params = optax.apply_updates(state.actor_params, a_updates)
    log_alpha, alpha_opt_state, t_loss = state.log_alpha, state.alpha_opt_state, jnp.zeros(())
    if cfg.autotune_alpha:
        t_loss, t_grad = jax.value_and_grad(alpha_loss)(state.log_alpha, logp, target_entropy)
        t_update, alpha_opt_state = nets.alpha_opt.update(t_grad, state.alpha_opt_state)
        log_alpha = optax.apply_updates(state.log_alpha, t_update)
    metrics = {"actor_loss": a_loss, "alpha_loss": t_loss, "entropy": -jnp.mean(logp)}
    return actor_params, actor_opt_state, log_alpha, alpha_opt_state, metrics


def update(state: SACState, batch: Transition, obs_stats: ObsStats | None, *, cfg: SACConfig,
           nets: Nets, target_entropy: float, critic_loss_fn=critic_loss,
           actor_loss_fn=actor_loss) -> tuple[SACState, dict]:
    """One gradient step on the critics; every ``policy_delay`` steps one on the actor and the
    temperature; every ``target_update_interval`` steps the polyak target update.

    ``critic_loss_fn`` and ``actor_loss_fn`` have the signatures of :func:`critic_loss` and
    :func:`actor_loss` (SAC's by default): a variant passes its own."""
    key, k_critic, k_actor = jax.random.split(state.key, 3)
    batch = batch._replace(obs=normalize_obs(batch.obs, obs_stats),
                           next_obs=normalize_obs(batch.next_obs, obs_stats))

    (_, c_metrics), c_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
        state.critic_params, state.actor_params, state.target_critic_params, state.log_alpha,
        batch, k_critic, nets, cfg.gamma)
    c_updates, critic_opt_state = nets.critic_opt.update(c_grads, state.critic_opt_state)
    critic_params = optax.apply_updates(state.critic_params, c_updates)

    updates = state.updates + 1
    actor_step = functools.partial(_actor_step, state, critic_params, batch.obs, k_actor,
                                   cfg=cfg, nets=nets, target_entropy=target_entropy,
                                   actor_loss_fn=actor_loss_fn)
    if cfg.policy_delay == 1:
        actor_out = actor_step()
    else:  # the actor sees the critic after every policy_delay-th critic step (REDQ/DroQ)
        skip = (state.actor_params, state.actor_opt_state, state.log_alpha,
                state.alpha_opt_state, state.actor_metrics)
        actor_out = jax.lax.cond(updates % cfg.policy_delay == 0, actor_step, lambda: skip)
    actor_params, actor_opt_state, log_alpha, alpha_opt_state, a_metrics = actor_out

    do_target = (updates % cfg.target_update_interval) == 0
    target_critic_params = jax.tree_util.tree_map(
        lambda new, old: jnp.where(do_target, new, old),
        polyak(state.target_critic_params, critic_params, cfg.tau), state.target_critic_params)

    metrics = {**c_metrics, **{f"train/{k}": v for k, v in a_metrics.items()},
               "train/alpha": jnp.exp(log_alpha)}
    new_state = SACState(actor_params, critic_params, target_critic_params, log_alpha,
                         actor_opt_state, critic_opt_state, alpha_opt_state, key, updates,
                         a_metrics)
    return new_state, metrics


# ============================================================================ policy
def explore(actor_params, obs_stats: ObsStats | None, obs, key: jax.Array, step: jax.Array,
            noise: jax.Array, *, nets: Nets) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Stochastic action in [-1, 1] for env step ``step`` and its log-probability (key folded
    with the step, so a resumed run draws the same noise as an uninterrupted one). ``noise``
    is the exploration state of deterministic-policy algorithms; SAC carries it unchanged."""
    dist = nets.actor.apply(actor_params, normalize_obs(obs, obs_stats))
    a, logp = dist.sample_and_log_prob(jax.random.fold_in(key, step))
    return a, noise, logp


def act(actor_params, obs_stats: ObsStats | None, obs, *, nets: Nets) -> jax.Array:
    """Deterministic action tanh(mean) in [-1, 1]; obs may have any leading batch dims."""
    return nets.actor.apply(actor_params, normalize_obs(obs, obs_stats)).mode()


# ============================================================================ assembly
def make_sac(cfg: SACConfig, spec: EnvSpec) -> AgentFns:
    """Networks, optimisers and jitted functions for ``cfg`` on an env described by ``spec``
    (cached on the fields that shape the compiled code, see ``Config.compile_key``)."""
    return _make_sac(cfg.compile_key(), spec)


def make_nets(cfg: SACConfig, spec: EnvSpec) -> Nets:
    """SAC's actor, critics and optimisers for ``cfg`` (SAC-RND builds on them too)."""
    return Nets(TanhGaussianActor(cfg.hidden_sizes, spec.action.dim, cfg.activation,
                                  cfg.network, spec.obs, cfg.squash_correction),
                QEnsemble(cfg.hidden_sizes, cfg.n_critics, cfg.activation, cfg.network,
                          cfg.critic_dropout, cfg.critic_layer_norm, spec.obs),
                make_optimizer(cfg.actor_lr, cfg.max_grad_norm),
                make_optimizer(cfg.critic_lr, cfg.max_grad_norm),
                optax.adam(cfg.alpha_lr))


@functools.lru_cache(maxsize=32)
def _make_sac(cfg: SACConfig, spec: EnvSpec) -> AgentFns:
    action_dim = spec.action.dim
    nets = make_nets(cfg, spec)
    target_entropy = (-float(action_dim) if cfg.target_entropy is None
                      else float(cfg.target_entropy))
    return agent(init=functools.partial(init_state, cfg, nets, spec),
                 update=functools.partial(update, cfg=cfg, nets=nets,
                                          target_entropy=target_entropy),
                 explore=functools.partial(explore, nets=nets),
                 act=functools.partial(act, nets=nets),
                 policy_params=lambda state: state.actor_params, nets=nets, spec=spec,
                 scan_updates=True)
