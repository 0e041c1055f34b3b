"""Implicit Q-Learning, IQL (Kostrikov, Nair & Levine, 2022), offline.

IQL never queries Q at actions outside the dataset. V(s) is fitted to an upper expectile of
Q(s, a) over the dataset's actions (eq. 5), Q to r + gamma V(s') (eq. 6), and the policy is
extracted by advantage-weighted regression: maximise exp(beta (Q(s, a) - V(s))) log pi(a|s)
on dataset actions (eq. 7). Each step updates V, then the policy, then Q, then the target Q,
in the order of the authors' code. Rewards are scaled by 1000 / (max - min episode return)
(``reward_scale=returns``, the paper's locomotion setting), recorded with the run. Trains on a
dataset (``--dataset``); its steps are gradient steps. Read top to bottom: config ->
networks -> state -> losses -> update -> policy -> make_iql.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tandem.config import Config, choice, log_uniform, param
from tandem.core.agent import AgentFns, agent
from tandem.core.nets import QEnsemble
from tandem.core.normalize import normalize_obs
from tandem.core.optim import gradient_step, make_optimizer, polyak
from tandem.core.policies import GaussianActor, ValueCritic
from tandem.core.spaces import EnvSpec, zeros
from tandem.core.types import ObsStats, Transition
from tandem.core.value_learning import bootstrap_q_loss as critic_loss
from tandem.core.value_learning import expectile_loss, expectile_value_loss as value_loss

__all__ = ["IQLConfig", "make_iql", "expectile_loss", "value_loss", "actor_loss",
           "critic_loss", "update"]  # V's and Q's losses live in core (CFPI uses them too)


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class IQLConfig(Config):
    """IQL hyperparameters: the paper's MuJoCo locomotion settings (App. B)."""

    algo = "iql"

    expectile: float = param(0.7, "expectile tau of V's fit to Q (eq. 5; 0.5 is the mean, "
                             "-> 1 the max over dataset actions)", gt=0.0, lt=1.0)
    beta: float = param(3.0, "inverse temperature of the advantage weights (eq. 7)", ge=0.0)
    max_weight: float = param(100.0, "clip of the advantage weights exp(beta A)", gt=0.0)
    gamma: float = param(0.99, "discount factor", ge=0.0, le=1.0)
    tau: float = param(0.005, "polyak coefficient of the target Q networks", gt=0.0, le=1.0)
    actor_lr: float = param(3e-4, "policy learning rate (Adam, cosine-decayed over "
                            "actor_decay_steps)", gt=0.0, le=1.0)
    actor_decay_steps: int = param(1_000_000, "gradient steps of the policy's cosine "
                                   "learning-rate decay (the paper's 1M; 0: constant)", ge=0)
    critic_lr: float = param(3e-4, "Q learning rate (Adam)", gt=0.0, le=1.0)
    value_lr: float = param(3e-4, "V learning rate (Adam)", gt=0.0, le=1.0)
    n_critics: int = param(2, "Q networks; V is fitted to their minimum", ge=1)
    batch_size: int = param(256, "transitions per gradient step", ge=1, compiled=False)
    hidden_sizes: tuple[int, ...] = param((256, 256), "hidden layer widths of all networks")
    activation: str = param("relu", "hidden activation", choices=("relu", "tanh", "elu", "gelu",
                                                                  "silu"))
    network: str = param("mlp", "network of the policy, Q and V", choices=("mlp", "simbav2"))
    max_grad_norm: float | None = param(None, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    normalize_obs: bool = param(False, "normalise observations by the dataset's mean and std "
                                "(IQL does not; saved with the policy)", compiled=False)
    reward_scale: str = param("returns", "returns: rewards x 1000 / (max - min episode return) "
                              "(the paper's locomotion setting); none: raw rewards",
                              choices=("returns", "none"), compiled=False)

    settings_defaults: ClassVar[dict[str, Any]] = {"log_every": 1000, "eval_every": 5000,
                                                   "checkpoint_every": 10_000}
    search_space: ClassVar[dict] = {"expectile": choice(0.5, 0.7, 0.9),
                                    "beta": choice(1.0, 3.0, 10.0),
                                    "actor_lr": log_uniform(1e-4, 1e-3)}


# ============================================================================ networks
class Nets(NamedTuple):
    actor: GaussianActor
    critic: QEnsemble
    value: ValueCritic
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    value_opt: optax.GradientTransformation


# ============================================================================ state
class IQLState(NamedTuple):
    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    value_params: Any
    actor_opt_state: Any
    critic_opt_state: Any
    value_opt_state: Any
    updates: jax.Array  # [] int32, gradient steps taken


def init_state(nets: Nets, spec: EnvSpec, key: jax.Array) -> IQLState:
    k_actor, k_critic, k_value = jax.random.split(key, 3)
    obs = zeros(spec.obs, (1,))
    act = jnp.zeros((1, spec.action.dim), jnp.float32)
    actor = nets.actor.init(k_actor, obs)
    critic = nets.critic.init(k_critic, obs, act)
    value = nets.value.init(k_value, obs)
    return IQLState(actor, critic, critic, value, nets.actor_opt.init(actor),
                    nets.critic_opt.init(critic), nets.value_opt.init(value),
                    jnp.zeros((), jnp.int32))


# ============================================================================ losses
def actor_loss(actor_params, target_critic_params, value_params, batch: Transition,
               nets: Nets, cfg: IQLConfig) -> tuple[jax.Array, dict]:
    """-mean min(exp(beta (Q(s, a) - V(s))), max_weight) log pi(a|s) over dataset (s, a)."""
    q = nets.critic.apply(target_critic_params, batch.obs, batch.action).min(axis=0)
    adv = q - nets.value.apply(value_params, batch.obs)
    weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(cfg.beta * adv), cfg.max_weight))
    logp = nets.actor.apply(actor_params, batch.obs).log_prob(batch.action)  # [B]
    loss = -(weights * logp).mean()
    return loss, {"train/actor_loss": loss, "train/adv_weight_mean": weights.mean()}


