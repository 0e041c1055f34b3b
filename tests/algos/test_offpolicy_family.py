"""TD3, DDPG, DroQ and SimbaV2 networks: losses, delays, equivalences, and the per-algorithm
driver properties (determinism, no retrace, save/load, exact resume)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tandem import DDPGConfig, DroQConfig, SACConfig, TD3Config, load, resume, train
from tandem.algos import get_algo
from tandem.algos.sac import q_values
from tandem.algos.td3 import actor_loss, critic_loss
from tandem.core.nets import HyperDense, SimbaV2MLP
from tandem.core.noise import exploration_noise
from tandem.core.spaces import EnvSpec
from tandem.core.types import Transition
from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
from tests.conftest import advance, host_driver
from tests.envs import line_env

OBS, ACT, B = 2, 1, 8
HOST = dict(batch_size=32, buffer_size=5_000, learning_starts=50, eval_episodes=1,
            log_every=100, checkpoint_every=0)
TD3_TINY = TD3Config(hidden_sizes=(16, 16), **HOST)
DDPG_TINY = DDPGConfig(hidden_sizes=(16, 16), exploration_noise="ou", exploration_sigma=0.3,
                       **HOST)
DROQ_TINY = DroQConfig(hidden_sizes=(16, 16), **{**HOST, "gradient_steps": 3},
                       policy_delay=3, critic_dropout=0.1)
SIMBA_SAC = SACConfig(hidden_sizes=(16, 16), network="simbav2", **HOST)
SIMBA_TD3 = TD3_TINY.replace(network="simbav2")
FAMILY = {"td3": TD3_TINY, "ddpg-ou": DDPG_TINY, "droq": DROQ_TINY, "sac-simbav2": SIMBA_SAC,
          "td3-simbav2": SIMBA_TD3}


def _fns(cfg, obs_dim=OBS, act_dim=ACT):
    return get_algo(cfg.algo).build(cfg, EnvSpec.box(obs_dim, act_dim))


def _batch(key, lead=(B,), terminated=None):
    k = jax.random.split(key, 5)
    term = ((jax.random.uniform(k[4], lead) < 0.3).astype(jnp.float32) if terminated is None
            else jnp.full(lead, terminated, jnp.float32))
    return Transition(jax.random.normal(k[0], lead + (OBS,)),
                      jax.random.uniform(k[1], lead + (ACT,), minval=-1, maxval=1),
                      jax.random.normal(k[2], lead), jax.random.normal(k[3], lead + (OBS,)), term)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b)))


def _nonzero(tree):
    return any(bool(np.any(x != 0)) for x in _leaves(tree))


# ----------------------------------------------------------------------------- TD3 losses
def test_td3_critic_loss_moves_only_the_critic():
    f = _fns(TD3_TINY)
    s = f.init(jax.random.PRNGKey(0))
    g = jax.grad(lambda c, ta, tc: critic_loss(c, ta, tc, _batch(jax.random.PRNGKey(1)),
                                               jax.random.PRNGKey(2), f.nets, TD3_TINY)[0],
                 argnums=(0, 1, 2))(s.critic_params, s.target_actor_params, s.target_critic_params)
    assert _nonzero(g[0]) and not _nonzero(g[1]) and not _nonzero(g[2])


def test_td3_actor_loss_moves_only_the_actor():
    f = _fns(TD3_TINY)
    s = f.init(jax.random.PRNGKey(0))
    obs = _batch(jax.random.PRNGKey(1)).obs
    g_actor, g_critic = jax.grad(lambda a, c: actor_loss(a, c, obs, f.nets),
                                 argnums=(0, 1))(s.actor_params, s.critic_params)
    assert _nonzero(g_actor) and not _nonzero(g_critic)


def test_td3_terminal_targets_do_not_bootstrap():
    # With every transition terminal, y = r whatever the target networks say, so the loss is
    # sum_i mean_b (Q_i(s, a) - r)^2.
    f = _fns(TD3_TINY)
    s = f.init(jax.random.PRNGKey(0))
    batch = _batch(jax.random.PRNGKey(1), terminated=1.0)
    loss, _ = critic_loss(s.critic_params, s.target_actor_params, s.target_critic_params, batch,
                          jax.random.PRNGKey(2), f.nets, TD3_TINY)
    q = f.nets.critic.apply(s.critic_params, batch.obs, batch.action)
    np.testing.assert_allclose(loss, jnp.sum(jnp.mean((q - batch.reward) ** 2, axis=1)),
                               rtol=1e-6)


def test_td3_target_smoothing_noise_is_clipped():
    # With a clip of 0 the smoothing noise vanishes: the loss equals the noiseless one.
    f = _fns(TD3_TINY)
    s = f.init(jax.random.PRNGKey(0))
    batch = _batch(jax.random.PRNGKey(1), terminated=0.0)

    def loss(cfg, key):
        return critic_loss(s.critic_params, s.target_actor_params, s.target_critic_params,
                           batch, key, f.nets, cfg)[0]
    off = loss(TD3_TINY.replace(target_noise=0.0), jax.random.PRNGKey(3))
    assert float(loss(TD3_TINY.replace(target_noise_clip=0.0), jax.random.PRNGKey(3))) == float(off)
    assert float(loss(TD3_TINY, jax.random.PRNGKey(3))) != float(off)


def test_td3_delays_actor_and_target_updates():
    f = _fns(TD3_TINY)  # policy_delay = 2
    s0 = f.init(jax.random.PRNGKey(0))
    s1, m1 = f.update_many(s0, _batch(jax.random.PRNGKey(1), (1, B)))
    assert not _same(s0.critic_params, s1.critic_params)
    assert _same(s0.actor_params, s1.actor_params)
    assert _same(s0.target_critic_params, s1.target_critic_params)
    s2, m2 = f.update_many(s1, _batch(jax.random.PRNGKey(2), (1, B)))
    assert not _same(s1.actor_params, s2.actor_params)
    tau = TD3_TINY.tau
    for t, c, got in zip(_leaves(s1.target_critic_params), _leaves(s2.critic_params),
                         _leaves(s2.target_critic_params)):
        np.testing.assert_allclose(got, (1 - tau) * t + tau * c, rtol=1e-6, atol=1e-7)
    # between actor steps the last actor loss is reported, never a placeholder
    s3, m3 = f.update_many(s2, _batch(jax.random.PRNGKey(3), (1, B)))
    assert float(m3["train/actor_loss"]) == float(m2["train/actor_loss"]) != 0.0


def test_ddpg_equals_a_textbook_ddpg_step():
    # DDPG (Lillicrap et al., Alg. 1): y = r + gamma (1 - d) Q'(s', mu'(s')); critic step on
    # (Q - y)^2; actor step on -Q(s, mu(s)) with the updated critic; soft target updates.
    cfg = DDPGConfig(hidden_sizes=(16, 16))
    f = _fns(cfg)
    s0 = f.init(jax.random.PRNGKey(0))
    batch = _batch(jax.random.PRNGKey(1))
    actor, critic = f.nets.actor, f.nets.critic
    adam_a, adam_c = optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr)

    def c_loss(cp):
        y = batch.reward + cfg.gamma * (1 - batch.terminated) * critic.apply(
            s0.target_critic_params, batch.next_obs,
            actor.apply(s0.target_actor_params, batch.next_obs))[0]
        return jnp.mean((critic.apply(cp, batch.obs, batch.action)[0] - y) ** 2)
    upd, _ = adam_c.update(jax.grad(c_loss)(s0.critic_params), adam_c.init(s0.critic_params))
    critic_params = optax.apply_updates(s0.critic_params, upd)
    upd, _ = adam_a.update(jax.grad(lambda ap: -jnp.mean(critic.apply(
        critic_params, batch.obs, actor.apply(ap, batch.obs))[0]))(s0.actor_params),
        adam_a.init(s0.actor_params))
    actor_params = optax.apply_updates(s0.actor_params, upd)

    s1, _ = f.update_many(s0, jax.tree_util.tree_map(lambda x: x[None], batch))
    for want, got in ((critic_params, s1.critic_params), (actor_params, s1.actor_params)):
        for w, g in zip(_leaves(want), _leaves(got)):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    for t, o, got in zip(_leaves(s0.target_actor_params), _leaves(actor_params),
                         _leaves(s1.target_actor_params)):
        np.testing.assert_allclose(got, (1 - cfg.tau) * t + cfg.tau * o, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- noise
def test_gaussian_noise_has_no_state_and_the_right_scale():
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    eps, state = jax.vmap(lambda k: exploration_noise("gaussian", jnp.zeros(2), k, 0.3))(keys)
    assert not _nonzero(state)
    np.testing.assert_allclose(np.std(eps), 0.3, rtol=0.05)


def test_ou_noise_is_correlated_with_the_stationary_std():
    # x' = x - theta x dt + sigma sqrt(dt) z has stationary std sigma sqrt(dt / (1 - (1 -
    # theta dt)^2)); with theta = 0.15, dt = 0.01, sigma = 0.3 that is 0.5480.
    theta, dt, sigma = 0.15, 1e-2, 0.3

    def step(x, k):
        eps, x = exploration_noise("ou", x, k, sigma, theta, dt)
        return x, eps
    _, xs = jax.lax.scan(step, jnp.zeros(1), jax.random.split(jax.random.PRNGKey(0), 200_000))
    xs = np.asarray(xs[20_000:, 0])
    want = sigma * np.sqrt(dt / (1 - (1 - theta * dt) ** 2))
    np.testing.assert_allclose(want, 0.5480, atol=1e-4)
    np.testing.assert_allclose(xs.std(), want, rtol=0.15)
    np.testing.assert_allclose(np.corrcoef(xs[:-1], xs[1:])[0, 1], 1 - theta * dt, atol=0.01)


# ----------------------------------------------------------------------------- DroQ
def test_droq_dropout_is_active_in_training_only():
    f = _fns(DROQ_TINY)
    s = f.init(jax.random.PRNGKey(0))
    b = _batch(jax.random.PRNGKey(1))
    q1 = q_values(f.nets, s.critic_params, b.obs, b.action, jax.random.PRNGKey(2))
    q2 = q_values(f.nets, s.critic_params, b.obs, b.action, jax.random.PRNGKey(3))
    assert not np.array_equal(q1, q2)  # different dropout masks
    e1 = f.nets.critic.apply(s.critic_params, b.obs, b.action)
    np.testing.assert_array_equal(e1, f.nets.critic.apply(s.critic_params, b.obs, b.action))
    assert "LayerNorm_0" in str(jax.tree_util.tree_structure(s.critic_params))


def test_droq_updates_the_actor_once_per_policy_delay():
    f = _fns(DROQ_TINY)  # G = 3, policy_delay = 3
    s0 = f.init(jax.random.PRNGKey(0))
    s2, _ = f.update_many(s0, _batch(jax.random.PRNGKey(1), (2, B)))
    assert _same(s0.actor_params, s2.actor_params) and not _same(s0.critic_params,
                                                                  s2.critic_params)
    s3, _ = f.update_many(s2, _batch(jax.random.PRNGKey(2), (1, B)))
    assert not _same(s2.actor_params, s3.actor_params)
    assert int(s3.updates) == 3


# ----------------------------------------------------------------------------- SimbaV2
def test_simbav2_features_live_on_the_unit_sphere():
    net = SimbaV2MLP((8, 8), 3)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 4)) * 100.0
    params = net.init(jax.random.PRNGKey(1), x)
    out = net.apply(params, x)
    assert out.shape == (5, 3) and np.isfinite(out).all()
    # scaling a HyperDense kernel changes nothing: its weight vectors are normalised
    layer = HyperDense(6)
    p = layer.init(jax.random.PRNGKey(2), x)
    p2 = jax.tree_util.tree_map(lambda v: v, p)
    p2["params"]["kernel"] = p["params"]["kernel"] * 7.0
    np.testing.assert_allclose(layer.apply(p, x), layer.apply(p2, x), rtol=1e-5)
    # the features entering the output layer have unit norm
    h = _simba_features(net, params, x)
    np.testing.assert_allclose(np.linalg.norm(h, axis=-1), 1.0, rtol=1e-4)


def _simba_features(net, params, x):
    """Input of the final Dense layer, captured with a Flax interceptor."""
    import flax.linen as nn
    seen = []

    def grab(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            seen.append(args[0])
        return next_fun(*args, **kwargs)
    with nn.intercept_methods(grab):
        net.apply(params, x)
    return seen[-1]


def test_simbav2_needs_equal_widths():
    from tandem import ConfigError
    with pytest.raises(ConfigError, match="simbav2 needs equal widths"):
        TD3Config(network="simbav2", hidden_sizes=(64, 32))


# ----------------------------------------------------------------------------- drivers
_learner, _advance = host_driver, advance


@pytest.mark.parametrize("name", list(FAMILY))
def test_deterministic_and_compiled_once(name):
    cfg = FAMILY[name]
    a, b = _learner(cfg, line_env(max_steps=30)), _learner(cfg, line_env(max_steps=30))
    _advance(a, 120)
    first = dict(a.fns.traces)
    _advance(a, 260)
    assert a.fns.traces == first and first["update_many"] >= 1  # no retrace
    _advance(b, 260)
    assert _same(a.state, b.state)
    np.testing.assert_array_equal(a.replay.data["action"], b.replay.data["action"])
    c = _learner(cfg, line_env(max_steps=30), seed=1)
    _advance(c, 260)
    assert not _same(a.state, c.state)


def test_ou_noise_state_resets_each_episode():
    ln = _learner(DDPG_TINY, line_env(max_steps=30, terminate=False))
    _advance(ln, 89)
    assert np.any(np.asarray(ln.noise) != 0)
    _advance(ln, 90)  # step 90 ends the third episode
    assert ln.episode == 3 and not np.any(np.asarray(ln.noise) != 0)


def _arrays(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))[1]


@pytest.mark.parametrize("name", ["td3", "ddpg-ou", "droq", "sac-simbav2"])
def test_exact_resume_and_save_load(tmp_path, name):
    # 250 straight vs 130 + resume 120, mid-episode on Pendulum (200-step episodes).
    cfg = FAMILY[name]
    full = train(cfg, "Pendulum-v1", steps=250, seed=2, out=tmp_path / "full", progress=False)
    train(cfg, "Pendulum-v1", steps=130, seed=2, out=tmp_path / "half", progress=False)
    resume(tmp_path / "half", steps=120, progress=False)
    a, b = _arrays(tmp_path / "full"), _arrays(tmp_path / "half")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    policy = load(tmp_path / "full")
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(policy.act(obs), full.policy.act(obs))
    assert policy.algo == cfg.algo


def test_td3_checkpoint_is_refused_by_sac(tmp_path):
    from tandem import CheckpointError
    from tandem.run.checkpoint import save_checkpoint
    snap = _learner(TD3_TINY, line_env()).snapshot()
    save_checkpoint(tmp_path / "c", algo="td3", step=0, arrays=snap.arrays, meta=snap.meta,
                    keep=1, stores=snap.stores)
    with pytest.raises(CheckpointError, match="td3"):
        load_checkpoint(latest_checkpoint(tmp_path), expect_algo="sac")
