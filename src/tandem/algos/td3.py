"""Twin Delayed DDPG, TD3 (Fujimoto et al., 2018), with DDPG and TD3+BC as configurations.

DDPG's deterministic actor-critic (Lillicrap et al., 2016) with three fixes for the
overestimation of Q-learning with function approximation: clipped double-Q targets, delayed
policy and target updates, and target policy smoothing. DDPG (:class:`DDPGConfig`) is this
file with the three fixes switched off; TD3+BC (:class:`TD3BCConfig`, offline) passes a
behaviour-cloning actor loss to the same update. Read top to bottom: config -> networks ->
state -> losses -> update -> policy -> make_td3.
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
from tandem.core.noise import exploration_noise
from tandem.core.normalize import normalize_obs
from tandem.core.optim import make_optimizer, polyak
from tandem.core.policies import DeterministicActor
from tandem.core.returns import td_target
from tandem.core.spaces import EnvSpec, zeros
from tandem.core.types import ObsStats, Transition


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class TD3Config(OffPolicyConfig):
    """TD3 hyperparameters. Defaults follow the TD3 paper and SB3 (learning rate 1e-3)."""

    algo = "td3"

    actor_lr: float = param(1e-3, "actor learning rate (Adam)", gt=0.0, le=1.0)
    critic_lr: float = param(1e-3, "critic learning rate (Adam)", gt=0.0, le=1.0)
    n_critics: int = param(2, "number of Q networks; targets use their minimum (clipped "
                           "double-Q, TD3 Sec. 4.1)", ge=1)
    policy_delay: int = param(2, "critic steps per actor and target update (TD3 Sec. 5.2)",
                              ge=1)
    target_noise: float = param(0.2, "std of the target policy smoothing noise (TD3 Sec. 5.3; "
                                "0 turns it off)", ge=0.0)
    target_noise_clip: float = param(0.5, "clip of the target policy smoothing noise", ge=0.0)
    exploration_noise: str = param("gaussian", "exploration noise added to the actor's action",
                                   choices=("gaussian", "ou"))
    exploration_sigma: float = param(0.1, "std of the exploration noise (actions in [-1, 1])",
                                     ge=0.0)
    ou_theta: float = param(0.15, "mean reversion rate of Ornstein-Uhlenbeck noise", gt=0.0)
    ou_dt: float = param(1e-2, "time step of Ornstein-Uhlenbeck noise", gt=0.0)

    # `tandem tune td3` (RL Zoo's TD3 ranges, narrowed); DDPG drops target_noise.
    search_space: ClassVar[dict] = {
        "actor_lr": log_uniform(1e-5, 3e-3), "critic_lr": log_uniform(1e-5, 3e-3),
        "gamma": choice(0.95, 0.98, 0.99, 0.995, 0.999),
        "tau": choice(0.001, 0.005, 0.01, 0.02, 0.05),
        "batch_size": choice(64, 128, 256, 512),
        "exploration_sigma": choice(0.05, 0.1, 0.2, 0.3),
        "target_noise": choice(0.1, 0.2, 0.3),
        "hidden_sizes": choice((64, 64), (256, 256), (400, 300)),
    }


@dataclasses.dataclass(frozen=True)
class DDPGConfig(TD3Config):
    """DDPG (Lillicrap et al., 2016) is TD3 without its three additions: one critic (no
    clipped double-Q), the actor and the targets updated at every critic step (no delay), and
    no target policy smoothing. Rather than a second copy of the deterministic actor-critic
    update, DDPG is this configuration of TD3's functions, as in Stable-Baselines3 (the
    equivalence with a textbook DDPG step is tested). Defaults follow SB3's DDPG (the paper's
    400-300 networks, lr 1e-3, tau 0.005); exploration is Gaussian by default,
    Ornstein-Uhlenbeck as in the paper with ``exploration_noise=ou``."""

    algo = "ddpg"

    hidden_sizes: tuple[int, ...] = param((400, 300), "hidden layer widths of actor and critic "
                                          "(simbav2: equal widths, one block per entry)")
    n_critics: int = param(1, "number of Q networks (DDPG: 1; more gives TD3's clipped "
                           "double-Q)", ge=1)
    policy_delay: int = param(1, "critic steps per actor and target update (DDPG: 1)", ge=1)
    target_noise: float = param(0.0, "std of target policy smoothing noise (DDPG: 0, off)",
                                ge=0.0)

    # TD3's search without target_noise (DDPG has no target policy smoothing).
    search_space: ClassVar[dict] = {k: v for k, v in TD3Config.search_space.items()
                                    if k != "target_noise"}


@dataclasses.dataclass(frozen=True)
class TD3BCConfig(TD3Config):
    """TD3+BC (Fujimoto & Gu, 2021), offline: TD3 whose actor loss adds behaviour cloning,
    -lambda Q(s, pi(s)) + (pi(s) - a)^2 with lambda = alpha / mean|Q| (eq. 3), and states
    normalised by the dataset's mean and std. Rather than a copy of TD3, this configuration
    passes that actor loss to TD3's update. Defaults are the paper's (Table 3): 256x256
    networks, Adam 3e-4, batch 256, alpha 2.5. Trains on a dataset (``--dataset``); its
    steps are gradient steps. The exploration fields apply only when it continues online."""

    algo = "td3bc"

    actor_lr: float = param(3e-4, "actor learning rate (Adam)", gt=0.0, le=1.0)
    critic_lr: float = param(3e-4, "critic learning rate (Adam)", gt=0.0, le=1.0)
    hidden_sizes: tuple[int, ...] = param((256, 256), "hidden layer widths of actor and critic "
                                          "(simbav2: equal widths, one block per entry)")
    bc_alpha: float = param(2.5, "alpha of the Q term's weight lambda = alpha / mean|Q| (TD3+BC "
                            "eq. 3; smaller is closer to behaviour cloning)", gt=0.0)
    normalize_obs: bool = param(True, "normalise observations by the dataset's mean and std "
                                "(TD3+BC Sec. 5; saved with the policy)", compiled=False)

    settings_defaults: ClassVar[dict[str, Any]] = {"eval_every": 5000}
    search_space: ClassVar[dict] = {
        "actor_lr": log_uniform(1e-4, 1e-3), "critic_lr": log_uniform(1e-4, 1e-3),
        "bc_alpha": choice(1.0, 2.5, 5.0, 10.0),
    }


# ============================================================================ networks
class Nets(NamedTuple):
    actor: DeterministicActor
    critic: QEnsemble
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation


# ============================================================================ state
class TD3State(NamedTuple):
    actor_params: Any
    critic_params: Any
    target_actor_params: Any
    target_critic_params: Any
    actor_opt_state: Any
    critic_opt_state: Any
    key: jax.Array          # PRNG key for target smoothing noise
    updates: jax.Array      # [] int32, gradient steps taken
    actor_metrics: dict     # last actor loss (logged between delayed updates)


def init_state(nets: Nets, spec: EnvSpec, key: jax.Array,
               actor_metrics: tuple[str, ...] = ("actor_loss",)) -> TD3State:
    k_actor, k_critic, key = jax.random.split(key, 3)
    obs = zeros(spec.obs, (1,))
    act = jnp.zeros((1, spec.action.dim), jnp.float32)
    actor_params = nets.actor.init(k_actor, obs)
    critic_params = nets.critic.init(k_critic, obs, act)
    return TD3State(actor_params, critic_params, actor_params, critic_params,
                    nets.actor_opt.init(actor_params), nets.critic_opt.init(critic_params),
                    key, jnp.zeros((), jnp.int32),
                    {k: jnp.zeros((), jnp.float32) for k in actor_metrics})


# ============================================================================ losses
def critic_loss(critic_params, target_actor_params, target_critic_params, batch: Transition,
                key: jax.Array, nets: Nets, cfg: TD3Config) -> tuple[jax.Array, dict]:
    """Mean squared Bellman error of every critic against y = r + gamma * min_i Q'_i(s', a~)
    with a~ = clip(pi'(s') + clip(N(0, sigma), -c, c), -1, 1) (TD3 eq. 14-15)."""
    next_a = nets.actor.apply(target_actor_params, batch.next_obs)  # [B, action_dim]
    if cfg.target_noise > 0.0:
        eps = cfg.target_noise * jax.random.normal(key, next_a.shape)
        eps = jnp.clip(eps, -cfg.target_noise_clip, cfg.target_noise_clip)
        next_a = jnp.clip(next_a + eps, -1.0, 1.0)
    next_q = nets.critic.apply(target_critic_params, batch.next_obs, next_a).min(axis=0)  # [B]
    target = jax.lax.stop_gradient(td_target(batch.reward, batch.terminated, next_q, cfg.gamma))
    q = nets.critic.apply(critic_params, batch.obs, batch.action)  # [n_critics, B]
    loss = jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"train/critic_loss": loss, "train/q_mean": q.mean()}


def actor_loss(actor_params, critic_params, obs, nets: Nets) -> jax.Array:
    """-Q_1(s, pi(s)): the deterministic policy gradient through the first critic (DDPG eq. 6,
    TD3 Alg. 1); the critic is a constant here."""
    q = nets.critic.apply(jax.lax.stop_gradient(critic_params), obs,
                          nets.actor.apply(actor_params, obs))
    return -jnp.mean(q[0])


def td3_actor_objective(actor_params, critic_params, batch: Transition, nets: Nets,
                        cfg: TD3Config) -> tuple[jax.Array, dict]:
    """TD3's actor loss in the form the update takes: (loss, extra metrics)."""
    return actor_loss(actor_params, critic_params, batch.obs, nets), {}


