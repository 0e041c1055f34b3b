"""Return and target computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def td_target(reward: jax.Array, terminated: jax.Array, next_value: jax.Array,
              gamma: float) -> jax.Array:
    """One-step TD target r + gamma * (1 - terminated) * V(s').

    Only termination stops bootstrapping; a time-limit truncation keeps it, because the
    state after a truncation still has value (Pardo et al., 2018).
    """
    return reward + gamma * (1.0 - terminated) * next_value


def gae(reward: jax.Array, value: jax.Array, next_value: jax.Array, terminated: jax.Array,
        done: jax.Array, gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al., 2016, eq. 16), time-major.

    All inputs are [T, ...]. ``next_value[t]`` is V of the state the env reached after step t
    (the *final* observation when the episode ended there, not the reset one), ``terminated``
    stops bootstrapping from it, and ``done`` (terminated or truncated) stops the advantage
    from flowing back across an episode boundary:

        delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - value_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1},      A_T = 0

    A truncated step therefore bootstraps from its final observation's value, which is the
    correct target for a time limit. Returns (advantages, value targets = advantages + value).
    """
    delta = td_target(reward, terminated, next_value, gamma) - value
    carry_on = gamma * lam * (1.0 - done)

    def back(adv_next, x):
        d, c = x
        adv = d + c * adv_next
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(delta[0]), (delta, carry_on), reverse=True)
    return adv, adv + value


def vtrace(reward: jax.Array, value: jax.Array, next_value: jax.Array, terminated: jax.Array,
           done: jax.Array, log_rho: jax.Array, gamma: float, lam: float = 1.0,
           rho_bar: float = 1.0, c_bar: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """V-trace targets and policy-gradient advantages (Espeholt et al., 2018, eq. 1 and 4.2),
    time-major, for trajectories from a behaviour policy mu that lags the learner's pi.

    All inputs are [T, ...]; ``log_rho[t] = log pi(a_t|x_t) - log mu(a_t|x_t)``;
    ``next_value``, ``terminated`` and ``done`` mean what they mean in :func:`gae` (the value
    of the state after step t, the final observation's when the episode ended there). With
    rho_t = min(rho_bar, pi/mu) and c_t = lam * min(c_bar, pi/mu):

        delta_t   = rho_t * (r_t + gamma * (1 - terminated_t) * next_value_t - value_t)
        v_t - V_t = delta_t + gamma * c_t * (1 - done_t) * (v_{t+1} - V_{t+1}),  v_T = V_T
        pg_adv_t  = rho_t * (r_t + gamma * (1 - terminated_t) * v'_{t+1} - value_t)

    where v'_{t+1} is v_{t+1} inside an episode and next_value_t where it ended (the
    episode's last state has no later V-trace correction). On-policy (log_rho = 0) with
    rho_bar, c_bar >= 1 and lam = 1, v_t is the n-step return bootstrapped from the value
    after the last step (Remark 1). Returns (v [T, ...], pg_adv [T, ...]), without gradients.
    """
    ratio = jnp.exp(log_rho)
    rho = jnp.minimum(rho_bar, ratio)
    c = lam * jnp.minimum(c_bar, ratio)
    discount = gamma * (1.0 - terminated)
    delta = rho * (reward + discount * next_value - value)
    carry_on = gamma * c * (1.0 - done)

    def back(acc_next, x):
        d, k = x
        acc = d + k * acc_next
        return acc, acc

    _, acc = jax.lax.scan(back, jnp.zeros_like(delta[0]), (delta, carry_on), reverse=True)
    vs = value + acc
    acc_next = jnp.concatenate([acc[1:], jnp.zeros_like(acc[:1])])  # v_{t+1} - V_{t+1}
    vs_next = next_value + (1.0 - done) * acc_next
    pg_adv = rho * (reward + discount * vs_next - value)
    return jax.lax.stop_gradient(vs), jax.lax.stop_gradient(pg_adv)
