"""Behaviour cloning, BC: the baseline every offline method is compared with.

A deterministic tanh actor regressed onto the dataset's actions by mean squared error, on
states normalised by the dataset's statistics: the BC baseline of TD3+BC (Fujimoto & Gu,
2021, Sec. 5), which also gives the offline learning tests their floor. Offline only: it
trains on a dataset (``--dataset``); its steps are gradient steps. Read top to bottom:
config -> networks -> state -> loss -> update -> policy -> make_bc.
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
from tandem.core.normalize import normalize_obs
from tandem.core.optim import make_optimizer
from tandem.core.policies import DeterministicActor
from tandem.core.spaces import EnvSpec, zeros
from tandem.core.types import ObsStats, Transition


# ============================================================================ config
@dataclasses.dataclass(frozen=True)
class BCConfig(Config):
    """Behaviour cloning hyperparameters (TD3+BC's BC baseline: 256x256, Adam 3e-4)."""

    algo = "bc"

    actor_lr: float = param(3e-4, "learning rate (Adam)", gt=0.0, le=1.0)
    batch_size: int = param(256, "transitions per gradient step", ge=1, compiled=False)
    hidden_sizes: tuple[int, ...] = param((256, 256), "hidden layer widths of the actor")
    activation: str = param("relu", "hidden activation", choices=("relu", "tanh", "elu", "gelu",
                                                                  "silu"))
    network: str = param("mlp", "actor network", choices=("mlp", "simbav2"))
    max_grad_norm: float | None = param(None, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    normalize_obs: bool = param(True, "normalise observations by the dataset's mean and std "
                                "(saved with the policy)", compiled=False)

    settings_defaults: ClassVar[dict[str, Any]] = {"log_every": 1000, "eval_every": 5000,
                                                   "checkpoint_every": 10_000}
    search_space: ClassVar[dict] = {"actor_lr": log_uniform(1e-4, 3e-3),
                                    "batch_size": choice(64, 256, 1024)}


# ============================================================================ networks
class Nets(NamedTuple):
    actor: DeterministicActor
    actor_opt: optax.GradientTransformation


# ============================================================================ state
class BCState(NamedTuple):
    actor_params: Any
    actor_opt_state: Any
    updates: jax.Array  # [] int32, gradient steps taken


def init_state(nets: Nets, spec: EnvSpec, key: jax.Array) -> BCState:
    params = nets.actor.init(key, zeros(spec.obs, (1,)))
    return BCState(params, nets.actor_opt.init(params), jnp.zeros((), jnp.int32))


# ============================================================================ loss
def bc_loss(actor_params, batch: Transition, nets: Nets) -> jax.Array:
    """mean (pi(s) - a)^2 over the batch and action dims (actions in [-1, 1])."""
    return jnp.mean((nets.actor.apply(actor_params, batch.obs) - batch.action) ** 2)


# ============================================================================ update
def update(state: BCState, batch: Transition, obs_stats: ObsStats | None, *,
           nets: Nets) -> tuple[BCState, dict]:
    batch = batch._replace(obs=normalize_obs(batch.obs, obs_stats))
    loss, grads = jax.value_and_grad(bc_loss)(state.actor_params, batch, nets)
    updates, opt_state = nets.actor_opt.update(grads, state.actor_opt_state)
    params = optax.apply_updates(state.actor_params, updates)
    return BCState(params, opt_state, state.updates + 1), {"train/bc_loss": loss}


# ============================================================================ policy
def act(actor_params, obs_stats: ObsStats | None, obs, *, nets: Nets) -> jax.Array:
    """pi(s) in [-1, 1]; obs may have any leading batch dims."""
    return nets.actor.apply(actor_params, normalize_obs(obs, obs_stats))


def explore(actor_params, obs_stats: ObsStats | None, obs, key: jax.Array, step: jax.Array,
            carry: jax.Array, *, nets: Nets) -> tuple[jax.Array, jax.Array, jax.Array]:
    """BC does not explore: its deterministic action (and no log-probability)."""
    a = act(actor_params, obs_stats, obs, nets=nets)
    return a, carry, jnp.zeros(a.shape[:-1], a.dtype)


# ============================================================================ assembly
def make_bc(cfg: BCConfig, spec: EnvSpec) -> AgentFns:
    return _make_bc(cfg.compile_key(), spec)


@functools.lru_cache(maxsize=16)
def _make_bc(cfg: BCConfig, spec: EnvSpec) -> AgentFns:
    nets = Nets(DeterministicActor(cfg.hidden_sizes, spec.action.dim, cfg.activation,
                                   cfg.network, spec.obs),
                make_optimizer(cfg.actor_lr, cfg.max_grad_norm))
    return agent(init=functools.partial(init_state, nets, spec),
                 update=functools.partial(update, nets=nets),
                 explore=functools.partial(explore, nets=nets),
                 act=functools.partial(act, nets=nets),
                 policy_params=lambda state: state.actor_params, nets=nets, spec=spec,
                 scan_updates=True)