def td3bc_actor_loss(actor_params, critic_params, batch: Transition, nets: Nets,
                     cfg: TD3BCConfig) -> tuple[jax.Array, dict]:
    """-lambda mean Q_1(s, pi(s)) + mean (pi(s) - a)^2 over the batch and action dims, with
    lambda = alpha / mean|Q_1(s, pi(s))| a constant (TD3+BC eq. 3 and its code)."""
    pi = nets.actor.apply(actor_params, batch.obs)  # [B, action_dim]
    q = nets.critic.apply(jax.lax.stop_gradient(critic_params), batch.obs, pi)[0]  # [B]
    lmbda = cfg.bc_alpha / jax.lax.stop_gradient(jnp.abs(q).mean())
    bc = jnp.mean((pi - batch.action) ** 2)
    return -lmbda * q.mean() + bc, {"bc_loss": bc}


# ============================================================================ update
def _actor_and_targets(state: TD3State, critic_params, batch: Transition, *, cfg: TD3Config,
                       nets: Nets, actor_loss_fn):
    (a_loss, extra), a_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
        state.actor_params, critic_params, batch, nets, cfg)
    a_updates, actor_opt_state = nets.actor_opt.update(a_grads, state.actor_opt_state)
    actor_params = optax.apply_updates(state.actor_params, a_updates)
    return (actor_params, actor_opt_state,
            polyak(state.target_actor_params, actor_params, cfg.tau),
            polyak(state.target_critic_params, critic_params, cfg.tau),
            {"actor_loss": a_loss, **extra})


