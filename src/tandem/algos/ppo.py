"""Proximal Policy Optimization (Schulman et al., 2017), and A2C as one of its configurations.

Read top to bottom: config -> networks -> state -> loss -> update -> policy -> make_ppo.
The drivers (``tandem.host.onpolicy``: Gymnasium vector envs; ``tandem.compiled``: the whole
loop as one program) run the env loops; this file only holds pure functions.

A2C (Mnih et al., 2016, synchronous form) is not a second implementation: with one epoch, one
minibatch and no clipping, the first and only gradient step of PPO is taken at ratio 1, where
the gradient of ratio * A equals the gradient of log pi * A, so PPO's update *is* the A2C
update (Huang et al., 2022, "A2C is a special case of PPO"). :class:`A2CConfig` sets those
values plus A2C's own defaults (5-step rollouts, lambda 1, RMSprop); a test checks the
parameters against a hand-written textbook A2C step.
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
from tandem.core.normalize import normalize_obs
from tandem.core.optim import annealable_optimizer, with_learning_rate
from tandem.core.policies import PolicyHead, ValueCritic
from tandem.core.returns import gae
from tandem.core.spaces import EnvSpec, zeros
from tandem.core.types import ObsStats, Rollout
from tandem.errors import ConfigError


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class PPOConfig(Config):
    """PPO hyperparameters. Defaults follow the PPO paper's Atari/MuJoCo settings as kept by
    CleanRL and SB3 (64x64 tanh networks, Adam eps 1e-5, clip 0.2, GAE 0.95)."""

    algo = "ppo"

    n_envs: int = param(8, "parallel envs (Gymnasium vector env, or vmapped on the compiled "
                        "path); also --envs on the command line", ge=1)
    n_steps: int = param(128, "env steps per env in one rollout (a rollout has n_envs x "
                         "n_steps transitions)", ge=1)
    vec_env: str = param("sync", "Gymnasium vector env: sync (one process) or async (one "
                         "subprocess per env; pays off for slow envs)", choices=("sync", "async"),
                         compiled=False)
    gamma: float = param(0.99, "discount factor", ge=0.0, le=1.0)
    gae_lambda: float = param(0.95, "GAE lambda (1: Monte-Carlo-like n-step advantages)",
                              ge=0.0, le=1.0)
    n_epochs: int = param(4, "passes over each rollout", ge=1)
    n_minibatches: int = param(4, "minibatches per epoch (must divide n_envs x n_steps)", ge=1)
    clip_coef: float | None = param(0.2, "PPO ratio clipping epsilon (None: no clipping, the "
                                    "plain policy-gradient surrogate)", gt=0.0, optional=True)
    clip_vloss: bool = param(False, "clip the value update around the old values with "
                             "clip_coef (PPO2-style value clipping)")
    vf_coef: float = param(0.5, "weight of the value loss 0.5 * (V - target)^2", ge=0.0)
    ent_coef: float = param(0.0, "weight of the entropy bonus", ge=0.0)
    max_grad_norm: float | None = param(0.5, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    learning_rate: float = param(3e-4, "learning rate of actor and critic", gt=0.0, le=1.0)
    anneal_lr: bool = param(False, "decay the learning rate linearly to 0 over the run's steps")
    norm_adv: bool = param(True, "normalise advantages per minibatch")
    optimizer: str = param("adam", "optimiser (A2C: rmsprop, as in A3C)",
                           choices=("adam", "rmsprop"))
    optimizer_eps: float = param(1e-5, "epsilon of Adam / RMSprop (outside the square root, "
                                 "as in PyTorch)", gt=0.0)
    rmsprop_decay: float = param(0.99, "RMSprop decay of the squared-gradient average",
                                 gt=0.0, lt=1.0)
    hidden_sizes: tuple[int, ...] = param((64, 64), "hidden widths of the actor and of the "
                                          "(separate) critic")
    activation: str = param("tanh", "hidden activation", choices=("relu", "tanh", "elu",
                                                                  "gelu", "silu"))
    log_std_init: float = param(0.0, "initial log std of Gaussian actions (state-independent)")
    normalize_obs: bool = param(False, "normalise observations with running statistics "
                                "(saved with the policy)")
    normalize_reward: bool = param(False, "divide rewards by the running std of the "
                                   "discounted return (SB3 VecNormalize), clipped to 10")

    # log lines and checkpoints fall at the end of the rollout that reaches each multiple
    settings_defaults: ClassVar[dict] = {"log_every": 10_000, "checkpoint_every": 100_000}

    # `tandem tune ppo` (RL Zoo's PPO ranges, narrowed; n_steps x n_envs stays divisible by
    # every n_minibatches choice when n_steps is a multiple of 8).
    search_space: ClassVar[dict] = {
        "learning_rate": log_uniform(1e-5, 3e-3),
        "n_steps": choice(64, 128, 256, 512),
        "gamma": choice(0.95, 0.98, 0.99, 0.995, 0.999),
        "gae_lambda": choice(0.8, 0.9, 0.95, 0.98, 1.0),
        "n_epochs": choice(1, 4, 10),
        "n_minibatches": choice(1, 4, 8),
        "clip_coef": choice(0.1, 0.2, 0.3),
        "ent_coef": log_uniform(1e-8, 0.1),
        "max_grad_norm": choice(0.3, 0.5, 1.0, 5.0),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size % self.n_minibatches:
            raise ConfigError(f"{type(self).__name__}.n_minibatches={self.n_minibatches} must "
                              f"divide the rollout size n_envs x n_steps = {self.batch_size}")

    @property
    def batch_size(self) -> int:
        """Transitions per rollout."""
        return self.n_envs * self.n_steps


@dataclasses.dataclass(frozen=True)
class A2CConfig(PPOConfig):
    """A2C as a PPO configuration: one epoch over one minibatch without clipping (the update is
    then exactly A2C's), 5-step rollouts, lambda 1 (n-step returns), RMSprop, no advantage
    normalisation. Defaults follow SB3's A2C (learning rate 7e-4, RMSprop eps 1e-5)."""

    algo = "a2c"

    n_steps: int = param(5, "env steps per env in one rollout", ge=1)
    gae_lambda: float = param(1.0, "GAE lambda (1: A2C's n-step advantages)", ge=0.0, le=1.0)
    n_epochs: int = param(1, "passes over each rollout (A2C: 1)", ge=1)
    n_minibatches: int = param(1, "minibatches per epoch (A2C: 1)", ge=1)
    clip_coef: float | None = param(None, "ratio clipping (A2C: None; at ratio 1 it has no "
                                    "effect anyway)", gt=0.0, optional=True)
    learning_rate: float = param(7e-4, "learning rate", gt=0.0, le=1.0)
    norm_adv: bool = param(False, "normalise advantages (A2C: off)")
    optimizer: str = param("rmsprop", "optimiser (A2C: rmsprop)", choices=("adam", "rmsprop"))

    settings_defaults: ClassVar[dict] = {"log_every": 2_000, "checkpoint_every": 20_000}

    # `tandem tune a2c` (RL Zoo's A2C ranges, narrowed): A2C's epochs, minibatches and (no)
    # clipping stay fixed.
    search_space: ClassVar[dict] = {
        "learning_rate": log_uniform(1e-5, 3e-3),
        "n_steps": choice(5, 8, 16, 32),
        "gamma": choice(0.95, 0.98, 0.99, 0.995, 0.999),
        "gae_lambda": choice(0.9, 0.95, 0.98, 1.0),
        "ent_coef": log_uniform(1e-8, 0.1),
        "vf_coef": choice(0.25, 0.5, 0.75, 1.0),
        "max_grad_norm": choice(0.3, 0.5, 1.0, 5.0),
        "normalize_obs": choice(False, True),
    }


# ============================================================================ networks
class Nets(NamedTuple):
    actor: PolicyHead
    critic: ValueCritic
    tx: optax.GradientTransformation


def make_nets(cfg: PPOConfig, spec: EnvSpec) -> Nets:
    """Separate actor and critic MLPs (orthogonal init) and the annealable optimiser."""
    return Nets(PolicyHead(cfg.hidden_sizes, spec.action, cfg.activation, cfg.log_std_init,
                           spec.obs),
                ValueCritic(cfg.hidden_sizes, cfg.activation, spec.obs),
                annealable_optimizer(cfg))


# ============================================================================ state
class PPOState(NamedTuple):
    params: Any         # {"actor": ..., "critic": ...}
    opt_state: Any
    key: jax.Array      # minibatch shuffling
    updates: jax.Array  # [] int32 rollouts learned from


# ============================================================================ loss
class Batch(NamedTuple):
    """Flat minibatch of transitions [B, ...] with the behaviour policy's quantities."""

    obs: Any
    action: jax.Array
    old_logp: jax.Array
    old_value: jax.Array
    advantage: jax.Array
    target: jax.Array


def ppo_loss(params, nets: Nets, cfg: PPOConfig, b: Batch) -> tuple[jax.Array, dict]:
    """Clipped surrogate (PPO paper, eq. 7) + vf_coef * value loss - ent_coef * entropy."""
    dist = nets.actor.apply(params["actor"], b.obs)
    logp = dist.log_prob(b.action)
    log_ratio = logp - b.old_logp
    ratio = jnp.exp(log_ratio)
    adv = b.advantage
    if cfg.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    if cfg.clip_coef is None:
        pg_loss = -jnp.mean(ratio * adv)
    else:
        clipped = jnp.clip(ratio, 1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)
        pg_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
    value = nets.critic.apply(params["critic"], b.obs)
    v_err = (value - b.target) ** 2
    if cfg.clip_vloss and cfg.clip_coef is not None:
        v_clip = b.old_value + jnp.clip(value - b.old_value, -cfg.clip_coef, cfg.clip_coef)
        v_err = jnp.maximum(v_err, (v_clip - b.target) ** 2)
    v_loss = 0.5 * jnp.mean(v_err)
    entropy = jnp.mean(dist.entropy())
    loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
    clip_frac = (jnp.mean(jnp.abs(ratio - 1.0) > cfg.clip_coef) if cfg.clip_coef is not None
                 else jnp.zeros(()))
    return loss, {"train/policy_loss": pg_loss, "train/value_loss": v_loss,
                  "train/entropy": entropy,
                  # low-variance KL(old || new) estimator (Schulman, "Approximating KL")
                  "train/approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
                  "train/clip_fraction": clip_frac}


# ============================================================================ update
def prepare(params, nets: Nets, cfg: PPOConfig, ro: Rollout) -> Batch:
    """Rollout [T, N] -> flat batch [T * N]: behaviour log-probs and values (recomputed with the
    unchanged parameters), GAE advantages and value targets."""
    T, N = ro.reward.shape
    values = nets.critic.apply(params["critic"], jax.tree_util.tree_map(
        lambda o, last: jnp.concatenate([o, last[None]]), ro.obs, ro.last_obs))  # [T + 1, N]
    final_values = nets.critic.apply(params["critic"], ro.final_obs)  # [T, N]
    next_values = jnp.where(ro.done > 0, final_values, values[1:])
    adv, target = gae(ro.reward, values[:-1], next_values, ro.terminated, ro.done,
                      cfg.gamma, cfg.gae_lambda)
    logp = nets.actor.apply(params["actor"], ro.obs).log_prob(ro.action)  # [T, N]
    flat = lambda x: x.reshape((T * N,) + x.shape[2:])  # noqa: E731
    return Batch(jax.tree_util.tree_map(flat, ro.obs), flat(ro.action), flat(logp),
                 flat(values[:-1]), flat(adv), flat(target))


def update(state: PPOState, ro: Rollout, lr_frac: jax.Array, nets: Nets, cfg: PPOConfig
           ) -> tuple[PPOState, dict]:
    """Learn from one rollout: n_epochs passes of n_minibatches shuffled minibatches.

    ``lr_frac`` scales the learning rate (the drivers pass 1 - progress when anneal_lr).
    """
    batch = prepare(state.params, nets, cfg, ro)
    n = batch.obs.shape[0]
    mb = n // cfg.n_minibatches
    grad_fn = jax.grad(ppo_loss, has_aux=True)
    lr = cfg.learning_rate * (lr_frac if cfg.anneal_lr else 1.0)
    opt_state = with_learning_rate(state.opt_state, lr)

    def minibatch_step(carry, idx):
        params, opt_state = carry
        if cfg.n_minibatches == 1:  # the whole batch, in order (A2C): no gather
            b = batch
        else:
            b = jax.tree_util.tree_map(lambda x: x[idx], batch)
        grads, metrics = grad_fn(params, nets, cfg, b)
        updates, opt_state = nets.tx.update(grads, opt_state, params)
        metrics["train/grad_norm"] = optax.tree.norm(grads)
        return (optax.apply_updates(params, updates), opt_state), metrics

    def epoch(carry, key):
        if cfg.n_minibatches == 1:
            order = jnp.arange(n)  # the whole batch: no shuffling needed (A2C)
        else:
            order = jax.random.permutation(key, n)
        return jax.lax.scan(minibatch_step, carry, order.reshape(cfg.n_minibatches, mb))

    key, k_epochs = jax.random.split(state.key)
    (params, opt_state), metrics = jax.lax.scan(
        epoch, (state.params, opt_state), jax.random.split(k_epochs, cfg.n_epochs))
    metrics = jax.tree_util.tree_map(jnp.mean, metrics)
    var_t = jnp.var(batch.target)
    metrics["train/explained_variance"] = jnp.where(
        var_t > 0, 1.0 - jnp.var(batch.target - batch.old_value) / var_t, jnp.nan)
    metrics["train/learning_rate"] = jnp.asarray(lr, jnp.float32)
    return PPOState(params, opt_state, key, state.updates + 1), metrics


# ============================================================================ policy
def explore(params, obs_stats: ObsStats | None, obs, key: jax.Array, step: jax.Array, carry,
            nets: Nets) -> tuple[jax.Array, Any, jax.Array]:
    """Behaviour action for observations [N, *obs] and its log-probability [N]; the key is
    folded with the env step, so no key state has to be carried or saved. The drivers pass
    observations already normalised (they store them in the rollout) and no statistics. Box
    actions are the raw Gaussian samples (the driver clips them to [-1, 1] before scaling to
    the env's bounds)."""
    dist = nets.actor.apply(params, normalize_obs(obs, obs_stats))
    a = dist.sample(jax.random.fold_in(key, step))
    return a, carry, dist.log_prob(a)


def act(params, obs_stats: ObsStats | None, obs, nets: Nets) -> jax.Array:
    """Deterministic action for raw obs [..., *obs]: the Gaussian mean clipped to [-1, 1], or
    the most likely discrete action."""
    dist = nets.actor.apply(params, normalize_obs(obs, obs_stats))
    if isinstance(dist, Normal):
        return jnp.clip(dist.loc, -1.0, 1.0)
    return dist.mode()


# ============================================================================ assembly
def init_state(nets: Nets, spec: EnvSpec, key: jax.Array) -> PPOState:
    k_actor, k_critic, k_state = jax.random.split(key, 3)
    dummy = zeros(spec.obs, (1,))
    params = {"actor": nets.actor.init(k_actor, dummy),
              "critic": nets.critic.init(k_critic, dummy)}
    return PPOState(params, nets.tx.init(params), k_state, jnp.zeros((), jnp.int32))


def make_ppo(cfg: PPOConfig, spec: EnvSpec) -> AgentFns:
    """PPO's (or A2C's) functions, jitted, for ``cfg`` on an env described by ``spec``;
    cached: configs that differ only in fields that do not shape the compiled code share one
    compilation."""
    return _make_ppo(cfg.compile_key(), spec)


@functools.lru_cache(maxsize=32)
def _make_ppo(cfg: PPOConfig, spec: EnvSpec) -> AgentFns:
    nets = make_nets(cfg, spec)
    return agent(init=functools.partial(init_state, nets, spec),
                 update=functools.partial(update, nets=nets, cfg=cfg),
                 explore=functools.partial(explore, nets=nets),
                 act=functools.partial(act, nets=nets),
                 policy_params=lambda state: state.params["actor"], nets=nets, spec=spec,
                 scan_updates=False)
