"""CFPI: closed-form policy improvement (Li et al., 2023), offline, as a one-step method.

Two things are learned from the dataset, side by side at every gradient step: a behaviour
policy pi_b by maximum likelihood (a Gaussian, or a mixture of ``n_components`` Gaussians),
and the behaviour's Q by one-step evaluation (V(s) fitted to the expectile of Q(s, a) over
dataset actions, Q to r + gamma V(s'): with ``expectile`` = 0.5 this is SARSA's Q^beta in
expectation, without next actions). No policy is trained: the action is the closed-form
solution of a first-order Taylor expansion of Q around the behaviour's mean, inside the
trust region where the behaviour's log-likelihood stays within ``delta`` of its mode:

    max_a  g^T (a - mu)   s.t.  (a - mu)^T Sigma^-1 (a - mu) <= 2 delta,   g = dQ/da at mu
    a* = mu + sqrt(2 delta) Sigma g / sqrt(g^T Sigma g)

For a mixture, log sum_k w_k N_k(a) >= max_k [log w_k + log N_k(a)] (the LogSumExp bound),
so each component k gets its own region of size delta_k = delta + c_k - max_j c_j, with
c_k = log w_k - 1/2 log det(2 pi Sigma_k) its log-density at its mode; components with
delta_k < 0 cannot reach the threshold and are skipped, and the best a_k* by Q is taken.
Trains on a dataset (``--dataset``); its steps are gradient steps. Read top to bottom:
config -> networks -> state -> losses -> update -> the closed form -> make_cfpi.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tandem.config import Config, choice, param
from tandem.core.agent import AgentFns, agent
from tandem.core.nets import NETWORKS, QEnsemble, encode
from tandem.core.normalize import normalize_obs
from tandem.core.optim import gradient_step, make_optimizer, polyak
from tandem.core.policies import ValueCritic
from tandem.core.spaces import EnvSpec, Space, zeros
from tandem.core.types import ObsStats, Transition
from tandem.core.value_learning import bootstrap_q_loss, expectile_value_loss
from tandem.errors import ConfigError

_HALF_LOG_2PI = 0.5 * jnp.log(2.0 * jnp.pi)


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class CFPIConfig(Config):
    """CFPI hyperparameters (one-step, on the behaviour's Q)."""

    algo = "cfpi"

    delta: float = param(0.5, "trust region: the improved action's behaviour log-likelihood "
                         "stays within delta of the mode's", gt=0.0)
    n_components: int = param(1, "Gaussians in the behaviour policy (1: CFPI's Gaussian "
                              "operator; more: the mixture one with the LogSumExp bound)", ge=1)
    expectile: float = param(0.5, "expectile of V's fit to Q (0.5: the behaviour's Q, "
                             "one-step)", gt=0.0, lt=1.0)
    gamma: float = param(0.99, "discount factor", ge=0.0, le=1.0)
    tau: float = param(0.005, "polyak coefficient of the target Q networks", gt=0.0, le=1.0)
    bc_lr: float = param(3e-4, "behaviour policy learning rate (Adam)", gt=0.0, le=1.0)
    critic_lr: float = param(3e-4, "Q learning rate (Adam)", gt=0.0, le=1.0)
    value_lr: float = param(3e-4, "V learning rate (Adam)", gt=0.0, le=1.0)
    n_critics: int = param(2, "Q networks; the improvement uses their minimum", ge=1)
    batch_size: int = param(256, "transitions per gradient step", ge=1, compiled=False)
    hidden_sizes: tuple[int, ...] = param((256, 256), "hidden layer widths of all networks")
    activation: str = param("relu", "hidden activation", choices=("relu", "tanh", "elu", "gelu",
                                                                  "silu"))
    network: str = param("mlp", "network of the behaviour policy and Q",
                         choices=("mlp", "simbav2"))
    max_grad_norm: float | None = param(None, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    normalize_obs: bool = param(True, "normalise observations by the dataset's mean and std "
                                "(saved with the policy)", compiled=False)
    reward_scale: str = param("returns", "returns: rewards x 1000 / (max - min episode return), "
                              "as IQL, whose Q-learning this uses; none: raw rewards",
                              choices=("returns", "none"), compiled=False)

    settings_defaults: ClassVar[dict[str, Any]] = {"log_every": 1000, "eval_every": 5000,
                                                   "checkpoint_every": 10_000}
    search_space: ClassVar[dict] = {"delta": choice(0.1, 0.5, 1.0, 2.0),
                                    "n_components": choice(1, 4)}


# ============================================================================ networks
class Mixture(NamedTuple):
    """A diagonal Gaussian mixture over actions: [..., K] logits, [..., K, A] means and
    scales."""

    logits: jax.Array
    loc: jax.Array
    scale: jax.Array

    def log_prob(self, a: jax.Array) -> jax.Array:
        z = (a[..., None, :] - self.loc) / self.scale
        comp = jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - _HALF_LOG_2PI, axis=-1)
        return jax.nn.logsumexp(jax.nn.log_softmax(self.logits) + comp, axis=-1)


class MixtureActor(nn.Module):
    """obs -> Mixture of ``k`` Gaussians with tanh means and state-dependent stds."""

    hidden_sizes: tuple[int, ...]
    action_dim: int
    k: int
    activation: str = "relu"
    network: str = "mlp"
    obs_space: Space | None = None

    @nn.compact
    def __call__(self, obs) -> Mixture:
        a, k = self.action_dim, self.k
        out = NETWORKS[self.network](self.hidden_sizes, k * (2 * a + 1),
                                     self.activation)(encode(self.obs_space, obs))
        logits = out[..., :k]
        loc, log_std = jnp.split(out[..., k:].reshape(out.shape[:-1] + (k, 2 * a)), 2, -1)
        return Mixture(logits, jnp.tanh(loc), jnp.exp(jnp.clip(log_std, -5.0, 2.0)))


class Nets(NamedTuple):
    behaviour: MixtureActor
    critic: QEnsemble
    value: ValueCritic
    bc_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    value_opt: optax.GradientTransformation


# ============================================================================ state
class CFPIState(NamedTuple):
    behaviour_params: Any
    critic_params: Any
    target_critic_params: Any
    value_params: Any
    bc_opt_state: Any
    critic_opt_state: Any
    value_opt_state: Any
    updates: jax.Array  # [] int32


class PolicyParams(NamedTuple):
    """What the deployed policy needs: the behaviour policy and the Q networks."""

    behaviour: Any
    critic: Any


def init_state(nets: Nets, spec: EnvSpec, key: jax.Array) -> CFPIState:
    k_b, k_c, k_v = jax.random.split(key, 3)
    obs = zeros(spec.obs, (1,))
    act = jnp.zeros((1, spec.action.dim), jnp.float32)
    b = nets.behaviour.init(k_b, obs)
    c = nets.critic.init(k_c, obs, act)
    v = nets.value.init(k_v, obs)
    return CFPIState(b, c, c, v, nets.bc_opt.init(b), nets.critic_opt.init(c),
                     nets.value_opt.init(v), jnp.zeros((), jnp.int32))


# ============================================================================ losses
def bc_loss(behaviour_params, batch: Transition, nets: Nets) -> tuple[jax.Array, dict]:
    """Negative log-likelihood of the dataset's actions under the behaviour mixture."""
    nll = -nets.behaviour.apply(behaviour_params, batch.obs).log_prob(batch.action).mean()
    return nll, {"train/bc_nll": nll}


# ============================================================================ update
def update(state: CFPIState, batch: Transition, obs_stats: ObsStats | None, *, cfg: CFPIConfig,
           nets: Nets) -> tuple[CFPIState, dict]:
    """One step of each: behaviour cloning, V (expectile), Q (to r + gamma V(s')), target Q
    (the value learning IQL uses, ``tandem.core.value_learning``, with CFPI's expectile)."""
    batch = batch._replace(obs=normalize_obs(batch.obs, obs_stats),
                           next_obs=normalize_obs(batch.next_obs, obs_stats))
    b, b_opt, b_m = gradient_step(state.behaviour_params, state.bc_opt_state, nets.bc_opt, bc_loss,
                          batch, nets)
    v, v_opt, v_m = gradient_step(state.value_params, state.value_opt_state, nets.value_opt,
                          expectile_value_loss, state.target_critic_params, batch, nets, cfg)
    c, c_opt, c_m = gradient_step(state.critic_params, state.critic_opt_state, nets.critic_opt,
                          bootstrap_q_loss, v, batch, nets, cfg)
    new = CFPIState(b, c, polyak(state.target_critic_params, c, cfg.tau), v, b_opt, c_opt,
                    v_opt, state.updates + 1)
    return new, {**b_m, **v_m, **c_m}


# ============================================================================ the closed form
def gaussian_step(mu: jax.Array, var: jax.Array, g: jax.Array, delta) -> jax.Array:
    """argmax_a g^T (a - mu) s.t. (a - mu)^T diag(var)^-1 (a - mu) <= 2 delta:
    mu + sqrt(2 delta) var g / sqrt(g^T diag(var) g) (CFPI's Gaussian operator)."""
    norm = jnp.sqrt(jnp.sum(var * g * g, axis=-1, keepdims=True) + 1e-12)
    return mu + jnp.sqrt(2.0 * jnp.maximum(delta, 0.0))[..., None] * var * g / norm


def improve(params: PolicyParams, obs, *, nets: Nets, cfg: CFPIConfig) -> jax.Array:
    """The improved action [..., A] in [-1, 1] for (normalised) ``obs``."""
    pi = nets.behaviour.apply(params.behaviour, obs)             # [..., K], [..., K, A]

    def q(a):  # min over the critics of Q(s, a) for a [..., K, A]
        s = jnp.broadcast_to(obs[..., None, :], a.shape[:-1] + obs.shape[-1:])
        return nets.critic.apply(params.critic, s, a).min(axis=0)  # [..., K]

    g = jax.grad(lambda a: q(a).sum())(pi.loc)                    # [..., K, A]
    var = pi.scale**2
    # c_k: component k's log-density at its own mode, weight included
    c = jax.nn.log_softmax(pi.logits) - jnp.sum(jnp.log(pi.scale) + _HALF_LOG_2PI, -1)
    delta_k = cfg.delta + c - c.max(axis=-1, keepdims=True)      # [..., K]
    cand = jnp.clip(gaussian_step(pi.loc, var, g, delta_k), -1.0, 1.0)
    score = jnp.where(delta_k >= 0, q(cand), -jnp.inf)
    best = jnp.argmax(score, axis=-1)                            # [...]
    return jnp.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]


