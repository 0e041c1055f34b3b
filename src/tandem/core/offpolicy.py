"""What every off-policy algorithm hands to the drivers: its jitted entry points."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from tandem.core.types import ObsStats, Transition, mean_metrics


class OffPolicyFns(NamedTuple):
    """Compiled entry points of an off-policy algorithm for one (config, obs_dim, action_dim);
    the drivers use only these. ``*_raw`` are the unjitted functions, for callers that
    compile them into a larger program (the compiled loop)."""

    init: Callable[[jax.Array], Any]
    update_many: Callable[..., tuple[Any, dict]]
    explore: Callable[..., tuple[jax.Array, jax.Array]]
    act: Callable[..., jax.Array]
    policy_params: Callable[[Any], Any]
    nets: Any
    traces: dict  # how many times each function was traced (the no-retrace tests read it)
    raw: dict     # unjitted init / update_many / explore / act


def assemble(init: Callable, step_fn: Callable, explore_fn: Callable, act_fn: Callable,
             policy_params: Callable, nets: Any) -> OffPolicyFns:
    """Wrap one algorithm's pure functions: scan ``step_fn`` over G batches, count traces,
    and jit each entry point."""
    traces = {"update_many": 0, "explore": 0, "act": 0}

    def update_many(state, batches: Transition, obs_stats: ObsStats | None = None):
        """G gradient steps in one call: batches has leading dims [G, B]."""
        traces["update_many"] += 1
        state, metrics = jax.lax.scan(lambda s, b: step_fn(s, b, obs_stats), state, batches)
        return state, mean_metrics(metrics)

    def explore_(params, obs_stats, obs, key, step, noise):
        traces["explore"] += 1
        return explore_fn(params, obs_stats, obs, key, step, noise)

    def act_(params, obs_stats, obs):
        traces["act"] += 1
        return act_fn(params, obs_stats, obs)

    raw = {"init": init, "update_many": update_many, "explore": explore_fn, "act": act_fn}
    return OffPolicyFns(jax.jit(init), jax.jit(update_many), jax.jit(explore_), jax.jit(act_),
                        policy_params, nets, traces, raw)
