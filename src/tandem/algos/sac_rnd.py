"""SAC-RND (Nikulin, Kurenkov, Tarasov & Kolesnikov, 2023), offline: SAC penalised by random
network distillation.

A random prior network f_bar(s, a) and a predictor f(s, a) are fitted to each other on the
dataset's (state, action) pairs first (``rnd_pretrain_steps``, counted in ``--steps``), then
frozen. Their error, divided by the running std of the RND loss, is small on the data and
grows away from it: SAC's actor loss adds beta times that bonus at its own actions, and the
critic's soft target subtracts it at the next action (Sec. 4; Alg. 1). What makes the error
discriminate actions is how the action enters the networks (Sec. 5): as in the authors'
code, the action is the networks' input and the state conditions them, the predictor
through a bilinear first layer and the prior through FiLM on its last hidden layer
(``rnd_conditioning=concat`` is the naive variant the paper shows failing). The RND sees
states and actions normalised by the dataset's moments; the critics have LayerNorm.

This is SAC's update (``tandem.algos.sac.update``) with SAC-RND's two losses passed in, not a
copy of it. Read top to bottom: config -> RND networks -> state -> losses -> update ->
make_sac_rnd.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tandem.algos import sac
from tandem.config import choice, log_uniform, param
from tandem.core.agent import AgentFns, agent
from tandem.core.nets import fan_in_uniform
from tandem.core.returns import td_target
from tandem.core.spaces import EnvSpec, zeros
from tandem.core.types import ObsStats, Transition
from tandem.errors import ConfigError


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class SACRNDConfig(sac.SACConfig):
    """SAC-RND hyperparameters: the authors' locomotion settings (3 x 256 networks, LayerNorm
    critics, batch 1024, Adam 1e-3, RND embedding 32, 1,000 RND pretraining steps). beta is
    per dataset in the paper; 1.0 is the authors' default."""

    algo = "sac-rnd"

    beta: float = param(1.0, "weight of the RND penalty in the actor loss and the critic target "
                        "(per dataset in the paper)", ge=0.0)
    rnd_pretrain_steps: int = param(1000, "gradient steps fitting the RND predictor before SAC "
                                    "starts (then frozen); part of --steps", ge=1)
    rnd_lr: float = param(3e-4, "RND predictor learning rate (Adam)", gt=0.0, le=1.0)
    rnd_hidden: int = param(256, "width of the RND networks' 3 hidden layers", ge=1)
    rnd_embedding: int = param(32, "output width of the RND networks", ge=1)
    rnd_conditioning: str = param("film", "film: bilinear predictor, FiLM prior (the paper's); "
                                  "concat: both on [a, s] (the naive variant)",
                                  choices=("film", "concat"))
    hidden_sizes: tuple[int, ...] = param((256, 256, 256), "hidden layer widths of actor and "
                                          "critics")
    critic_layer_norm: bool = param(True, "layer normalisation in the critics (SAC-RND: on)")
    batch_size: int = param(1024, "transitions per gradient step", ge=1, compiled=False)
    actor_lr: float = param(1e-3, "actor learning rate (Adam)", gt=0.0, le=1.0)
    critic_lr: float = param(1e-3, "critic learning rate (Adam)", gt=0.0, le=1.0)
    alpha_lr: float = param(1e-3, "temperature learning rate (Adam)", gt=0.0, le=1.0)

    settings_defaults: ClassVar[dict[str, Any]] = {"eval_every": 5000}
    run_folder_defaults: ClassVar[dict] = {}
    stage_steps_field: ClassVar[str | None] = "rnd_pretrain_steps"
    search_space: ClassVar[dict] = {"beta": choice(0.5, 1.0, 3.0, 5.0, 10.0),
                                    "actor_lr": log_uniform(1e-4, 1e-3)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.normalize_obs:
            raise ConfigError("SACRNDConfig.normalize_obs: SAC-RND's actor and critics see raw "
                              "states (its RND normalises its own inputs); leave it False")


# ============================================================================ RND networks
def _dense(width: int, fan_in: int) -> nn.Dense:
    init = functools.partial(fan_in_uniform(), fan_in=fan_in)  # PyTorch's nn.Linear
    return nn.Dense(width, kernel_init=init, bias_init=init)


class Bilinear(nn.Module):
    """y_k = x^T W_k z + b_k (PyTorch's nn.Bilinear): a multiplicative first layer."""

    width: int

    @nn.compact
    def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
        init = functools.partial(fan_in_uniform(), fan_in=x.shape[-1])
        kernel = self.param("kernel", init, (self.width, x.shape[-1], z.shape[-1]))
        bias = self.param("bias", init, (self.width,))
        return jnp.einsum("...i,kij,...j->...k", x, kernel, z) + bias


class RNDNet(nn.Module):
    """(action, state) -> embedding [..., E]: the action is the input, the state conditions.
    ``kind``: "bilinear" (bilinear first layer), "film" (FiLM of the last hidden layer by the
    state) or "concat" (an MLP on [a, s])."""

    kind: str
    hidden: int
    embedding: int

    @nn.compact
    def __call__(self, action: jax.Array, state: jax.Array) -> jax.Array:
        h = self.hidden
        if self.kind == "concat":
            x = jnp.concatenate([action, state], axis=-1)
            x = nn.relu(_dense(h, x.shape[-1])(x))
        elif self.kind == "bilinear":
            x = nn.relu(Bilinear(h)(action, state))
        else:  # film
            x = nn.relu(_dense(h, action.shape[-1])(action))
        x = nn.relu(_dense(h, h)(x))
        if self.kind == "film":
            scale, shift = jnp.split(_dense(2 * h, state.shape[-1])(state), 2, axis=-1)
            x = nn.relu(scale * _dense(h, h)(x) + shift)
        else:
            x = nn.relu(_dense(h, h)(x))
        return _dense(self.embedding, h)(x)


class Nets(NamedTuple):
    sac: sac.Nets
    predictor: RNDNet
    prior: RNDNet
    rnd_opt: optax.GradientTransformation


# ============================================================================ state
class RNDState(NamedTuple):
    predictor_params: Any
    prior_params: Any          # random and fixed
    opt_state: Any
    obs_mean: jax.Array        # [obs_dim] dataset moments of the RND's inputs
    obs_std: jax.Array
    act_mean: jax.Array        # [action_dim]
    act_std: jax.Array
    loss_mean: jax.Array       # [] running moments of the per-sample RND error
    loss_var: jax.Array
    loss_count: jax.Array


class SACRNDState(NamedTuple):
    sac: sac.SACState
    rnd: RNDState
    updates: jax.Array         # [] int32, gradient steps taken (RND pretraining included)


def init_state(cfg: SACRNDConfig, nets: Nets, spec: EnvSpec, key: jax.Array) -> SACRNDState:
    k_sac, k_pred, k_prior = jax.random.split(key, 3)
    obs_dim, a_dim = zeros(spec.obs, (1,)).shape[-1], spec.action.dim
    a, s = jnp.zeros((1, a_dim)), jnp.zeros((1, obs_dim))
    pred = nets.predictor.init(k_pred, a, s)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    rnd = RNDState(pred, nets.prior.init(k_prior, a, s), nets.rnd_opt.init(pred),
                   jnp.zeros(obs_dim), jnp.ones(obs_dim), jnp.zeros(a_dim), jnp.ones(a_dim),
                   f32(0.0), f32(1.0), f32(1e-4))
    return SACRNDState(sac.init_state(cfg, nets.sac, spec, k_sac), rnd, jnp.zeros((), jnp.int32))


def offline_init(state: SACRNDState, data: Transition) -> SACRNDState:
    """The dataset's state and action moments normalise the RND's inputs."""
    return state._replace(rnd=state.rnd._replace(
        obs_mean=data.obs.mean(0), obs_std=data.obs.std(0) + 1e-3,
        act_mean=data.action.mean(0), act_std=data.action.std(0) + 1e-3))


# ============================================================================ losses
def rnd_error(nets: Nets, rnd: RNDState, predictor_params, obs, action) -> jax.Array:
    """Per-sample squared distance [B] between predictor and (fixed) prior embeddings."""
    a = (action - rnd.act_mean) / rnd.act_std
    s = (obs - rnd.obs_mean) / rnd.obs_std
    pred = nets.predictor.apply(predictor_params, a, s)
    prior = jax.lax.stop_gradient(nets.prior.apply(rnd.prior_params, a, s))
    return jnp.sum((pred - prior) ** 2, axis=-1)


def rnd_bonus(nets: Nets, rnd: RNDState, obs, action) -> jax.Array:
    """The penalty [B]: the RND error over the running std of the RND loss."""
    return rnd_error(nets, rnd, rnd.predictor_params, obs, action) / jnp.sqrt(rnd.loss_var)


def rnd_actor_loss(actor_params, critic_params, log_alpha, obs, key: jax.Array,
                   nets: sac.Nets, *, bonus, beta: float) -> tuple[jax.Array, jax.Array]:
    """E[alpha log pi(a|s) - min_i Q_i(s, a) + beta b(s, a)], a ~ pi (SAC-RND eq. 5)."""
    k_pi, k_q = jax.random.split(key)
    a, logp = nets.actor.apply(actor_params, obs).sample_and_log_prob(k_pi)
    q = sac.q_values(nets, jax.lax.stop_gradient(critic_params), obs, a, k_q).min(axis=0)
    alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
    return jnp.mean(alpha * logp - q + beta * bonus(obs, a)), logp


def rnd_critic_loss(critic_params, actor_params, target_critic_params, log_alpha,
                    batch: Transition, key: jax.Array, nets: sac.Nets, gamma: float, *, bonus,
                    beta: float) -> tuple[jax.Array, dict]:
    """SAC's soft Bellman residual with the next action's penalty in the target:
    y = r + gamma (min Q'(s', a') - alpha log pi(a'|s') - beta b(s', a')) (eq. 4)."""
    k_pi, k_target, k_online = jax.random.split(key, 3)
    next_a, next_logp = nets.actor.apply(actor_params, batch.next_obs).sample_and_log_prob(k_pi)
    next_q = sac.q_values(nets, target_critic_params, batch.next_obs, next_a, k_target).min(0)
    soft_v = next_q - jnp.exp(log_alpha) * next_logp - beta * bonus(batch.next_obs, next_a)
    target = jax.lax.stop_gradient(td_target(batch.reward, batch.terminated, soft_v, gamma))
    q = sac.q_values(nets, critic_params, batch.obs, batch.action, k_online)
    loss = 0.5 * jnp.sum(jnp.mean((q - target) ** 2, axis=1))
    return loss, {"train/critic_loss": loss, "train/q_mean": q.mean()}


# ============================================================================ update
METRICS = ("train/critic_loss", "train/q_mean", "train/actor_loss", "train/alpha_loss",
           "train/entropy", "train/alpha", "train/rnd_loss", "train/rnd_bonus_data",
           "train/rnd_bonus_random")


def _rnd_step(rnd: RNDState, batch: Transition, nets: Nets) -> tuple[RNDState, jax.Array]:
    """One predictor step; the running moments of the per-sample error take the batch in."""
    def loss_fn(params):
        err = rnd_error(nets, rnd, params, batch.obs, batch.action)  # [B]
        return err.mean(), err
    (loss, err), grads = jax.value_and_grad(loss_fn, has_aux=True)(rnd.predictor_params)
    updates, opt_state = nets.rnd_opt.update(grads, rnd.opt_state)
    n = err.shape[0]
    delta = err.mean() - rnd.loss_mean
    total = rnd.loss_count + n
    mean = rnd.loss_mean + delta * n / total
    m2 = rnd.loss_var * rnd.loss_count + err.var() * n + delta**2 * rnd.loss_count * n / total
    return rnd._replace(predictor_params=optax.apply_updates(rnd.predictor_params, updates),
                        opt_state=opt_state, loss_mean=mean, loss_var=m2 / total,
                        loss_count=total), loss


def update(state: SACRNDState, batch: Transition, obs_stats: ObsStats | None, *,
           cfg: SACRNDConfig, nets: Nets, target_entropy: float) -> tuple[SACRNDState, dict]:
    """The first ``rnd_pretrain_steps`` steps fit the RND; every later one is SAC's update
    with SAC-RND's losses, the RND frozen."""
    key = jax.random.fold_in(state.sac.key, state.updates)
    random_a = jax.random.uniform(key, batch.action.shape, minval=-1.0, maxval=1.0)

    def diagnostics(rnd: RNDState) -> dict:  # the bonus on data vs on random actions
        return {"train/rnd_bonus_data": rnd_bonus(nets, rnd, batch.obs, batch.action).mean(),
                "train/rnd_bonus_random": rnd_bonus(nets, rnd, batch.obs, random_a).mean()}

    def pretrain():
        rnd, loss = _rnd_step(state.rnd, batch, nets)
        metrics = {k: jnp.zeros((), jnp.float32) for k in METRICS}
        metrics.update({"train/rnd_loss": loss, **diagnostics(rnd)})
        return SACRNDState(state.sac, rnd, state.updates + 1), metrics

    def sac_step():
        bonus = functools.partial(rnd_bonus, nets, state.rnd)
        new_sac, m = sac.update(
            state.sac, batch, obs_stats, cfg=cfg, nets=nets.sac, target_entropy=target_entropy,
            critic_loss_fn=functools.partial(rnd_critic_loss, bonus=bonus, beta=cfg.beta),
            actor_loss_fn=functools.partial(rnd_actor_loss, bonus=bonus, beta=cfg.beta))
        metrics = {k: jnp.zeros((), jnp.float32) for k in METRICS}
        metrics.update({k: v for k, v in m.items() if k in metrics})
        metrics.update(diagnostics(state.rnd))
        return SACRNDState(new_sac, state.rnd, state.updates + 1), metrics

    return jax.lax.cond(state.updates < cfg.rnd_pretrain_steps, pretrain, sac_step)


# ============================================================================ assembly
def make_sac_rnd(cfg: SACRNDConfig, spec: EnvSpec) -> AgentFns:
    return _make_sac_rnd(cfg.compile_key(), spec)


@functools.lru_cache(maxsize=16)
def _make_sac_rnd(cfg: SACRNDConfig, spec: EnvSpec) -> AgentFns:
    if spec.obs.kind != "box" or len(spec.obs.shape) != 1:
        raise ConfigError("SAC-RND's RND takes flat (Box) state vectors")
    a_dim = spec.action.dim
    sac_nets = sac.make_nets(cfg, spec)
    film = cfg.rnd_conditioning == "film"
    nets = Nets(sac_nets,
                RNDNet("bilinear" if film else "concat", cfg.rnd_hidden, cfg.rnd_embedding),
                RNDNet("film" if film else "concat", cfg.rnd_hidden, cfg.rnd_embedding),
                optax.adam(cfg.rnd_lr))
    target_entropy = -float(a_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
    return agent(init=functools.partial(init_state, cfg, nets, spec),
                 update=functools.partial(update, cfg=cfg, nets=nets,
                                          target_entropy=target_entropy),
                 explore=functools.partial(sac.explore, nets=sac_nets),
                 act=functools.partial(sac.act, nets=sac_nets),
                 policy_params=lambda state: state.sac.actor_params, nets=nets, spec=spec,
                 scan_updates=True, offline_init=offline_init)
