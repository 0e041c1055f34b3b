"""SAC's and TD3's updates equal a float64 NumPy reference of the textbook step (issue 22).

The reference below is written from the papers and Stable-Baselines3's ``train()`` with
nothing of tandem but its parameters and its random draws: MLP forward and backward passes
by hand, Adam by hand, the losses as printed in the papers. Several consecutive updates from
the same parameters, batches and noise must agree in losses and parameters to float32
precision, so that no refactor or new default changes the math unnoticed.

SAC (Haarnoja et al., 2018; SB3's order): critic step on the soft Bellman residual with the
current temperature; actor step on E[alpha log pi(a|s) - min Q(s, a)] through the updated
critics; temperature step on -log(alpha) (log pi + target entropy); polyak targets.
TD3 (Fujimoto et al., 2018): critic step on sum_i (Q_i - y)^2 with clipped double-Q and
target policy smoothing; every ``policy_delay`` steps an actor step on -Q_1(s, pi(s)) and
polyak updates of both targets.
"""

import jax
import numpy as np
import pytest

from tandem import SACConfig, TD3Config
from tandem.algos.sac import make_sac
from tandem.algos.td3 import make_td3
from tandem.core.spaces import EnvSpec
from tandem.core.types import Transition

OBS, ACT, B, STEPS = 3, 2, 16, 4
SPEC = EnvSpec.box(OBS, ACT)


# ------------------------------------------------------------------------ NumPy pieces
def _layers(params: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kernel, bias)] of an MLP's Dense_0..Dense_k, float64."""
    return [(np.asarray(params[f"Dense_{i}"]["kernel"], np.float64),
             np.asarray(params[f"Dense_{i}"]["bias"], np.float64))
            for i in range(len(params))]


def forward(layers, x):
    """ReLU MLP; returns the output and what the backward pass needs."""
    cache = []
    h = x
    for i, (w, b) in enumerate(layers):
        z = h @ w + b
        cache.append((h, z))
        h = np.maximum(z, 0.0) if i < len(layers) - 1 else z
    return h, cache


def backward(layers, cache, dout):
    """Gradients [(dW, db)] and the gradient with respect to the input."""
    grads = [None] * len(layers)
    d = dout
    for i in reversed(range(len(layers))):
        h, z = cache[i]
        if i < len(layers) - 1:
            d = d * (z > 0)
        w, _ = layers[i]
        grads[i] = (h.T @ d, d.sum(axis=0))
        d = d @ w.T
    return grads, d


class Adam:
    """optax.adam (b1 0.9, b2 0.999, eps 1e-8) on a list of arrays."""

    def __init__(self, shapes, lr):
        self.m = [np.zeros(s) for s in shapes]
        self.v = [np.zeros(s) for s in shapes]
        self.t, self.lr = 0, lr

    def step(self, params, grads):
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            self.m[i] = 0.9 * self.m[i] + 0.1 * g
            self.v[i] = 0.999 * self.v[i] + 0.001 * g * g
            mhat = self.m[i] / (1 - 0.9 ** self.t)
            vhat = self.v[i] / (1 - 0.999 ** self.t)
            out.append(p - self.lr * mhat / (np.sqrt(vhat) + 1e-8))
        return out


def _flat(layers):
    return [x for wb in layers for x in wb]


def _unflat(flat):
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _critics(params) -> list[list]:
    """The ensemble's n critics as separate layer lists (params have a leading [n] axis)."""
    p = params["params"]["VmapMLP_0"]
    n = np.asarray(p["Dense_0"]["kernel"]).shape[0]
    return [[(np.asarray(p[f"Dense_{i}"]["kernel"][k], np.float64),
              np.asarray(p[f"Dense_{i}"]["bias"][k], np.float64)) for i in range(len(p))]
            for k in range(n)]


def _batches(seed, n):
    rng = np.random.default_rng(seed)
    return [Transition(rng.normal(size=(B, OBS)).astype(np.float32),
                       rng.uniform(-1, 1, (B, ACT)).astype(np.float32),
                       rng.normal(size=B).astype(np.float32),
                       rng.normal(size=(B, OBS)).astype(np.float32),
                       (rng.uniform(size=B) < 0.2).astype(np.float32)) for _ in range(n)]


def _close(a, b, name, rtol=2e-4, atol=2e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=rtol, atol=atol,
                               err_msg=name)


