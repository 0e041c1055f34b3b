"""Statistics across seeds that do not mislead with few runs (Agarwal et al., 2021, "Deep RL at
the edge of the statistical precipice"): interquartile mean, stratified-bootstrap confidence
intervals, probability of improvement, and confidence bands for learning curves.

Resampling is scipy's ``stats.bootstrap`` (percentile intervals, which stay defined when every
seed scored the same, e.g. CartPole's 500). Host-side NumPy only; nothing here runs in jit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 5_000


def iqm(x, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of scores (25% trimmed from each end,
    ``floor(0.25 n)`` values per side, as ``scipy.stats.trim_mean``)."""
    from scipy.stats import trim_mean
    return trim_mean(np.asarray(x, np.float64), 0.25, axis=axis)


def _stat_of_tasks(stat):
    """A statistic of several tasks' score arrays: the mean over tasks of ``stat`` per task."""
    def fn(*samples, axis=-1):
        return np.mean(np.broadcast_arrays(*[stat(s, axis=axis) for s in samples]), axis=0)
    return fn


def _bootstrap(samples: list[np.ndarray], fn, confidence: float, n_resamples: int,
               seed: int) -> tuple[float, float]:
    """Percentile interval of ``fn(*samples)`` resampling each sample on its own. A sample of
    one score cannot be resampled (scipy needs two): it is held fixed while the others are
    resampled (the interval is the point when every sample has one score)."""
    from scipy.stats import bootstrap

    moving = [i for i, s in enumerate(samples) if s.size > 1]
    point = float(fn(*samples))
    if not moving:
        return point, point

    def of_moving(*drawn, axis=-1):
        full = list(samples)
        for i, d in zip(moving, drawn):
            full[i] = d
        return fn(*full, axis=axis)

    res = bootstrap([samples[i] for i in moving], of_moving, n_resamples=n_resamples,
                    confidence_level=confidence, method="percentile", vectorized=True,
                    paired=False, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_ci(samples: Sequence[np.ndarray] | np.ndarray, statistic=iqm,
                 confidence: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> tuple[float, float, float]:
    """(point estimate, low, high) of ``statistic`` with a stratified-bootstrap interval.

    ``samples`` is one score array (the seeds of one task) or a list of them (one per task);
    with several tasks, each task's seeds are resampled on their own (the stratification) and
    the statistic is the mean over tasks of the per-task statistic.
    """
    tasks = [np.asarray(s, np.float64).ravel() for s in
             (samples if isinstance(samples, (list, tuple)) else [samples])]
    if any(t.size == 0 for t in tasks):
        raise ValueError("bootstrap_ci: every task needs at least one score")
    fn = _stat_of_tasks(statistic)
    return (float(fn(*tasks)), *_bootstrap(tasks, fn, confidence, n_resamples, seed))


def probability_of_improvement(x, y, axis: int = -1) -> np.ndarray:
    """P(X > Y) for a score X of run set x and Y of run set y, ties counting one half: the
    Mann-Whitney U statistic divided by n * m."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    y = np.moveaxis(np.asarray(y, np.float64), axis, -1)
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def poi_ci(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], confidence: float = 0.95,
           n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """Probability that algorithm X beats Y, averaged over tasks (``xs[k]``, ``ys[k]`` are the
    seeds' scores on task k), with a stratified-bootstrap interval: the seeds of each
    algorithm on each task are resampled independently."""
    xs = [np.asarray(a, np.float64).ravel() for a in xs]
    ys = [np.asarray(b, np.float64).ravel() for b in ys]
    if len(xs) != len(ys) or not xs:
        raise ValueError("poi_ci: give the same tasks, at least one, for both algorithms")
    k = len(xs)

    def fn(*samples, axis=-1):
        return np.mean(np.broadcast_arrays(*[probability_of_improvement(
            samples[i], samples[k + i], axis=axis) for i in range(k)]), axis=0)

    return (float(fn(*xs, *ys)), *_bootstrap(xs + ys, fn, confidence, n_resamples, seed))


def mean_band(curves: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """Mean across seeds of ``curves`` [seeds, points] and a Student-t confidence band for that
    mean (the band is the mean itself when there is one seed)."""
    from scipy.stats import t as student_t

    c = np.asarray(curves, np.float64)
    n = c.shape[0]
    mean = c.mean(axis=0)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = student_t.ppf(0.5 + confidence / 2, n - 1) * c.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half
