"""Pytrees that flow between the env drivers, the replay buffers and the jitted updates.

Observations keep the structure of the env's observation space (``tandem.core.spaces``): an
array for a Box, a dict or tuple of arrays for Dict and Tuple spaces. Shapes below write a
flat Box's ``[..., *obs]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax


class Transition(NamedTuple):
    """One environment step (or a batch of them, with leading dims such as [G, B]).

    ``terminated`` is 1.0 when the episode ended in a terminal state (no bootstrapping).
    A truncated step (a time limit) bootstraps from ``next_obs``, which is the final
    observation of the episode, kept before the auto-reset; replay buffers also record the
    ``truncated`` flag and episode starts, but the updates never need them.
    """

    obs: Any              # [..., *obs]
    action: jax.Array     # [..., action_dim], in the policy's [-1, 1] range
    reward: jax.Array     # [...]
    next_obs: Any         # [..., *obs]
    terminated: jax.Array  # [...], float 0/1


class ObsStats(NamedTuple):
    """Normalisation statistics of one observation leaf, passed into jitted functions."""

    mean: jax.Array  # [*leaf shape] float32
    std: jax.Array   # [*leaf shape] float32


class Rollout(NamedTuple):
    """T steps of N parallel envs, time-major, as an on-policy learner consumes them.

    ``obs`` are the policy's inputs (already normalised when the run normalises them), so the
    learner recomputes exactly the log-probabilities and values the behaviour policy had.
    When an episode ends at step t, ``obs[t + 1]`` is the next episode's first observation and
    ``final_obs[t]`` the observation the episode ended in (a truncated step bootstraps from
    its value); elsewhere ``final_obs`` is ignored.
    """

    obs: Any               # [T, N, *obs]
    action: jax.Array      # [T, N, action_dim] float (Box) | [T, N] int (Discrete) | [T, N, k] int
    reward: jax.Array      # [T, N]
    terminated: jax.Array  # [T, N] float 0/1: the episode ended in a terminal state
    done: jax.Array        # [T, N] float 0/1: terminated or truncated
    final_obs: Any         # [T, N, *obs]
    last_obs: Any          # [N, *obs] the observation after the last step


class Trajectory(NamedTuple):
    """Rollouts collected by an older policy (IMPALA's workers), side by side: the on-policy
    ``Rollout`` [T, B] plus the behaviour policy's log-probability of each action [T, B], so
    a learner can correct for the lag (V-trace)."""

    rollout: Rollout
    behaviour_logp: jax.Array
