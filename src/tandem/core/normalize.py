"""Running mean/variance of observations and returns, saved with the policy.

Two holders of the same statistics: :class:`RunningMeanStd` (host side, float64 NumPy) and
:class:`RMS` (a pytree for the compiled path). Both merge batches with :func:`merge_moments`,
written with array methods only so it runs on NumPy and JAX arrays alike.

Observations are normalised leaf by leaf (:class:`ObsRMS`): every float Box leaf of the
observation space that is not an image gets its own statistics; images, discrete and binary
leaves pass through unchanged. For the usual flat Box observation that is one
:class:`RunningMeanStd`, and the statistics are one :class:`ObsStats`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tandem.core.spaces import Space, build, get_leaf, leaf_name, leaves
from tandem.core.types import ObsStats


@dataclasses.dataclass
class RunningMeanStd:
    """Welford/Chan running statistics; ``count`` starts at a tiny epsilon like SB3's."""

    mean: np.ndarray
    var: np.ndarray
    count: float = 1e-4
    eps: float = 1e-8
    clip: float = 10.0

    @classmethod
    def create(cls, dim: int) -> "RunningMeanStd":
        return cls(np.zeros(dim, np.float64), np.ones(dim, np.float64))

    def update(self, x: np.ndarray) -> None:
        """Merge a batch [N, dim] (or one row [dim]) into the statistics (Chan et al., 1979)."""
        x = np.asarray(x, np.float64).reshape(-1, self.mean.shape[0])
        self.mean, self.var, self.count = merge_moments(self.mean, self.var, self.count, x)

    def stats(self) -> ObsStats:
        """float32 mean and std, as the jitted functions take them."""
        return ObsStats(self.mean.astype(np.float32),
                        np.sqrt(self.var + self.eps).astype(np.float32))

    def state_arrays(self, prefix: str = "obs_rms") -> dict[str, np.ndarray]:
        return {f"{prefix}/mean": self.mean, f"{prefix}/var": self.var,
                f"{prefix}/count": np.asarray(self.count, np.float64)}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], prefix: str = "obs_rms"
                   ) -> "RunningMeanStd":
        return cls(np.array(arrays[f"{prefix}/mean"], np.float64),
                   np.array(arrays[f"{prefix}/var"], np.float64),
                   float(arrays[f"{prefix}/count"]))


def merge_moments(mean, var, count, x):
    """Merge batch ``x`` [N, dim] into (mean [dim], var [dim], count) (Chan et al., 1979).

    Population variance, as SB3's RunningMeanStd. NumPy in, NumPy out; JAX in, JAX out.
    """
    n = x.shape[0]
    b_mean, b_var = x.mean(axis=0), x.var(axis=0)
    total = count + n
    delta = b_mean - mean
    new_mean = mean + delta * n / total
    m2 = var * count + b_var * n + delta**2 * count * n / total
    return new_mean, m2 / total, total


class RMS(NamedTuple):
    """Running statistics as a pytree (compiled path): float32 mean/var [dim], count []."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, dim: int) -> "RMS":
        return cls(jnp.zeros(dim, jnp.float32), jnp.ones(dim, jnp.float32),
                   jnp.asarray(1e-4, jnp.float32))

    def update(self, x: jax.Array) -> "RMS":
        return RMS(*merge_moments(self.mean, self.var, self.count,
                                  x.reshape(-1, self.mean.shape[0])))

    def stats(self, eps: float = 1e-8) -> ObsStats:
        return ObsStats(self.mean, jnp.sqrt(self.var + eps))


def scale_reward(reward, ret_var, eps: float = 1e-8, clip: float = 10.0):
    """Reward divided by the running std of the discounted return, clipped (SB3 VecNormalize;
    Engstrom et al., 2020, "reward scaling"). NumPy or JAX."""
    return (reward / (ret_var + eps) ** 0.5).clip(-clip, clip)


def normalize_obs(obs, stats, clip: float = 10.0):
    """(obs - mean) / std, clipped to [-clip, clip], leaf by leaf; identity where ``stats``
    is None. ``stats`` is an :class:`ObsStats` (a flat observation) or a dict / tuple of them
    and None shaped like the observations (:meth:`ObsRMS.stats`).

    Works on NumPy and JAX arrays alike, so the jitted policy and the exported NumPy policy
    apply the same transform.
    """
    if stats is None:
        return obs
    if isinstance(stats, ObsStats):
        z = (obs - stats.mean) / stats.std
        return z.clip(-clip, clip)
    if isinstance(stats, dict):
        return {k: normalize_obs(v, stats.get(k), clip) for k, v in obs.items()}
    return tuple(normalize_obs(v, s, clip) for v, s in zip(obs, stats))


def normalized_leaves(space: Space) -> list[tuple]:
    """Paths of the leaves :class:`ObsRMS` normalises: float Boxes that are not images."""
    return [path for path, leaf in leaves(space)
            if leaf.kind == "box" and leaf.dtype.startswith("float") and not leaf.is_image]


@dataclasses.dataclass
class ObsRMS:
    """Running statistics of every normalised leaf of an observation space (host side)."""

    space: Space
    leaves: dict  # path tuple -> RunningMeanStd

    @classmethod
    def create(cls, space: Space) -> "ObsRMS":
        return cls(space, {p: RunningMeanStd.create(int(np.prod(get_leaf_space(space, p).shape)))
                           for p in normalized_leaves(space)})

    def update(self, obs) -> None:
        """Merge one observation or a batch (leading axes) of canonical observations."""
        for path, rms in self.leaves.items():
            rms.update(get_leaf(obs, path))

    def stats(self):
        """ObsStats per normalised leaf, None elsewhere, shaped like the observations."""
        def leaf_stats(path, leaf):
            rms = self.leaves.get(path)
            if rms is None:
                return None
            st = rms.stats()
            return ObsStats(st.mean.reshape(leaf.shape), st.std.reshape(leaf.shape))
        if self.space.kind != "dict" and self.space.kind != "tuple":
            return leaf_stats((), self.space)
        return build(self.space, leaf_stats)

    def state_arrays(self, prefix: str = "obs_rms") -> dict[str, np.ndarray]:
        out = {}
        for path, rms in self.leaves.items():
            out.update(rms.state_arrays("/".join(filter(None, (prefix, leaf_name(path))))))
        return out

    @classmethod
    def from_state(cls, space: Space, arrays: dict, prefix: str = "obs_rms") -> "ObsRMS":
        return cls(space, {p: RunningMeanStd.from_state(
            arrays, "/".join(filter(None, (prefix, leaf_name(p)))))
            for p in normalized_leaves(space)})


def get_leaf_space(space: Space, path: tuple) -> Space:
    for p in path:
        space = dict(space.items)[p] if space.kind == "dict" else space.items[p]
    return space
