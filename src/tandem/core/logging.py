"""What the drivers share to describe the episodes they played: ``rollout/`` metrics.

The session decides when a log line is written and writes it (``tandem.run.session``); a
driver only keeps its recent episodes with :func:`record_episodes` and turns them into
metrics with :func:`episode_metrics`.
"""

from __future__ import annotations

import jax
import numpy as np

RECENT = 20  # finished episodes averaged for the rollout/ metrics


def record_episodes(h, returns: list, lengths: list) -> None:
    """Fold finished episodes into a driver's host state ``h`` (``recent_returns``,
    ``recent_lengths``: the last RECENT; ``episode``: the count)."""
    if returns:
        h.recent_returns = (h.recent_returns + list(returns))[-RECENT:]
        h.recent_lengths = (h.recent_lengths + list(lengths))[-RECENT:]
        h.episode += len(returns)


def episode_metrics(recent_returns: list, recent_lengths: list, episodes: int) -> dict:
    """``rollout/`` metrics of the recent episodes."""
    metrics = {}
    if recent_returns:
        metrics["rollout/ep_return_mean"] = float(np.mean(recent_returns))
        metrics["rollout/ep_len_mean"] = float(np.mean(recent_lengths))
    metrics["rollout/episodes"] = float(episodes)
    return metrics


def to_floats(metrics: dict) -> dict:
    """A learner's metrics (device or NumPy scalars) as Python floats."""
    return {k: float(v) for k, v in jax.device_get(metrics).items()}
