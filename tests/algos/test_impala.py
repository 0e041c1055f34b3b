"""IMPALA's learner step: on-policy data (behaviour = current policy) makes V-trace n-step
returns, so one IMPALA step must equal one textbook A2C step; off-policy data must not; the
learning rate anneals through the optimiser state without recompiling."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tandem.algos.impala import IMPALAConfig, make_impala
from tandem.core.types import Trajectory
from tests.algos.test_ppo import BOX, DISCRETE, _rollout, _textbook_a2c, spec

CFG = IMPALAConfig(hidden_sizes=(8, 8), ent_coef=0.01, anneal_lr=True)


def _on_policy(fns, state, ro) -> Trajectory:
    dist = fns.nets.actor.apply(state.params["actor"], ro.obs)
    return Trajectory(ro, np.asarray(dist.log_prob(ro.action)))


def _close(a, b):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6),
                           a, b)


@pytest.mark.parametrize("action", [BOX, DISCRETE], ids=["box", "discrete"])
def test_on_policy_impala_step_equals_a_textbook_a2c_step(action):
    # _rollout has a termination (env 0, t=1) and a truncation (env 1, t=3): V-trace must
    # stop at the first and bootstrap from the final observation's value at the second
    fns = make_impala(CFG, spec(action))
    state = fns.init(jax.random.PRNGKey(0))
    ro = _rollout(action)
    tr = _on_policy(fns, state, ro)
    new, m = fns.update(state, tr, np.float32(1.0))
    _close(new.params, _textbook_a2c(state.params, fns.nets, CFG, ro))
    assert float(m["train/rho_mean"]) == pytest.approx(1.0, abs=1e-5)
    assert float(m["train/rho_clipped_fraction"]) == 0.0

    # annealing: at lr_frac 0.25 the step is the textbook step at a quarter of the rate
    quarter, m = fns.update(state, tr, np.float32(0.25))
    assert float(m["train/learning_rate"]) == pytest.approx(0.25 * CFG.learning_rate)
    _close(quarter.params, _textbook_a2c(
        state.params, fns.nets, dataclasses.replace(CFG, learning_rate=0.25 * CFG.learning_rate),
        ro))
    assert fns.traces["update"] == 1  # a new rate is data, not a new compilation

    # without annealing the fraction is ignored
    flat = make_impala(dataclasses.replace(CFG, anneal_lr=False), spec(action))
    same, _ = flat.update(state, tr, np.float32(0.25))
    _close(same.params, new.params)


def test_off_policy_data_is_corrected_not_ignored():
    fns = make_impala(CFG, spec(DISCRETE))
    state = fns.init(jax.random.PRNGKey(0))
    ro = _rollout(DISCRETE)
    tr = _on_policy(fns, state, ro)
    # a behaviour policy that made every taken action half as likely: rho = 2, and with
    # rho_bar = c_bar = 1 every rho and c is truncated to 1, the on-policy weights
    lagged = tr._replace(behaviour_logp=tr.behaviour_logp - np.log(2.0))
    on, _ = fns.update(state, tr, np.float32(1.0))
    off, m = fns.update(state, lagged, np.float32(1.0))
    assert float(m["train/rho_mean"]) == pytest.approx(2.0, rel=1e-5)
    assert float(m["train/rho_clipped_fraction"]) == 1.0
    _close(off.params, on.params)
    # a behaviour that made the actions twice as likely: rho = c = 0.5, other targets
    eager = tr._replace(behaviour_logp=tr.behaviour_logp + np.log(2.0))
    other, m = fns.update(state, eager, np.float32(1.0))
    assert float(m["train/rho_mean"]) == pytest.approx(0.5, rel=1e-5)
    diff = jax.tree_util.tree_map(lambda x, y: float(jnp.max(jnp.abs(x - y))), other.params,
                                  on.params)
    assert max(jax.tree_util.tree_leaves(diff)) > 1e-4
