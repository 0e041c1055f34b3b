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


class ActionSpace(NamedTuple):
    """What a policy head needs to know about the env's actions (hashable: a cache key).

    kind "box": ``dim`` reals, the policy acts in [-1, 1] and the driver scales to the
    bounds; "discrete": one integer in [0, n) with ``nvec == (n,)``; "multidiscrete": ``dim``
    integers, the i-th in [0, nvec[i]). Gymnasium's ``start`` offsets are added by the driver.
    """

    kind: str
    dim: int
    nvec: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, spec: dict) -> "ActionSpace":
        """From a run's ``env_spec`` (runs written before discrete support are Box)."""
        a = spec.get("action_space") or {"kind": "box"}
        return cls(a["kind"], int(spec["action_dim"]), tuple(a.get("nvec", ())))


class Rollout(NamedTuple):
    """T steps of N parallel envs, time-major, as an on-policy learner consumes them.

    ``obs`` are the policy's inputs (already normalised when the run normalises them), so the
    learner recomputes exactly the log-probabilities and values the behaviour policy had.
    When an episode ends at step t, ``obs[t + 1]`` is the next episode's first observation and
    ``final_obs[t]`` the observation the episode ended in (a truncated step bootstraps from
    its value); elsewhere ``final_obs`` is ignored.
    """

    obs: jax.Array         # [T, N, obs_dim]
    action: jax.Array      # [T, N, action_dim] float (Box) | [T, N] int (Discrete) | [T, N, k] int
    reward: jax.Array      # [T, N]
    terminated: jax.Array  # [T, N] float 0/1: the episode ended in a terminal state
    done: jax.Array        # [T, N] float 0/1: terminated or truncated
    final_obs: jax.Array   # [T, N, obs_dim]
    last_obs: jax.Array    # [N, obs_dim] the observation after the last step
