"""Running mean/variance of observations (host side, float64), saved with the policy."""

from __future__ import annotations

import dataclasses

import numpy as np

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
        n = x.shape[0]
        b_mean, b_var = x.mean(axis=0), x.var(axis=0)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.var = m2 / total
        self.count = total

    def stats(self) -> ObsStats:
        """float32 mean and std, as the jitted functions take them."""
        return ObsStats(self.mean.astype(np.float32),
                        np.sqrt(self.var + self.eps).astype(np.float32))

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {"obs_rms/mean": self.mean, "obs_rms/var": self.var,
                "obs_rms/count": np.asarray(self.count, np.float64)}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> "RunningMeanStd":
        return cls(np.array(arrays["obs_rms/mean"], np.float64),
                   np.array(arrays["obs_rms/var"], np.float64),
                   float(arrays["obs_rms/count"]))


def normalize_obs(obs, stats: ObsStats | None, clip: float = 10.0):
    """(obs - mean) / std, clipped to [-clip, clip]; identity when ``stats`` is None.

    Works on NumPy and JAX arrays alike, so the jitted policy and the exported NumPy policy
    apply the same transform.
    """
    if stats is None:
        return obs
    z = (obs - stats.mean) / stats.std
    return z.clip(-clip, clip)
