"""Small distributions for policies (no TFP): Normal and tanh-squashed Normal."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Normal(NamedTuple):
    """Diagonal Gaussian; log_prob and entropy sum over the last axis."""

    loc: jax.Array
    scale: jax.Array

    def sample(self, key: jax.Array) -> jax.Array:
        return self.loc + self.scale * jax.random.normal(key, self.loc.shape, self.loc.dtype)

    def log_prob(self, x: jax.Array) -> jax.Array:
        z = (x - self.loc) / self.scale
        return jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - _HALF_LOG_2PI, axis=-1)

    def entropy(self) -> jax.Array:
        return jnp.sum(0.5 + _HALF_LOG_2PI + jnp.log(self.scale), axis=-1)


def tanh_log_det_jacobian(u: jax.Array, eps: float = 0.0) -> jax.Array:
    """log |d tanh(u) / du| = log(1 - tanh(u)^2), summed over the last axis.

    ``eps == 0``: exact, written as 2 (log 2 - u - softplus(-2u)), which stays finite for
    large |u| where 1 - tanh(u)^2 underflows to 0 (SAC paper, appendix C, eq. 21).
    ``eps > 0``: log(1 - tanh(u)^2 + eps), Stable-Baselines3's form (eps 1e-6): bounded below
    by log(eps), so a saturated dimension's term stops changing (docs/sac.md).
    """
    if eps > 0.0:
        return jnp.sum(jnp.log(1.0 - jnp.tanh(u) ** 2 + eps), axis=-1)
    return jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


class TanhNormal(NamedTuple):
    """a = tanh(u), u ~ Normal(loc, scale). Actions lie in (-1, 1). ``eps`` picks the
    squash correction of the log-density (:func:`tanh_log_det_jacobian`; a Python float,
    fixed when the policy is built)."""

    loc: jax.Array
    scale: jax.Array
    eps: float = 0.0

    def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        base = Normal(self.loc, self.scale)
        u = base.sample(key)
        return jnp.tanh(u), base.log_prob(u) - tanh_log_det_jacobian(u, self.eps)

    def log_prob_pre_tanh(self, u: jax.Array) -> jax.Array:
        """log density of a = tanh(u), given the pre-squash sample u."""
        return Normal(self.loc, self.scale).log_prob(u) - tanh_log_det_jacobian(u, self.eps)

    def mode(self) -> jax.Array:
        return jnp.tanh(self.loc)


class Categorical(NamedTuple):
    """Categorical over the last axis of ``logits`` [..., n]; samples are int32 indices."""

    logits: jax.Array

    def _log_p(self) -> jax.Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.categorical(key, self.logits, axis=-1).astype(jnp.int32)

    def log_prob(self, x: jax.Array) -> jax.Array:
        idx = jnp.asarray(x, jnp.int32)[..., None]
        return jnp.take_along_axis(self._log_p(), idx, axis=-1)[..., 0]

    def entropy(self) -> jax.Array:
        log_p = self._log_p()
        # exp(log_p) * log_p with 0 * -inf taken as 0 (a logit of -inf is a masked action)
        return -jnp.sum(jnp.where(log_p > -jnp.inf, jnp.exp(log_p) * log_p, 0.0), axis=-1)

    def mode(self) -> jax.Array:
        return jnp.argmax(self.logits, axis=-1).astype(jnp.int32)


class MultiCategorical(NamedTuple):
    """Independent categoricals (Gymnasium MultiDiscrete): ``logits`` [..., sum(nvec)] are
    split into len(nvec) groups; samples are int32 [..., len(nvec)]; log_prob and entropy sum
    over the groups (the joint of independent factors)."""

    logits: jax.Array
    nvec: tuple[int, ...]

    def _parts(self) -> list[Categorical]:
        bounds = [sum(self.nvec[:i]) for i in range(1, len(self.nvec))]
        return [Categorical(x) for x in jnp.split(self.logits, bounds, axis=-1)]

    def sample(self, key: jax.Array) -> jax.Array:
        keys = jax.random.split(key, len(self.nvec))
        return jnp.stack([c.sample(k) for c, k in zip(self._parts(), keys)], axis=-1)

    def log_prob(self, x: jax.Array) -> jax.Array:
        return sum(c.log_prob(x[..., i]) for i, c in enumerate(self._parts()))

    def entropy(self) -> jax.Array:
        return sum(c.entropy() for c in self._parts())

    def mode(self) -> jax.Array:
        return jnp.stack([c.mode() for c in self._parts()], axis=-1)