def act(params: PolicyParams, obs_stats: ObsStats | None, obs, *, nets: Nets,
        cfg: CFPIConfig) -> jax.Array:
    return improve(params, normalize_obs(obs, obs_stats), nets=nets, cfg=cfg)


def explore(params: PolicyParams, obs_stats: ObsStats | None, obs, key: jax.Array,
            step: jax.Array, carry: jax.Array, *, nets: Nets, cfg: CFPIConfig):
    """CFPI's action is deterministic: it, and no log-probability."""
    a = act(params, obs_stats, obs, nets=nets, cfg=cfg)
    return a, carry, jnp.zeros(a.shape[:-1], a.dtype)


# ============================================================================ assembly
def make_cfpi(cfg: CFPIConfig, spec: EnvSpec) -> AgentFns:
    return _make_cfpi(cfg.compile_key(), spec)


@functools.lru_cache(maxsize=16)
def _make_cfpi(cfg: CFPIConfig, spec: EnvSpec) -> AgentFns:
    if spec.obs.kind != "box" or len(spec.obs.shape) != 1:
        raise ConfigError("CFPI's closed form takes flat (Box) state vectors")
    nets = Nets(MixtureActor(cfg.hidden_sizes, spec.action.dim, cfg.n_components,
                             cfg.activation, cfg.network, spec.obs),
                QEnsemble(cfg.hidden_sizes, cfg.n_critics, cfg.activation, cfg.network,
                          obs_space=spec.obs),
                ValueCritic(cfg.hidden_sizes, cfg.activation, spec.obs, orthogonal=False),
                make_optimizer(cfg.bc_lr, cfg.max_grad_norm),
                make_optimizer(cfg.critic_lr, cfg.max_grad_norm),
                make_optimizer(cfg.value_lr, cfg.max_grad_norm))
    return agent(init=functools.partial(init_state, nets, spec),
                 update=functools.partial(update, cfg=cfg, nets=nets),
                 explore=functools.partial(explore, nets=nets, cfg=cfg),
                 act=functools.partial(act, nets=nets, cfg=cfg),
                 policy_params=lambda s: PolicyParams(s.behaviour_params, s.critic_params),
                 nets=nets, spec=spec, scan_updates=True)
