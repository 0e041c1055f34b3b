"""IMPALA (Espeholt et al., 2018): actors act with a lagging copy of the policy, a learner
corrects for the lag with V-trace.

Read top to bottom: config -> state -> loss -> update -> policy -> make_impala. The actor and
critic are the on-policy modules of ``tandem.core.policies`` that PPO uses too (separate
MLPs; Gaussian, Categorical or MultiCategorical heads).
The distributed loop (Ray rollout workers, parameter broadcast, lag accounting, worker
restarts) lives in ``tandem.distributed.impala``; this file only holds pure functions.

The learner's batch is ``rollouts_per_update`` worker trajectories side by side: [T, B] with
B = rollouts_per_update x envs_per_worker. Each carries the behaviour policy's log-probability
of its actions, so ``log pi - log mu`` is known exactly even when the acting parameters are
several updates old (the measured policy lag is logged as ``rollout/policy_lag``).
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
from tandem.core.distributions import Normal
from tandem.core.optim import annealable_optimizer, with_learning_rate
from tandem.core.policies import PolicyHead, ValueCritic
from tandem.core.returns import vtrace
from tandem.core.spaces import EnvSpec, zeros
from tandem.core.types import Trajectory
from tandem.errors import ConfigError


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class IMPALAConfig(Config):
    """IMPALA hyperparameters. V-trace is the paper's (rho_bar = c_bar = 1, lambda 1,
    RMSprop). The rest are A2C's small-control-task values (5-step unrolls, 8 envs in all,
    RMSprop 7e-4 held constant, gradient norm 0.5, no entropy bonus): with no policy lag
    V-trace is A2C's n-step target, and on CartPole these are the settings measured to end at
    500 (docs/distributed.md). The paper's Atari ones: unroll 20, batch 32 trajectories,
    gradient norm 40, entropy 0.01, learning rate annealed to 0."""

    algo = "impala"

    envs_per_worker: int = param(4, "Gymnasium envs stepped together in each worker "
                                 "(one batched policy call per step)", ge=1)
    n_steps: int = param(5, "unroll length: env steps per env in one worker trajectory",
                         ge=1)
    rollouts_per_update: int = param(2, "worker trajectories in one learner batch", ge=1,
                                     compiled=False)
    gamma: float = param(0.99, "discount factor", ge=0.0, le=1.0)
    vtrace_lambda: float = param(1.0, "lambda of V-trace's traces c_t (1: the paper's)",
                                 ge=0.0, le=1.0)
    rho_bar: float = param(1.0, "truncation of the importance weights rho_t (the fixed point "
                           "is the value of a policy between mu and pi; >= 1: pi's)", gt=0.0)
    c_bar: float = param(1.0, "truncation of the trace weights c_t (speed of convergence)",
                         gt=0.0)
    vf_coef: float = param(0.5, "weight of the value loss 0.5 * (V - v_s)^2", ge=0.0)
    ent_coef: float = param(0.0, "weight of the entropy bonus", ge=0.0)
    learning_rate: float = param(7e-4, "learning rate", gt=0.0, le=1.0)
    anneal_lr: bool = param(False, "decay the learning rate linearly to 0 over the run's env "
                            "steps (IMPALA's reference implementation does; on CartPole it "
                            "freezes a policy caught in a dip, docs/distributed.md)")
    optimizer: str = param("rmsprop", "optimiser (IMPALA: RMSprop)",
                           choices=("adam", "rmsprop"))
    optimizer_eps: float = param(1e-5, "epsilon of Adam / RMSprop (outside the square root)",
                                 gt=0.0)
    rmsprop_decay: float = param(0.99, "RMSprop decay of the squared-gradient average",
                                 gt=0.0, lt=1.0)
    max_grad_norm: float | None = param(0.5, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    hidden_sizes: tuple[int, ...] = param((64, 64), "hidden widths of the actor and of the "
                                          "(separate) critic")
    activation: str = param("tanh", "hidden activation", choices=("relu", "tanh", "elu",
                                                                  "gelu", "silu"))
    log_std_init: float = param(0.0, "initial log std of Gaussian actions (state-independent)")

    # IMPALA always has rollout workers (--workers); logs and checkpoints fall at updates
    settings_defaults: ClassVar[dict] = {"workers": 2, "log_every": 10_000,
                                         "checkpoint_every": 100_000}

    search_space: ClassVar[dict] = {
        "learning_rate": log_uniform(1e-5, 3e-3),
        "n_steps": choice(10, 20, 50),
        "gamma": choice(0.95, 0.98, 0.99, 0.995),
        "ent_coef": log_uniform(1e-5, 0.05),
        "vf_coef": choice(0.25, 0.5, 1.0),
        "max_grad_norm": choice(0.5, 5.0, 40.0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.settings.workers < 1:
            raise ConfigError(f"IMPALAConfig.workers={self.settings.workers} is out of range: "
                              "IMPALA needs at least 1 rollout worker")


# ============================================================================ state
class IMPALAState(NamedTuple):
    params: Any         # {"actor": ..., "critic": ...}
    opt_state: Any
    updates: jax.Array  # [] int32 learner updates so far (the policy version)


# ============================================================================ loss
def impala_loss(params, nets: "Nets", cfg: IMPALAConfig, tr: Trajectory
                ) -> tuple[jax.Array, dict]:
    """V-trace actor-critic loss (IMPALA, section 4.2): policy gradient with V-trace
    advantages, value regression onto v_s, entropy bonus."""
    ro = tr.rollout
    dist = nets.actor.apply(params["actor"], ro.obs)
    logp = dist.log_prob(ro.action)                                   # [T, B]
    values = nets.critic.apply(params["critic"], jax.tree_util.tree_map(
        lambda o, last: jnp.concatenate([o, last[None]]), ro.obs, ro.last_obs))  # [T + 1, B]
    final_values = nets.critic.apply(params["critic"], ro.final_obs)   # [T, B]
    next_values = jnp.where(ro.done > 0, final_values, values[1:])
    log_rho = jax.lax.stop_gradient(logp) - tr.behaviour_logp
    vs, pg_adv = vtrace(ro.reward, jax.lax.stop_gradient(values[:-1]),
                        jax.lax.stop_gradient(next_values), ro.terminated, ro.done, log_rho,
                        cfg.gamma, cfg.vtrace_lambda, cfg.rho_bar, cfg.c_bar)
    pg_loss = -jnp.mean(logp * pg_adv)
    v_loss = 0.5 * jnp.mean((values[:-1] - vs) ** 2)
    entropy = jnp.mean(dist.entropy())
    loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
    rho = jnp.exp(log_rho)
    return loss, {"train/policy_loss": pg_loss, "train/value_loss": v_loss,
                  "train/entropy": entropy, "train/rho_mean": jnp.mean(rho),
                  "train/rho_clipped_fraction": jnp.mean(rho > cfg.rho_bar),
                  "train/vs_mean": jnp.mean(vs)}


# ============================================================================ update
class Nets(NamedTuple):
    actor: PolicyHead
    critic: ValueCritic
    tx: optax.GradientTransformation


def make_nets(cfg: IMPALAConfig, spec: EnvSpec) -> Nets:
    return Nets(PolicyHead(cfg.hidden_sizes, spec.action, cfg.activation, cfg.log_std_init,
                           spec.obs),
                ValueCritic(cfg.hidden_sizes, cfg.activation, spec.obs),
                annealable_optimizer(cfg))


def update(state: IMPALAState, tr: Trajectory, lr_frac: jax.Array, nets: Nets,
           cfg: IMPALAConfig) -> tuple[IMPALAState, dict]:
    """One gradient step on one batch of trajectories (IMPALA takes exactly one).

    ``lr_frac`` scales the learning rate (the driver passes 1 - progress when anneal_lr)."""
    grads, metrics = jax.grad(impala_loss, has_aux=True)(state.params, nets, cfg, tr)
    lr = cfg.learning_rate * (lr_frac if cfg.anneal_lr else 1.0)
    opt_state = with_learning_rate(state.opt_state, lr)
    updates, opt_state = nets.tx.update(grads, opt_state, state.params)
    metrics["train/grad_norm"] = optax.tree.norm(grads)
    metrics["train/learning_rate"] = jnp.asarray(lr, jnp.float32)
    return IMPALAState(optax.apply_updates(state.params, updates), opt_state,
                       state.updates + 1), metrics


# ============================================================================ policy
def explore(params, obs_stats, obs, key: jax.Array, step: jax.Array, carry, nets: Nets
            ) -> tuple[jax.Array, Any, jax.Array]:
    """Behaviour action for obs [N, *obs] and its log-probability [N] (what V-trace needs
    from the actor); raw Gaussian samples for Box actions, as in PPO. (IMPALA does not
    normalise observations; ``obs_stats`` is always None.)"""
    dist = nets.actor.apply(params, obs)
    a = dist.sample(jax.random.fold_in(key, step))
    return a, carry, dist.log_prob(a)


def act(params, obs_stats, obs, nets: Nets) -> jax.Array:
    """Deterministic action: the clipped Gaussian mean, or the most likely discrete action."""
    dist = nets.actor.apply(params, obs)
    if isinstance(dist, Normal):
        return jnp.clip(dist.loc, -1.0, 1.0)
    return dist.mode()


# ============================================================================ assembly
def init_state(nets: Nets, spec: EnvSpec, key: jax.Array) -> IMPALAState:
    k_actor, k_critic = jax.random.split(key)
    dummy = zeros(spec.obs, (1,))
    params = {"actor": nets.actor.init(k_actor, dummy),
              "critic": nets.critic.init(k_critic, dummy)}
    return IMPALAState(params, nets.tx.init(params), jnp.zeros((), jnp.int32))


def make_impala(cfg: IMPALAConfig, spec: EnvSpec) -> AgentFns:
    """IMPALA's jitted functions for ``cfg`` on an env described by ``spec``, cached: configs
    that differ only in driver fields (workers, Ray, logging) share one compilation."""
    return _make_impala(cfg.compile_key(), spec)


@functools.lru_cache(maxsize=16)
def _make_impala(cfg: IMPALAConfig, spec: EnvSpec) -> AgentFns:
    nets = make_nets(cfg, spec)
    return agent(init=functools.partial(init_state, nets, spec),
                 update=functools.partial(update, nets=nets, cfg=cfg),
                 explore=functools.partial(explore, nets=nets),
                 act=functools.partial(act, nets=nets),
                 policy_params=lambda state: state.params["actor"], nets=nets, spec=spec,
                 scan_updates=False)
