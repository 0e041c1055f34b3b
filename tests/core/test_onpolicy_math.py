"""Exact-value tests of the on-policy core: GAE, categorical distributions, running stats."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tandem.core.distributions import Categorical, MultiCategorical
from tandem.core.normalize import RMS, RunningMeanStd, scale_reward
from tandem.core.returns import gae


def test_gae_exact_values_with_truncation_and_termination():
    # T=3, one env, gamma 0.9, lambda 0.8 (gamma * lambda = 0.72).
    # Step 1 ends the episode by *truncation*: it bootstraps from its final obs value (9.0)
    # but the advantage does not flow back from step 2 (a new episode):
    #   delta = [1 + .9*1 - .5, 2 + .9*9 - 1, 3 + .9*2 - 1.5] = [1.4, 9.1, 3.3]
    #   A_2 = 3.3, A_1 = 9.1, A_0 = 1.4 + .72 * 9.1 = 7.952; targets = A + V
    r = jnp.array([1.0, 2.0, 3.0])
    v = jnp.array([0.5, 1.0, 1.5])
    nv = jnp.array([1.0, 9.0, 2.0])
    adv, target = gae(r, v, nv, jnp.zeros(3), jnp.array([0.0, 1.0, 0.0]), 0.9, 0.8)
    np.testing.assert_allclose(adv, [7.952, 9.1, 3.3], rtol=1e-6)
    np.testing.assert_allclose(target, [8.452, 10.1, 4.8], rtol=1e-6)
    # The same step *terminated*: no bootstrap. delta_1 = 2 - 1 = 1, A_0 = 1.4 + .72 = 2.12
    adv, _ = gae(r, v, nv, jnp.array([0.0, 1.0, 0.0]), jnp.array([0.0, 1.0, 0.0]), 0.9, 0.8)
    np.testing.assert_allclose(adv, [2.12, 1.0, 3.3], rtol=1e-6)


def test_gae_lambda_one_is_the_n_step_return_and_zero_is_td():
    # lambda=1, no episode end: A_0 + V_0 = r0 + g r1 + g^2 (r2 + g V(s3)) (A2C's n-step)
    r, v = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.3, 0.2, 0.1])
    nv = jnp.array([0.2, 0.1, 5.0])
    _, target = gae(r, v, nv, jnp.zeros(3), jnp.zeros(3), 0.5, 1.0)
    assert float(target[0]) == pytest.approx(1 + 0.5 * 2 + 0.25 * (3 + 0.5 * 5.0))
    adv, _ = gae(r, v, nv, jnp.zeros(3), jnp.zeros(3), 0.5, 0.0)
    np.testing.assert_allclose(adv, r + 0.5 * nv - v, rtol=1e-6)


def _gae_loop(r, v, nv, term, done, gamma, lam):
    """Plain Python reference, one env at a time."""
    T, N = r.shape
    adv = np.zeros((T, N))
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            delta = r[t, n] + gamma * (1 - term[t, n]) * nv[t, n] - v[t, n]
            running = delta + gamma * lam * (1 - done[t, n]) * running
            adv[t, n] = running
    return adv


def test_scanned_gae_equals_a_python_loop():
    rng = np.random.default_rng(0)
    T, N = 17, 5
    r, v, nv = (rng.normal(size=(T, N)) for _ in range(3))
    term = (rng.random((T, N)) < 0.1).astype(np.float64)
    done = np.maximum(term, (rng.random((T, N)) < 0.1))
    adv, target = gae(*(jnp.asarray(x, jnp.float32) for x in (r, v, nv, term, done)), 0.97, 0.9)
    want = _gae_loop(r, v, nv, term, done, 0.97, 0.9)
    np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target, want + v, rtol=1e-5, atol=1e-5)


def test_categorical_exact_values():
    p = np.array([0.2, 0.3, 0.5])
    d = Categorical(jnp.log(jnp.asarray(p)))
    assert float(d.log_prob(jnp.array(2))) == pytest.approx(math.log(0.5), rel=1e-6)
    # H = -(.2 ln .2 + .3 ln .3 + .5 ln .5) = 1.029653
    assert float(d.entropy()) == pytest.approx(1.029653, rel=1e-5)
    assert int(d.mode()) == 2
    samples = np.asarray(jax.vmap(d.sample)(jax.random.split(jax.random.PRNGKey(0), 20_000)))
    np.testing.assert_allclose(np.bincount(samples, minlength=3) / 20_000, p, atol=0.015)
    masked = Categorical(jnp.array([0.0, -jnp.inf]))  # an impossible action: entropy stays 0
    assert float(masked.entropy()) == 0.0


def test_multicategorical_is_a_product_of_independent_factors():
    logits = jnp.log(jnp.array([0.25, 0.75, 0.1, 0.2, 0.7]))
    d = MultiCategorical(logits, (2, 3))
    x = jnp.array([1, 2])
    assert float(d.log_prob(x)) == pytest.approx(math.log(0.75 * 0.7), rel=1e-6)
    h = Categorical(logits[:2]).entropy() + Categorical(logits[2:]).entropy()
    assert float(d.entropy()) == pytest.approx(float(h), rel=1e-6)
    np.testing.assert_array_equal(d.mode(), [1, 2])
    s = d.sample(jax.random.PRNGKey(1))
    assert s.shape == (2,) and 0 <= int(s[0]) < 2 and 0 <= int(s[1]) < 3
    batch = MultiCategorical(jnp.tile(logits, (4, 1)), (2, 3))  # batched [4, 5] logits
    assert batch.log_prob(jnp.tile(x, (4, 1))).shape == (4,)


def test_running_stats_jax_and_numpy_agree_with_the_batch_moments():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(300, 4))
    host, dev = RunningMeanStd.create(4), RMS.create(4)
    for chunk in np.split(data, 6):
        host.update(chunk)
        dev = dev.update(jnp.asarray(chunk, jnp.float32))
    np.testing.assert_allclose(host.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(host.var, data.var(0), rtol=1e-5)
    np.testing.assert_allclose(dev.mean, host.mean, rtol=1e-4)
    np.testing.assert_allclose(dev.var, host.var, rtol=1e-4)
    # reward scaling: divide by the return std, clip at 10
    assert scale_reward(np.array([4.0, 1e6]), 4.0).tolist() == pytest.approx([2.0, 10.0])
