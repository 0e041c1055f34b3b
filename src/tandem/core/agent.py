"""The one record every algorithm hands to the drivers: its functions, jitted and raw.

An algorithm's file ends with a builder ``make_<algo>(cfg, spec) -> AgentFns``. Drivers use
only this record, whichever algorithm it came from:

- ``init(key) -> state``;
- ``update(state, data, arg) -> (state, metrics)``: one learning step. Off-policy: one
  gradient step on a batch [B] (``arg`` = observation statistics or None); on-policy: one
  rollout's epochs and minibatches (``arg`` = the learning-rate fraction);
- ``update_many(state, batches, obs_stats)``: off-policy only, G gradient steps on batches
  [G, B] fused in one ``lax.scan`` (None on-policy);
- ``update_and_explore(state, batches, obs_stats, obs, key, step, carry) -> (state, metrics,
  action, carry)``: off-policy only, ``update_many`` then ``explore`` with the new parameters,
  in one call: the host loop gets its next action without a second dispatch (None on-policy);
- ``explore(params, obs_stats, obs, key, step, carry) -> (action, carry, logp)``: the
  behaviour action for env step ``step`` (the key is folded with the step, so a resumed run
  draws the same numbers). ``carry`` is exploration state (OU noise; unused otherwise);
  ``logp`` the action's log-probability where the policy has one (zeros otherwise);
- ``act(params, obs_stats, obs) -> action``: the deterministic policy, any leading batch
  dims; ``raw["act"]`` is the same function unjitted, for export;
- ``policy_params(state)``: the part of the state a deployed policy needs.

Every jitted entry point counts its traces in ``traces`` (the no-retrace tests read it).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from tandem.core.spaces import EnvSpec


class AgentFns(NamedTuple):
    init: Callable
    update: Callable
    update_many: Callable | None
    update_and_explore: Callable | None
    explore: Callable
    act: Callable
    policy_params: Callable[[Any], Any]
    nets: Any
    spec: EnvSpec
    traces: dict
    raw: dict  # the same functions unjitted (init, update, update_many, explore, act)
    # offline only: (state, dataset Transition [N, ...]) -> state, for what an algorithm
    # computes once from its dataset (SAC-RND's input moments); None for the others
    offline_init: Callable | None = None


def counted_jit(fn: Callable, name: str, traces: dict, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fn)`` that adds 1 to ``traces[name]`` each time JAX traces it."""
    traces.setdefault(name, 0)

    def counted(*args, **kwargs):
        traces[name] += 1
        return fn(*args, **kwargs)
    return jax.jit(counted, **jit_kwargs)


def mean_metrics(metrics: dict) -> dict:
    """Average every metric over its leading (scan) axis."""
    return jax.tree_util.tree_map(lambda x: x.mean(axis=0), metrics)


def agent(*, init: Callable, update: Callable, explore: Callable, act: Callable,
          policy_params: Callable, nets: Any, spec: EnvSpec, scan_updates: bool,
          offline_init: Callable | None = None) -> AgentFns:
    """Jit and count one algorithm's pure functions. With ``scan_updates`` (off-policy),
    ``update_many`` scans ``update`` over G batches [G, B, ...] in one call."""
    traces: dict = {}
    raw = {"init": init, "update": update, "explore": explore, "act": act,
           "update_many": None}
    jitted_explore = counted_jit(explore, "explore", traces)
    update_many_j = update_and_explore_j = None
    if scan_updates:
        def update_many(state, batches, obs_stats=None):
            """G gradient steps in one call: every leaf of ``batches`` is [G, B, ...]."""
            state, metrics = jax.lax.scan(lambda s, b: update(s, b, obs_stats), state, batches)
            return state, mean_metrics(metrics)
        raw["update_many"] = update_many
        update_many_j = counted_jit(update_many, "update_many", traces)

        def update_and_explore(state, batches, obs_stats, obs, key, step, carry):
            """``update_many``, then the behaviour action for env step ``step`` from the
            updated parameters (the jitted pieces inlined, so their traces count too)."""
            state, metrics = update_many_j(state, batches, obs_stats)
            action, carry, _ = jitted_explore(policy_params(state), obs_stats, obs, key, step,
                                              carry)
            return state, metrics, action, carry
        update_and_explore_j = counted_jit(update_and_explore, "update_and_explore", traces)
    return AgentFns(
        init=jax.jit(init),
        update=counted_jit(update, "update", traces),
        update_many=update_many_j,
        update_and_explore=update_and_explore_j,
        explore=jitted_explore,
        act=counted_jit(act, "act", traces),
        policy_params=policy_params, nets=nets, spec=spec, traces=traces, raw=raw,
        offline_init=None if offline_init is None else jax.jit(offline_init))