# ============================================================================ update
def update(state: IQLState, batch: Transition, obs_stats: ObsStats | None, *, cfg: IQLConfig,
           nets: Nets) -> tuple[IQLState, dict]:
    """V, then the policy (with the new V), then Q (bootstrapping on the new V), then the
    target Q."""
    batch = batch._replace(obs=normalize_obs(batch.obs, obs_stats),
                           next_obs=normalize_obs(batch.next_obs, obs_stats))
    value, value_opt, v_m = gradient_step(state.value_params, state.value_opt_state, nets.value_opt,
                                  value_loss, state.target_critic_params, batch, nets, cfg)
    actor, actor_opt, a_m = gradient_step(state.actor_params, state.actor_opt_state, nets.actor_opt,
                                  actor_loss, state.target_critic_params, value, batch, nets,
                                  cfg)
    critic, critic_opt, c_m = gradient_step(state.critic_params, state.critic_opt_state,
                                    nets.critic_opt, critic_loss, value, batch, nets, cfg)
    target = polyak(state.target_critic_params, critic, cfg.tau)
    new = IQLState(actor, critic, target, value, actor_opt, critic_opt, value_opt,
                   state.updates + 1)
    return new, {**v_m, **a_m, **c_m}


# ============================================================================ policy
def act(actor_params, obs_stats: ObsStats | None, obs, *, nets: Nets) -> jax.Array:
    """The policy's mean in [-1, 1]; obs may have any leading batch dims."""
    return nets.actor.apply(actor_params, normalize_obs(obs, obs_stats)).loc


def explore(actor_params, obs_stats: ObsStats | None, obs, key: jax.Array, step: jax.Array,
            carry: jax.Array, *, nets: Nets) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A sample of the Gaussian policy, clipped to [-1, 1], and its log-density."""
    dist = nets.actor.apply(actor_params, normalize_obs(obs, obs_stats))
    a = dist.sample(jax.random.fold_in(key, step))
    return jnp.clip(a, -1.0, 1.0), carry, dist.log_prob(a)


# ============================================================================ assembly
def make_iql(cfg: IQLConfig, spec: EnvSpec) -> AgentFns:
    return _make_iql(cfg.compile_key(), spec)


@functools.lru_cache(maxsize=16)
def _make_iql(cfg: IQLConfig, spec: EnvSpec) -> AgentFns:
    actor_lr = (optax.cosine_decay_schedule(cfg.actor_lr, cfg.actor_decay_steps)
                if cfg.actor_decay_steps else cfg.actor_lr)
    nets = Nets(GaussianActor(cfg.hidden_sizes, spec.action.dim, cfg.activation, cfg.network,
                              spec.obs),
                QEnsemble(cfg.hidden_sizes, cfg.n_critics, cfg.activation, cfg.network,
                          obs_space=spec.obs),
                ValueCritic(cfg.hidden_sizes, cfg.activation, spec.obs, orthogonal=False),
                make_optimizer(actor_lr, cfg.max_grad_norm),
                make_optimizer(cfg.critic_lr, cfg.max_grad_norm),
                make_optimizer(cfg.value_lr, cfg.max_grad_norm))
    return agent(init=functools.partial(init_state, nets, spec),
                 update=functools.partial(update, cfg=cfg, nets=nets),
                 explore=functools.partial(explore, nets=nets),
                 act=functools.partial(act, nets=nets),
                 policy_params=lambda state: state.actor_params, nets=nets, spec=spec,
                 scan_updates=True)
