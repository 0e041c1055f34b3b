"""A learned dynamics model: an ensemble of probabilistic networks (Chua et al., 2018, PETS;
the model of MOPO and of CSVE's state sampling).

Each of ``n`` members maps a normalised (state, action) to a diagonal Gaussian over the
normalised (next state - state, reward); the members differ by their initialisation. The
log-variance is soft-bounded between two learned limits, as in PETS, and the loss is the
Gaussian negative log-likelihood plus a small pull on those limits. A prediction draws one
member per sample, so the spread across members (epistemic) and within one (aleatoric) both
reach the caller. Inputs and targets are normalised by the dataset's moments, held in
:class:`ModelStats`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tandem.core.nets import MLP


class ModelStats(NamedTuple):
    """Moments of the model's inputs ([obs, action]) and targets ([delta obs, reward])."""

    in_mean: jax.Array
    in_std: jax.Array
    out_mean: jax.Array
    out_std: jax.Array


def model_stats(obs: jax.Array, action: jax.Array, next_obs: jax.Array,
                reward: jax.Array) -> ModelStats:
    x = jnp.concatenate([obs, action], axis=-1)
    y = jnp.concatenate([next_obs - obs, reward[..., None]], axis=-1)
    return ModelStats(x.mean(0), x.std(0) + 1e-3, y.mean(0), y.std(0) + 1e-3)


def identity_stats(obs_dim: int, action_dim: int) -> ModelStats:
    return ModelStats(jnp.zeros(obs_dim + action_dim), jnp.ones(obs_dim + action_dim),
                      jnp.zeros(obs_dim + 1), jnp.ones(obs_dim + 1))


class _Member(nn.Module):
    hidden_sizes: Sequence[int]
    out_dim: int
    activation: str

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_sizes, 2 * self.out_dim, self.activation)(x)
        mean, raw_logvar = jnp.split(out, 2, axis=-1)
        max_lv = self.param("max_logvar", nn.initializers.constant(0.5), (self.out_dim,))
        min_lv = self.param("min_logvar", nn.initializers.constant(-10.0), (self.out_dim,))
        logvar = max_lv - nn.softplus(max_lv - raw_logvar)
        logvar = min_lv + nn.softplus(logvar - min_lv)
        return mean, logvar


class DynamicsEnsemble(nn.Module):
    """(normalised [obs, action]) -> (mean, log-variance), each [n, ..., obs_dim + 1]."""

    hidden_sizes: Sequence[int] = (200, 200, 200, 200)
    out_dim: int = 1
    n: int = 5
    activation: str = "silu"  # swish, as PETS and MOPO

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        ensemble = nn.vmap(_Member, variable_axes={"params": 0}, split_rngs={"params": True},
                           in_axes=None, out_axes=0, axis_size=self.n)
        return ensemble(self.hidden_sizes, self.out_dim, self.activation, name="members")(x)


def model_loss(params, model: DynamicsEnsemble, stats: ModelStats, obs, action, next_obs,
               reward) -> tuple[jax.Array, dict]:
    """Gaussian NLL of the normalised (delta obs, reward) under every member, averaged over
    members, samples and dimensions, plus 0.01 (max_logvar - min_logvar) (PETS)."""
    x = (jnp.concatenate([obs, action], axis=-1) - stats.in_mean) / stats.in_std
    y = (jnp.concatenate([next_obs - obs, reward[..., None]], axis=-1) - stats.out_mean) \
        / stats.out_std
    mean, logvar = model.apply(params, x)  # [n, B, D]
    nll = 0.5 * (((mean - y) ** 2) * jnp.exp(-logvar) + logvar).mean()
    bounds = params["params"]["members"]
    pull = 0.01 * (bounds["max_logvar"].sum() - bounds["min_logvar"].sum())
    mse = ((mean - y) ** 2).mean()
    return nll + pull, {"train/model_nll": nll, "train/model_mse": mse}


def predict(params, model: DynamicsEnsemble, stats: ModelStats, obs: jax.Array,
            action: jax.Array, key: jax.Array, sample: bool = True) -> tuple[jax.Array, jax.Array]:
    """(next obs [B, obs_dim], reward [B]) from one randomly chosen member per sample; with
    ``sample`` the member's Gaussian is sampled (reparameterised: differentiable in the
    action), else its mean is taken."""
    k_member, k_noise = jax.random.split(key)
    x = (jnp.concatenate([obs, action], axis=-1) - stats.in_mean) / stats.in_std
    mean, logvar = model.apply(params, x)  # [n, B, D]
    idx = jax.random.randint(k_member, obs.shape[:1], 0, mean.shape[0])
    rows = jnp.arange(obs.shape[0])
    mean, std = mean[idx, rows], jnp.exp(0.5 * logvar[idx, rows])
    y = mean + std * jax.random.normal(k_noise, mean.shape) if sample else mean
    y = y * stats.out_std + stats.out_mean
    return obs + y[..., :-1], y[..., -1]
