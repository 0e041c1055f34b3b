"""Pytrees that flow between the env driver, the replay buffer and the jitted updates."""

from __future__ import annotations

from typing import NamedTuple

import jax


class Transition(NamedTuple):
    """One environment step (or a batch of them, with leading dims such as [G, B]).

    ``terminated`` is 1.0 when the episode ended in a terminal state (no bootstrapping).
    Truncation (a time limit) is *not* stored: a truncated step bootstraps from ``next_obs``,
    which is the final observation of the episode, kept before the auto-reset.
    """

    obs: jax.Array        # [..., obs_dim]
    action: jax.Array     # [..., action_dim], in the policy's [-1, 1] range
    reward: jax.Array     # [...]
    next_obs: jax.Array   # [..., obs_dim]
    terminated: jax.Array  # [...], float 0/1


class ObsStats(NamedTuple):
    """Observation normalisation statistics passed into jitted functions (float32)."""

    mean: jax.Array  # [obs_dim]
    std: jax.Array   # [obs_dim]


def mean_metrics(metrics: dict) -> dict:
    """Average every metric over its leading (scan) axis."""
    return jax.tree_util.tree_map(lambda x: x.mean(axis=0), metrics)