def update(state: TD3State, batch: Transition, obs_stats: ObsStats | None, *, cfg: TD3Config,
           nets: Nets, actor_loss_fn=td3_actor_objective) -> tuple[TD3State, dict]:
    """One critic step; every ``policy_delay`` steps one actor step and both target updates.
    ``actor_loss_fn`` has the signature of :func:`td3_actor_objective` (TD3+BC passes
    :func:`td3bc_actor_loss`)."""
    key, k_noise = jax.random.split(state.key)
    batch = batch._replace(obs=normalize_obs(batch.obs, obs_stats),
                           next_obs=normalize_obs(batch.next_obs, obs_stats))
    (_, c_metrics), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic_params, state.target_actor_params, state.target_critic_params, batch,
        k_noise, nets, cfg)
    c_updates, critic_opt_state = nets.critic_opt.update(c_grads, state.critic_opt_state)
    critic_params = optax.apply_updates(state.critic_params, c_updates)

    updates = state.updates + 1
    actor_step = functools.partial(_actor_and_targets, state, critic_params, batch, cfg=cfg,
                                   nets=nets, actor_loss_fn=actor_loss_fn)
    if cfg.policy_delay == 1:
        out = actor_step()
    else:
        skip = (state.actor_params, state.actor_opt_state, state.target_actor_params,
                state.target_critic_params, state.actor_metrics)
        out = jax.lax.cond(updates % cfg.policy_delay == 0, actor_step, lambda: skip)
    actor_params, actor_opt_state, target_actor_params, target_critic_params, a_metrics = out
    new_state = TD3State(actor_params, critic_params, target_actor_params, target_critic_params,
                         actor_opt_state, critic_opt_state, key, updates, a_metrics)
    return new_state, {**c_metrics, **{f"train/{k}": v for k, v in a_metrics.items()}}


