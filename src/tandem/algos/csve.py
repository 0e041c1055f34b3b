"""Conservative State Value Estimation, CSVE (Chen et al., 2023), offline.

CSVE makes V, not Q, conservative, and does it on the states a policy would reach just off
the data. A dynamics ensemble (``tandem.core.dynamics``) is fitted to the dataset first
(``model_steps``, counted in ``--steps``) and then frozen. Each later step:

1. penalising states: s_hat' ~ model(s, pi(s)) from dataset states, with one random member
   per sample; the penalty is the gap E[V(s_hat')] - E[V(s')] to the dataset's next states,
   weighted by alpha, which a Lagrange step keeps where
   ``conservative_weight * gap`` is near ``alpha_threshold`` (as the authors' code);
2. V(s) to min_i Q'_i(s, a), a ~ pi(s), plus alpha * conservative_weight * gap (the
   conservative policy evaluation of V^pi, eq. 4);
3. Q(s, a) to r + gamma V(s') on dataset transitions (Q never sees an action off the data);
4. the actor: advantage-weighted regression on dataset actions, exp(beta (Q'(s, a) - V(s)))
   log pi(a|s), plus the state-exploration term: lambda E[r_hat + gamma V(s_hat')] with
   (s_hat', r_hat) ~ model(s, a), a ~ pi(s) reparameterised, the gradient flowing through the
   model into the action (Sec. 5). The term is divided by its own mean magnitude (held
   fixed), so that ``exploration_weight`` does not depend on the reward scale;
5. the target Q by Polyak averaging.

Read top to bottom: config -> networks -> state -> losses -> update -> make_csve.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tandem.algos import iql
from tandem.config import Config, choice, log_uniform, param
from tandem.core import dynamics
from tandem.core.agent import AgentFns, agent
from tandem.core.nets import QEnsemble
from tandem.core.normalize import normalize_obs
from tandem.core.optim import gradient_step, make_optimizer, polyak
from tandem.core.policies import GaussianActor, ValueCritic
from tandem.core.spaces import EnvSpec, zeros
from tandem.core.types import ObsStats, Transition
from tandem.core.value_learning import bootstrap_q_loss as critic_loss
from tandem.errors import ConfigError


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class CSVEConfig(Config):
    """CSVE hyperparameters: the defaults of the authors' d3rlpy-based code (dynamics: 5
    probabilistic members of 4 x 200 swish, Adam 1e-3 with weight decay 2.5e-5; critic:
    conservative weight 5, Lagrange threshold 10, initial alpha 10). The authors fit the
    model for 300k steps on a GPU; here ``model_steps`` is part of ``--steps``."""

    algo = "csve"

    model_steps: int = param(20_000, "gradient steps fitting the dynamics ensemble before the "
                             "actor-critic starts (then frozen); part of --steps", ge=1)
    n_models: int = param(5, "members of the dynamics ensemble", ge=1)
    model_hidden: tuple[int, ...] = param((200, 200, 200, 200), "hidden widths of each member")
    model_lr: float = param(1e-3, "dynamics learning rate (AdamW)", gt=0.0, le=1.0)
    model_weight_decay: float = param(2.5e-5, "dynamics weight decay", ge=0.0)
    conservative_weight: float = param(5.0, "c: weight of the state-value gap "
                                       "E[V(model states)] - E[V(data states)] in V's loss",
                                       ge=0.0)
    alpha_threshold: float = param(10.0, "Lagrange target of c * gap: alpha grows while the "
                                   "gap is above it")
    initial_alpha: float = param(10.0, "initial Lagrange multiplier alpha", gt=0.0)
    alpha_lr: float = param(1e-4, "learning rate of log alpha (0: alpha stays fixed)", ge=0.0,
                            le=1.0)
    exploration_weight: float = param(0.1, "lambda: weight of the state-exploration term "
                                      "E[r_hat + gamma V(model next state)] in the actor's "
                                      "loss, relative to its magnitude", ge=0.0)
    beta: float = param(3.0, "inverse temperature of the advantage weights", ge=0.0)
    max_weight: float = param(100.0, "clip of the advantage weights exp(beta A)", gt=0.0)
    gamma: float = param(0.99, "discount factor", ge=0.0, le=1.0)
    tau: float = param(0.005, "polyak coefficient of the target Q networks", gt=0.0, le=1.0)
    actor_lr: float = param(3e-4, "policy learning rate (Adam, cosine-decayed over "
                            "actor_decay_steps)", gt=0.0, le=1.0)
    actor_decay_steps: int = param(1_000_000, "gradient steps of the policy's cosine "
                                   "learning-rate decay (0: constant)", ge=0)
    critic_lr: float = param(3e-4, "Q learning rate (Adam)", gt=0.0, le=1.0)
    value_lr: float = param(3e-4, "V learning rate (Adam)", gt=0.0, le=1.0)
    n_critics: int = param(2, "Q networks; V and the advantages use their minimum", ge=1)
    batch_size: int = param(256, "transitions per gradient step", ge=1, compiled=False)
    hidden_sizes: tuple[int, ...] = param((256, 256), "hidden layer widths of policy, Q and V")
    activation: str = param("relu", "hidden activation", choices=("relu", "tanh", "elu", "gelu",
                                                                  "silu"))
    max_grad_norm: float | None = param(None, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    normalize_obs: bool = param(True, "normalise the networks' observations by the dataset's "
                                "mean and std (saved with the policy); the dynamics model "
                                "normalises its own inputs", compiled=False)

    settings_defaults: ClassVar[dict[str, Any]] = {"log_every": 1000, "eval_every": 5000,
                                                   "checkpoint_every": 10_000}
    stage_steps_field: ClassVar[str | None] = "model_steps"
    search_space: ClassVar[dict] = {"exploration_weight": choice(0.0, 0.1, 0.3, 1.0),
                                    "beta": choice(1.0, 3.0, 10.0),
                                    "alpha_threshold": choice(-10.0, 0.0, 10.0),
                                    "actor_lr": log_uniform(1e-4, 1e-3)}


# ============================================================================ networks
class Nets(NamedTuple):
    actor: GaussianActor
    critic: QEnsemble
    value: ValueCritic
    model: dynamics.DynamicsEnsemble
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    value_opt: optax.GradientTransformation
    alpha_opt: optax.GradientTransformation
    model_opt: optax.GradientTransformation


# ============================================================================ state
class CSVEState(NamedTuple):
    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    value_params: Any
    log_alpha: jax.Array       # [] log of the Lagrange multiplier
    model_params: Any
    model_stats: dynamics.ModelStats
    actor_opt_state: Any
    critic_opt_state: Any
    value_opt_state: Any
    alpha_opt_state: Any
    model_opt_state: Any
    key: jax.Array
    updates: jax.Array         # [] int32, gradient steps taken (the model's included)


def init_state(cfg: CSVEConfig, nets: Nets, spec: EnvSpec, key: jax.Array) -> CSVEState:
    k_actor, k_critic, k_value, k_model, k_run = jax.random.split(key, 5)
    obs = zeros(spec.obs, (1,))
    act = jnp.zeros((1, spec.action.dim), jnp.float32)
    obs_dim = obs.shape[-1]
    actor = nets.actor.init(k_actor, obs)
    critic = nets.critic.init(k_critic, obs, act)
    value = nets.value.init(k_value, obs)
    model = nets.model.init(k_model, jnp.zeros((1, obs_dim + spec.action.dim)))
    log_alpha = jnp.asarray(jnp.log(cfg.initial_alpha), jnp.float32)
    return CSVEState(actor, critic, critic, value, log_alpha, model,
                     dynamics.identity_stats(obs_dim, spec.action.dim),
                     nets.actor_opt.init(actor), nets.critic_opt.init(critic),
                     nets.value_opt.init(value), nets.alpha_opt.init(log_alpha),
                     nets.model_opt.init(model), k_run, jnp.zeros((), jnp.int32))


def offline_init(state: CSVEState, data: Transition) -> CSVEState:
    """The dataset's moments normalise the dynamics model's inputs and targets."""
    return state._replace(model_stats=dynamics.model_stats(
        jnp.asarray(data.obs), jnp.asarray(data.action), jnp.asarray(data.next_obs),
        jnp.asarray(data.reward)))


# ============================================================================ losses
def _model_states(state: CSVEState, nets: Nets, obs, action, key) -> tuple[jax.Array, jax.Array]:
    """(next state, reward) from the frozen model, states kept within 10 dataset standard
    deviations of the mean (a diverging member cannot blow V up)."""
    s, r = dynamics.predict(jax.lax.stop_gradient(state.model_params), nets.model,
                            state.model_stats, obs, action, key)
    obs_dim = obs.shape[-1]
    mean, std = state.model_stats.in_mean[:obs_dim], state.model_stats.in_std[:obs_dim]
    return jnp.clip(s, mean - 10.0 * std, mean + 10.0 * std), r


def state_value_gap(value_params, ood_obs, batch: Transition, nets: Nets) -> jax.Array:
    """E[V(s_hat')] - E[V(s')]: V on the model's states minus V on the dataset's next states
    (both normalised as the networks see them)."""
    v = functools.partial(nets.value.apply, value_params)
    return v(ood_obs).mean() - v(batch.next_obs).mean()


def alpha_loss(log_alpha, gap, cfg: CSVEConfig) -> tuple[jax.Array, dict]:
    """-alpha (c gap - threshold): alpha rises while c gap exceeds the threshold."""
    alpha = jnp.clip(jnp.exp(log_alpha), 0.0, 1e6)
    loss = -alpha * (cfg.conservative_weight * jax.lax.stop_gradient(gap) - cfg.alpha_threshold)
    return loss, {"train/alpha_loss": loss}


def value_loss(value_params, target_critic_params, actor_params, alpha, ood_obs,
               batch: Transition, key, nets: Nets, cfg: CSVEConfig) -> tuple[jax.Array, dict]:
    """(min_i Q'_i(s, a) - V(s))^2, a ~ pi(s), plus alpha c (E[V(s_hat')] - E[V(s')])."""
    a = jnp.clip(nets.actor.apply(actor_params, batch.obs).sample(key), -1.0, 1.0)
    q = nets.critic.apply(target_critic_params, batch.obs, a).min(axis=0)
    v = nets.value.apply(value_params, batch.obs)
    fit = jnp.mean((jax.lax.stop_gradient(q) - v) ** 2)
    gap = state_value_gap(value_params, ood_obs, batch, nets)
    loss = fit + jax.lax.stop_gradient(alpha) * cfg.conservative_weight * gap
    return loss, {"train/value_loss": fit, "train/v_mean": v.mean(), "train/state_gap": gap}


def actor_loss(actor_params, target_critic_params, value_params, state: CSVEState,
               batch: Transition, raw_obs, key, nets: Nets, cfg: CSVEConfig,
               stats) -> tuple[jax.Array, dict]:
    """IQL's advantage-weighted regression on dataset (s, a), minus lambda times the
    state-exploration term E[r_hat + gamma V(s_hat')] over its fixed mean magnitude; the
    model steps from ``raw_obs`` (``batch`` is normalised)."""
    awr, metrics = iql.actor_loss(actor_params, target_critic_params, value_params, batch,
                                  nets, cfg)
    k_pi, k_model = jax.random.split(key)
    a = jnp.clip(nets.actor.apply(actor_params, batch.obs).sample(k_pi), -1.0, 1.0)
    next_s, r = _model_states(state, nets, raw_obs, a, k_model)
    ret = r + cfg.gamma * nets.value.apply(value_params, normalize_obs(next_s, stats))
    scale = jax.lax.stop_gradient(jnp.abs(ret).mean()) + 1e-6
    loss = awr - cfg.exploration_weight * ret.mean() / scale
    return loss, {**metrics, "train/actor_loss": loss, "train/model_return": ret.mean()}


def _model_step(state: CSVEState, batch: Transition, nets: Nets):
    params, opt_state, metrics = gradient_step(
        state.model_params, state.model_opt_state, nets.model_opt, dynamics.model_loss,
        nets.model, state.model_stats, batch.obs, batch.action, batch.next_obs, batch.reward)
    return state._replace(model_params=params, model_opt_state=opt_state), metrics


# ============================================================================ update
METRICS = ("train/model_nll", "train/model_mse", "train/alpha_loss", "train/alpha",
           "train/state_gap", "train/value_loss", "train/v_mean", "train/critic_loss",
           "train/q_mean", "train/actor_loss", "train/adv_weight_mean", "train/model_return")


def update(state: CSVEState, batch: Transition, obs_stats: ObsStats | None, *, cfg: CSVEConfig,
           nets: Nets) -> tuple[CSVEState, dict]:
    """The first ``model_steps`` steps fit the dynamics ensemble; every later one is CSVE's
    alpha, V, Q, policy and target-Q update, the model frozen. ``batch`` stays in raw units
    (the model's); the networks see ``normalize_obs`` of it."""
    def blank() -> dict:
        return {k: jnp.zeros((), jnp.float32) for k in METRICS}

    def fit_model():
        new, m = _model_step(state, batch, nets)
        return new._replace(updates=state.updates + 1), {**blank(), **m}

    def actor_critic():
        key = jax.random.fold_in(state.key, state.updates)
        k_model, k_v, k_actor = jax.random.split(key, 3)
        norm = batch._replace(obs=normalize_obs(batch.obs, obs_stats),
                              next_obs=normalize_obs(batch.next_obs, obs_stats))
        # 1. the penalising states: one model step from dataset states under pi's mean
        pi_a = nets.actor.apply(state.actor_params, norm.obs).loc
        ood_obs, _ = _model_states(state, nets, batch.obs, pi_a, k_model)
        ood_obs = jax.lax.stop_gradient(normalize_obs(ood_obs, obs_stats))
        gap = state_value_gap(state.value_params, ood_obs, norm, nets)
        log_alpha, alpha_opt, al_m = gradient_step(state.log_alpha, state.alpha_opt_state,
                                                   nets.alpha_opt, alpha_loss, gap, cfg)
        alpha = jnp.clip(jnp.exp(log_alpha), 0.0, 1e6)
        # 2. V, conservative on the model's states
        value, value_opt, v_m = gradient_step(
            state.value_params, state.value_opt_state, nets.value_opt, value_loss,
            state.target_critic_params, state.actor_params, alpha, ood_obs, norm, k_v, nets,
            cfg)
        # 3. Q on dataset transitions, bootstrapping on the new V
        critic, critic_opt, c_m = gradient_step(state.critic_params, state.critic_opt_state,
                                                nets.critic_opt, critic_loss, value, norm,
                                                nets, cfg)
        # 4. the policy: AWR plus state exploration through the model
        actor, actor_opt, a_m = gradient_step(
            state.actor_params, state.actor_opt_state, nets.actor_opt, actor_loss,
            state.target_critic_params, value, state, norm, batch.obs, k_actor, nets, cfg,
            obs_stats)
        new = state._replace(
            actor_params=actor, critic_params=critic, value_params=value, log_alpha=log_alpha,
            target_critic_params=polyak(state.target_critic_params, critic, cfg.tau),
            actor_opt_state=actor_opt, critic_opt_state=critic_opt, value_opt_state=value_opt,
            alpha_opt_state=alpha_opt, updates=state.updates + 1)
        return new, {**blank(), **al_m, **v_m, **c_m, **a_m, "train/alpha": alpha}

    return jax.lax.cond(state.updates < cfg.model_steps, fit_model, actor_critic)


# ============================================================================ assembly
def make_csve(cfg: CSVEConfig, spec: EnvSpec) -> AgentFns:
    return _make_csve(cfg.compile_key(), spec)


@functools.lru_cache(maxsize=16)
def _make_csve(cfg: CSVEConfig, spec: EnvSpec) -> AgentFns:
    if spec.obs.kind != "box" or len(spec.obs.shape) != 1:
        raise ConfigError("CSVE's dynamics model predicts flat (Box) state vectors")
    obs_dim = spec.obs.shape[0]
    actor_lr = (optax.cosine_decay_schedule(cfg.actor_lr, cfg.actor_decay_steps)
                if cfg.actor_decay_steps else cfg.actor_lr)
    nets = Nets(GaussianActor(cfg.hidden_sizes, spec.action.dim, cfg.activation, "mlp",
                              spec.obs),
                QEnsemble(cfg.hidden_sizes, cfg.n_critics, cfg.activation, obs_space=spec.obs),
                ValueCritic(cfg.hidden_sizes, cfg.activation, spec.obs, orthogonal=False),
                dynamics.DynamicsEnsemble(cfg.model_hidden, obs_dim + 1, cfg.n_models),
                make_optimizer(actor_lr, cfg.max_grad_norm),
                make_optimizer(cfg.critic_lr, cfg.max_grad_norm),
                make_optimizer(cfg.value_lr, cfg.max_grad_norm),
                optax.adam(cfg.alpha_lr),
                optax.adamw(cfg.model_lr, weight_decay=cfg.model_weight_decay))
    return agent(init=functools.partial(init_state, cfg, nets, spec),
                 update=functools.partial(update, cfg=cfg, nets=nets),
                 explore=functools.partial(iql.explore, nets=nets),
                 act=functools.partial(iql.act, nets=nets),
                 policy_params=lambda state: state.actor_params, nets=nets, spec=spec,
                 scan_updates=True, offline_init=offline_init)