# ------------------------------------------------------------------------ SAC
def _tanh_gauss(actor, obs, eps, correction):
    """a = tanh(mu + sigma eps), log pi(a|s) and what the backward pass needs."""
    out, cache = forward(actor, obs)
    mu, raw = out[:, :ACT], out[:, ACT:]
    log_std = np.clip(raw, -20.0, 2.0)
    std = np.exp(log_std)
    u = mu + std * eps
    t = np.tanh(u)
    logp = (-0.5 * eps ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
    if correction == "bounded":
        logp -= np.log(1 - t ** 2 + 1e-6).sum(-1)
        dcorr = 2 * t * (1 - t ** 2) / (1 - t ** 2 + 1e-6)  # d(-log(1 - tanh^2 + e))/du
    else:
        logp -= np.log(1 - t ** 2).sum(-1)
        dcorr = 2 * t                                       # d(-log(1 - tanh^2))/du
    return t, logp, (cache, raw, std, eps, t, dcorr)


def _min_q(critics, obs, a):
    outs = [forward(c, np.concatenate([obs, a], -1)) for c in critics]
    qs = np.stack([o[0][:, 0] for o in outs])  # [n, B]
    return qs, outs


@pytest.mark.parametrize("correction", ["bounded", "exact"])
def test_sac_update_equals_the_textbook_step(correction):
    cfg = SACConfig(hidden_sizes=(8, 8), squash_correction=correction, actor_lr=3e-3,
                    critic_lr=3e-3, alpha_lr=3e-3)
    fns = make_sac(cfg, SPEC)
    state = fns.init(jax.random.PRNGKey(0))
    batches = _batches(0, STEPS)
    actor = _layers(state.actor_params["params"]["MLP_0"])
    critics = _critics(state.critic_params)
    targets = _critics(state.target_critic_params)
    log_alpha = float(state.log_alpha)
    opt_a = Adam([x.shape for x in _flat(actor)], cfg.actor_lr)
    opt_c = Adam([x.shape for c in critics for x in _flat(c)], cfg.critic_lr)
    opt_t = Adam([()], cfg.alpha_lr)
    gamma, tau, target_entropy = cfg.gamma, cfg.tau, -float(ACT)
    key = state.key
    for step, b in enumerate(batches):
        b64 = Transition(*(np.asarray(x, np.float64) for x in b))
        # tandem's key schedule, for its noise draws (all the reference takes from JAX)
        key, k_critic, k_actor = jax.random.split(key, 3)
        eps_next = np.asarray(jax.random.normal(jax.random.split(k_critic, 3)[0], (B, ACT)),
                              np.float64)
        eps_pi = np.asarray(jax.random.normal(jax.random.split(k_actor)[0], (B, ACT)),
                            np.float64)
        alpha = np.exp(log_alpha)
        # critic step: the soft Bellman residual, halved and summed over the critics
        next_a, next_logp, _ = _tanh_gauss(actor, b64.next_obs, eps_next, correction)
        next_q = _min_q(targets, b64.next_obs, next_a)[0].min(0)
        y = b64.reward + gamma * (1 - b64.terminated) * (next_q - alpha * next_logp)
        qs, outs = _min_q(critics, b64.obs, b64.action)
        critic_loss = 0.5 * ((qs - y) ** 2).mean(1).sum()
        grads = []
        for c, (q, cache), qk in zip(critics, outs, qs):
            g, _ = backward(c, cache, ((qk - y) / B)[:, None])
            grads += [x for wb in g for x in wb]
        flat = opt_c.step([x for c in critics for x in _flat(c)], grads)
        n_layer = len(_flat(critics[0]))
        critics = [_unflat(flat[k * n_layer:(k + 1) * n_layer]) for k in range(len(critics))]
        # actor step through the updated critics, alpha a constant
        a, logp, (cache, raw, std, eps, t, dcorr) = _tanh_gauss(actor, b64.obs, eps_pi,
                                                                correction)
        qs_pi, outs_pi = _min_q(critics, b64.obs, a)
        k_min = qs_pi.argmin(0)  # the critic the minimum takes, per sample
        actor_loss = (alpha * logp - qs_pi.min(0)).mean()
        dq_da = np.zeros((B, ACT))
        for k, (c, (q, cache_q)) in enumerate(zip(critics, outs_pi)):
            _, dx = backward(c, cache_q, (k_min == k).astype(np.float64)[:, None])
            dq_da += dx[:, OBS:]
        du = (alpha * dcorr - dq_da * (1 - t ** 2)) / B          # dL/du
        dmu = du
        dlog_std = (du * std * eps - alpha / B) * ((raw > -20) & (raw < 2))
        g, _ = backward(actor, cache, np.concatenate([dmu, dlog_std], -1))
        actor = _unflat(opt_a.step(_flat(actor), [x for wb in g for x in wb]))
        # temperature step with the actor step's log-probabilities (constants)
        alpha_loss = -(log_alpha * (logp + target_entropy)).mean()
        (log_alpha,) = opt_t.step([np.float64(log_alpha)], [-(logp + target_entropy).mean()])
        targets = [[((1 - tau) * tw + tau * w, (1 - tau) * tb + tau * bb)
                    for (tw, tb), (w, bb) in zip(tc, c)] for tc, c in zip(targets, critics)]

        state, m = fns.update_many(state, jax.tree_util.tree_map(lambda x: x[None], b))
        _close(m["train/critic_loss"], critic_loss, f"critic loss, step {step}")
        _close(m["train/actor_loss"], actor_loss, f"actor loss, step {step}")
        _close(m["train/alpha_loss"], alpha_loss, f"alpha loss, step {step}")
        _close(state.log_alpha, log_alpha, f"log alpha, step {step}", atol=1e-6)
        for name, got, want in (("actor", _layers(state.actor_params["params"]["MLP_0"]), actor),
                                ("critic", sum(_critics(state.critic_params), []),
                                 sum(critics, [])),
                                ("target", sum(_critics(state.target_critic_params), []),
                                 sum(targets, []))):
            for i, ((gw, gb), (ww, wb)) in enumerate(zip(got, want)):
                _close(gw, ww, f"{name} kernel {i}, step {step}")
                _close(gb, wb, f"{name} bias {i}, step {step}")


# ------------------------------------------------------------------------ TD3
def test_td3_update_equals_the_textbook_step():
    cfg = TD3Config(hidden_sizes=(8, 8), actor_lr=3e-3, critic_lr=3e-3)
    fns = make_td3(cfg, SPEC)
    state = fns.init(jax.random.PRNGKey(1))
    batches = _batches(1, STEPS)
    actor = _layers(state.actor_params["params"]["MLP_0"])
    target_actor = _layers(state.target_actor_params["params"]["MLP_0"])
    critics, targets = _critics(state.critic_params), _critics(state.target_critic_params)
    opt_a = Adam([x.shape for x in _flat(actor)], cfg.actor_lr)
    opt_c = Adam([x.shape for c in critics for x in _flat(c)], cfg.critic_lr)
    key, tau = state.key, cfg.tau
    for step, b in enumerate(batches):
        b64 = Transition(*(np.asarray(x, np.float64) for x in b))
        key, k_noise = jax.random.split(key)
        noise = cfg.target_noise * np.asarray(jax.random.normal(k_noise, (B, ACT)), np.float64)
        noise = np.clip(noise, -cfg.target_noise_clip, cfg.target_noise_clip)
        next_a = np.clip(np.tanh(forward(target_actor, b64.next_obs)[0]) + noise, -1, 1)
        y = b64.reward + cfg.gamma * (1 - b64.terminated) * \
            _min_q(targets, b64.next_obs, next_a)[0].min(0)
        qs, outs = _min_q(critics, b64.obs, b64.action)
        critic_loss = ((qs - y) ** 2).mean(1).sum()
        grads = []
        for c, (q, cache), qk in zip(critics, outs, qs):
            g, _ = backward(c, cache, (2 * (qk - y) / B)[:, None])
            grads += [x for wb in g for x in wb]
        flat = opt_c.step([x for c in critics for x in _flat(c)], grads)
        n_layer = len(_flat(critics[0]))
        critics = [_unflat(flat[k * n_layer:(k + 1) * n_layer]) for k in range(len(critics))]
        if (step + 1) % cfg.policy_delay == 0:
            out, cache = forward(actor, b64.obs)
            a = np.tanh(out)
            q1, cache_q = forward(critics[0], np.concatenate([b64.obs, a], -1))
            actor_loss = -q1.mean()
            _, dx = backward(critics[0], cache_q, -np.ones((B, 1)) / B)
            g, _ = backward(actor, cache, dx[:, OBS:] * (1 - a ** 2))
            actor = _unflat(opt_a.step(_flat(actor), [x for wb in g for x in wb]))
            target_actor = [((1 - tau) * tw + tau * w, (1 - tau) * tb + tau * bb)
                            for (tw, tb), (w, bb) in zip(target_actor, actor)]
            targets = [[((1 - tau) * tw + tau * w, (1 - tau) * tb + tau * bb)
                        for (tw, tb), (w, bb) in zip(tc, c)] for tc, c in zip(targets, critics)]

        state, m = fns.update_many(state, jax.tree_util.tree_map(lambda x: x[None], b))
        _close(m["train/critic_loss"], critic_loss, f"critic loss, step {step}")
        if (step + 1) % cfg.policy_delay == 0:
            _close(m["train/actor_loss"], actor_loss, f"actor loss, step {step}")
        for name, got, want in (
                ("actor", _layers(state.actor_params["params"]["MLP_0"]), actor),
                ("target actor", _layers(state.target_actor_params["params"]["MLP_0"]),
                 target_actor),
                ("critic", sum(_critics(state.critic_params), []), sum(critics, [])),
                ("target critic", sum(_critics(state.target_critic_params), []),
                 sum(targets, []))):
            for i, ((gw, gb), (ww, wb)) in enumerate(zip(got, want)):
                _close(gw, ww, f"{name} kernel {i}, step {step}")
                _close(gb, wb, f"{name} bias {i}, step {step}")
