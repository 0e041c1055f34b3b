"""V-trace (Espeholt et al., 2018): exact values, the paper's formula written out directly,
and the on-policy case where it reduces to n-step returns (and to GAE's targets)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from tandem.core.returns import gae, vtrace

GAMMA = 0.9


def test_vtrace_exact_values():
    # T = 3, no episode end, gamma 0.9, rho_bar = c_bar = 1, lam 1.
    # V = [1, 2, 3], V(x_3) = 4, r = 1, pi/mu = [2, 0.5, 1] -> rho = c = [1, 0.5, 1]
    # delta = [1 * (1 + .9*2 - 1), .5 * (1 + .9*3 - 2), 1 * (1 + .9*4 - 3)] = [1.8, .85, 1.6]
    # v - V: [2] 1.6; [1] .85 + .9*.5*1.6 = 1.57; [0] 1.8 + .9*1*1.57 = 3.213
    # v = [4.213, 3.57, 4.6]
    # pg_adv = rho * (r + .9 * [v_1, v_2, V_3] - V) = [3.213, .5 * 3.14, 1.6] = [3.213, 1.57, 1.6]
    vs, adv = vtrace(jnp.ones(3), jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 3.0, 4.0]),
                     jnp.zeros(3), jnp.zeros(3), jnp.log(jnp.array([2.0, 0.5, 1.0])), GAMMA)
    np.testing.assert_allclose(vs, [4.213, 3.57, 4.6], rtol=1e-6)
    np.testing.assert_allclose(adv, [3.213, 1.57, 1.6], rtol=1e-6)


def direct_vtrace(r, v, v_boot, ratio, gamma, lam, rho_bar, c_bar):
    """Eq. (1) as written: v_s = V(x_s) + sum_{t=s}^{T-1} gamma^{t-s} (prod_{i=s}^{t-1} c_i)
    rho_t (r_t + gamma V(x_{t+1}) - V(x_t)), one trajectory without episode ends."""
    T = len(r)
    values = list(v) + [v_boot]
    rho = [min(rho_bar, x) for x in ratio]
    c = [lam * min(c_bar, x) for x in ratio]
    out = []
    for s in range(T):
        total = values[s]
        for t in range(s, T):
            total += (gamma ** (t - s) * math.prod(c[s:t]) * rho[t]
                      * (r[t] + gamma * values[t + 1] - values[t]))
        out.append(total)
    adv = [rho[s] * (r[s] + gamma * (out[s + 1] if s + 1 < T else v_boot) - values[s])
           for s in range(T)]
    return np.array(out), np.array(adv)


@pytest.mark.parametrize("rho_bar,c_bar,lam", [(1.0, 1.0, 1.0), (2.0, 0.8, 0.95),
                                                (0.5, 1.5, 1.0)])
def test_vtrace_matches_the_papers_sum(rho_bar, c_bar, lam):
    rng = np.random.default_rng(0)
    T = 7
    r, v = rng.normal(size=T), rng.normal(size=T)
    boot = float(rng.normal())
    ratio = np.exp(rng.normal(scale=0.7, size=T))
    next_v = np.append(v[1:], boot)
    vs, adv = vtrace(jnp.asarray(r), jnp.asarray(v), jnp.asarray(next_v), jnp.zeros(T),
                     jnp.zeros(T), jnp.log(jnp.asarray(ratio)), GAMMA, lam, rho_bar, c_bar)
    want_vs, want_adv = direct_vtrace(r, v, boot, ratio, GAMMA, lam, rho_bar, c_bar)
    np.testing.assert_allclose(vs, want_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-5)


def test_vtrace_cuts_at_episode_ends():
    # two episodes in one trajectory of 6 steps: a termination at t=2 (no bootstrap) and a
    # truncation at t=5 (bootstraps from its final observation's value, 9.0); each segment
    # equals the paper's sum over that segment alone
    rng = np.random.default_rng(1)
    r, v = rng.normal(size=6), rng.normal(size=6)
    ratio = np.exp(rng.normal(scale=0.5, size=6))
    next_v = np.append(v[1:], 9.0)
    next_v[2] = 123.0  # the value after a termination must not matter
    term = np.array([0, 0, 1, 0, 0, 0], np.float32)
    done = np.array([0, 0, 1, 0, 0, 1], np.float32)
    vs, adv = vtrace(jnp.asarray(r), jnp.asarray(v), jnp.asarray(next_v), jnp.asarray(term),
                     jnp.asarray(done), jnp.log(jnp.asarray(ratio)), GAMMA, 1.0, 1.0, 1.0)
    # a terminal step: bootstrap value 0 (gamma * 0)
    vs1, adv1 = direct_vtrace(r[:3], v[:3], 0.0, ratio[:3], GAMMA, 1.0, 1.0, 1.0)
    vs2, adv2 = direct_vtrace(r[3:], v[3:], 9.0, ratio[3:], GAMMA, 1.0, 1.0, 1.0)
    np.testing.assert_allclose(vs, np.concatenate([vs1, vs2]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, np.concatenate([adv1, adv2]), rtol=1e-5, atol=1e-5)


def test_on_policy_vtrace_is_the_n_step_return_and_gae():
    # pi = mu, lam = 1: v_s = sum_{t>=s} gamma^{t-s} r_t + gamma^{T-s} V(x_T) (Remark 1)
    rng = np.random.default_rng(2)
    T, N = 5, 3
    r, v = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    boot = rng.normal(size=N)
    next_v = np.concatenate([v[1:], boot[None]])
    zeros = jnp.zeros((T, N))
    vs, adv = vtrace(jnp.asarray(r), jnp.asarray(v), jnp.asarray(next_v), zeros, zeros, zeros,
                     GAMMA, 1.0, 1.0, 1.0)
    n_step = np.array([[sum(GAMMA ** (t - s) * r[t, n] for t in range(s, T))
                        + GAMMA ** (T - s) * boot[n] for n in range(N)] for s in range(T)])
    np.testing.assert_allclose(vs, n_step, rtol=1e-5, atol=1e-5)
    # and with any lam it is GAE(lam)'s target, its advantage GAE(1)'s
    for lam in (1.0, 0.9):
        vs_l, _ = vtrace(jnp.asarray(r), jnp.asarray(v), jnp.asarray(next_v), zeros, zeros,
                         zeros, GAMMA, lam, 1.0, 1.0)
        gae_adv, target = gae(jnp.asarray(r), jnp.asarray(v), jnp.asarray(next_v), zeros,
                              zeros, GAMMA, lam)
        np.testing.assert_allclose(vs_l, target, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, n_step - v, rtol=1e-5, atol=1e-5)