# ============================================================================ policy
def explore(actor_params, obs_stats: ObsStats | None, obs, key: jax.Array, step: jax.Array,
            noise: jax.Array, *, cfg: TD3Config, nets: Nets
            ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """clip(pi(s) + eps, -1, 1) with Gaussian or OU eps; ``noise`` is the OU state
    [action_dim] (zeroed by the driver at each reset). The key is folded with the env step so
    a resumed run draws the same noise. A deterministic policy has no log-probability: zeros."""
    eps, noise = exploration_noise(cfg.exploration_noise, noise, jax.random.fold_in(key, step),
                                   cfg.exploration_sigma, cfg.ou_theta, cfg.ou_dt)
    a = nets.actor.apply(actor_params, normalize_obs(obs, obs_stats))
    return jnp.clip(a + eps, -1.0, 1.0), noise, jnp.zeros(a.shape[:-1], a.dtype)


def act(actor_params, obs_stats: ObsStats | None, obs, *, nets: Nets) -> jax.Array:
    """Deterministic action pi(s) in [-1, 1]; obs may have any leading batch dims."""
    return nets.actor.apply(actor_params, normalize_obs(obs, obs_stats))


# ============================================================================ assembly
def make_td3(cfg: TD3Config, spec: EnvSpec) -> AgentFns:
    """Networks, optimisers and jitted functions for ``cfg`` (TD3 or DDPG) on an env described
    by ``spec`` (cached on the fields that shape the compiled code, see
    ``Config.compile_key``)."""
    return _make_td3(cfg.compile_key(), spec)


@functools.lru_cache(maxsize=32)
def _make_td3(cfg: TD3Config, spec: EnvSpec) -> AgentFns:
    nets = Nets(DeterministicActor(cfg.hidden_sizes, spec.action.dim, cfg.activation,
                                   cfg.network, spec.obs),
                QEnsemble(cfg.hidden_sizes, cfg.n_critics, cfg.activation, cfg.network,
                          obs_space=spec.obs),
                make_optimizer(cfg.actor_lr, cfg.max_grad_norm),
                make_optimizer(cfg.critic_lr, cfg.max_grad_norm))
    bc = isinstance(cfg, TD3BCConfig)
    return agent(init=functools.partial(init_state, nets, spec, actor_metrics=(
                     ("actor_loss", "bc_loss") if bc else ("actor_loss",))),
                 update=functools.partial(update, cfg=cfg, nets=nets, actor_loss_fn=(
                     td3bc_actor_loss if bc else td3_actor_objective)),
                 explore=functools.partial(explore, cfg=cfg, nets=nets),
                 act=functools.partial(act, nets=nets),
                 policy_params=lambda state: state.actor_params, nets=nets, spec=spec,
                 scan_updates=True)
