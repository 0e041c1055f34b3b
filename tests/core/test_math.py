"""Exact-value tests for the core math; expected numbers are worked out in comments."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tandem.core.distributions import Normal, TanhNormal, tanh_log_det_jacobian
from tandem.core.normalize import RunningMeanStd, normalize_obs
from tandem.core.optim import polyak
from tandem.core.returns import td_target


def test_normal_log_prob_standard():
    # log N(0; 0, 1) = -0.5 log(2 pi) = -0.9189385
    assert float(Normal(jnp.zeros(1), jnp.ones(1)).log_prob(jnp.zeros(1))) == pytest.approx(
        -0.9189385, abs=1e-6)
    # log N(3; 1, 2) = -0.5 ((3-1)/2)^2 - log 2 - 0.9189385 = -0.5 - 0.6931472 - 0.9189385
    assert float(Normal(jnp.ones(1), 2 * jnp.ones(1)).log_prob(3 * jnp.ones(1))) == pytest.approx(
        -2.1120857, abs=1e-6)


def test_tanh_normal_log_prob_exact():
    d = TanhNormal(jnp.zeros(1), jnp.ones(1))
    # u = 0: tanh'(0) = 1, so log p = log N(0; 0, 1) = -0.9189385
    assert float(d.log_prob_pre_tanh(jnp.zeros(1))) == pytest.approx(-0.9189385, abs=1e-6)
    # u = 1: log N(1) = -1.4189385; 1 - tanh(1)^2 = 0.4199743, log = -0.8675616
    # log p = -1.4189385 + 0.8675616 = -0.5513769
    assert float(d.log_prob_pre_tanh(jnp.ones(1))) == pytest.approx(-0.5513769, abs=1e-6)
    # two dims sum: u = (0, 1) -> -0.9189385 - 0.5513769 = -1.4703154
    d2 = TanhNormal(jnp.zeros(2), jnp.ones(2))
    assert float(d2.log_prob_pre_tanh(jnp.array([0.0, 1.0]))) == pytest.approx(-1.4703154, abs=1e-6)


def test_tanh_log_det_is_stable_for_large_u():
    # log(1 - tanh(20)^2) = log(4) - 40 + O(e^-40) = -38.6137056; the naive formula gives -inf
    assert float(tanh_log_det_jacobian(jnp.array([20.0]))) == pytest.approx(-38.6137056, abs=1e-5)
    assert float(tanh_log_det_jacobian(jnp.array([-20.0]))) == pytest.approx(-38.6137056, abs=1e-5)
    assert not np.isfinite(float(jnp.log(1 - jnp.tanh(20.0) ** 2)))


def test_the_bounded_squash_correction_is_sb3s():
    # log(1 - tanh(u)^2 + 1e-6): at u = 0 it is log(1 + 1e-6); far out it stops at log(1e-6)
    # (the exact correction keeps falling: -2|u| + 2 log 2)
    u = jnp.array([0.0, 1.0, 5.0, 20.0])
    bounded = [float(tanh_log_det_jacobian(x[None], 1e-6)) for x in u]
    want = [np.log(1 - np.tanh(x) ** 2 + 1e-6) for x in (0.0, 1.0, 5.0, 20.0)]
    np.testing.assert_allclose(bounded, want, rtol=1e-4, atol=1e-3)  # float32 tanh
    assert bounded[-1] == pytest.approx(np.log(1e-6), rel=1e-5)
    exact = float(tanh_log_det_jacobian(u[3:]))
    assert exact == pytest.approx(-38.6137056, abs=1e-5) and exact < bounded[-1] - 20
    # the distribution carries its correction
    d = TanhNormal(jnp.zeros(1), jnp.ones(1), 1e-6)
    assert float(d.log_prob_pre_tanh(jnp.array([20.0]))) == pytest.approx(
        float(Normal(jnp.zeros(1), jnp.ones(1)).log_prob(jnp.array([20.0]))) - np.log(1e-6),
        rel=1e-6)


def test_tanh_normal_sample_matches_log_prob():
    d = TanhNormal(jnp.array([0.3, -0.2]), jnp.array([0.5, 1.5]))
    a, logp = d.sample_and_log_prob(jax.random.PRNGKey(0))
    u = jnp.arctanh(a)
    assert float(logp) == pytest.approx(float(d.log_prob_pre_tanh(u)), abs=1e-4)
    assert np.all(np.abs(np.asarray(a)) < 1)


def test_tanh_normal_density_integrates_to_one():
    # numerical integral of p(a) over (-1, 1) for a 1-D TanhNormal(0.4, 0.7)
    d = TanhNormal(jnp.array([0.4]), jnp.array([0.7]))
    a = jnp.linspace(-0.999999, 0.999999, 200_001)
    logp = jax.vmap(lambda x: d.log_prob_pre_tanh(jnp.arctanh(x)[None]))(a)
    integral = float(jnp.trapezoid(jnp.exp(logp), a))
    assert integral == pytest.approx(1.0, abs=2e-3)


def test_td_target_exact():
    # r + gamma * (1 - done) * v: 1 + 0.9 * 10 = 10; terminated: 1
    r, v = jnp.array([1.0, 1.0]), jnp.array([10.0, 10.0])
    out = td_target(r, jnp.array([0.0, 1.0]), v, 0.9)
    np.testing.assert_allclose(np.asarray(out), [10.0, 1.0], rtol=1e-6)


def test_polyak_exact():
    # (1 - 0.25) * 2 + 0.25 * 4 = 2.5 ; tau = 1 copies the online value
    tgt = {"w": jnp.array([2.0]), "b": jnp.array([0.0])}
    onl = {"w": jnp.array([4.0]), "b": jnp.array([-8.0])}
    out = polyak(tgt, onl, 0.25)
    assert float(out["w"][0]) == 2.5 and float(out["b"][0]) == -2.0
    assert float(polyak(tgt, onl, 1.0)["w"][0]) == 4.0


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(500, 4))
    rms = RunningMeanStd.create(4)
    rms.count = 0.0  # exact comparison: no prior pseudo-count
    rms.update(data[:7])
    for row in data[7:300]:
        rms.update(row)
    rms.update(data[300:])
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-10)
    z = normalize_obs(data, rms.stats())
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-5)
    assert math.isclose(float(np.abs(normalize_obs(np.full(4, 1e6), rms.stats())).max()), 10.0)
