"""PPO and A2C: A2C as a PPO configuration equals a textbook A2C step (Huang et al., 2022),
loss pieces, truncation handling in the host driver, and driver properties (determinism, no
retrace, save/load, exact resume) on real Gymnasium envs with Box and Discrete actions."""

import dataclasses
import json

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tandem import A2CConfig, PPOConfig, load, resume, train
from tandem.algos.ppo import Batch, make_ppo, ppo_loss
from tandem.core.spaces import EnvSpec, Space
from tandem.core.types import Rollout
from tandem.envs.gym import make_env
from tandem.errors import CheckpointError, ConfigError
from tandem.host.onpolicy import OnPolicyDriver
from tandem.run.driver import Control
from tests.envs import line_env

BOX, DISCRETE = Space.box((2,), low=-1, high=1), Space.discrete(3)
SMALL = dict(n_envs=2, n_steps=16, hidden_sizes=(16, 16), eval_episodes=1, log_every=32,
             checkpoint_every=0)
TINY_PPO = PPOConfig(n_epochs=2, n_minibatches=2, **SMALL)
LINE5 = "tandem-test/Line5-v0"  # LineEnv without termination and a 5-step time limit
if LINE5 not in gym.registry:
    gym.register(LINE5, entry_point="tests.envs:LineEnv", max_episode_steps=5,
                 kwargs={"terminate": False})


def spec(action: Space, obs_dim=3) -> EnvSpec:
    return EnvSpec(Space.box((obs_dim,)), action)


def _rollout(action: Space, T=5, N=2, obs_dim=3, seed=0) -> Rollout:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(T, N, obs_dim)).astype(np.float32)
    if action.kind == "box":
        a = rng.normal(size=(T, N, action.dim)).astype(np.float32)
    else:
        a = rng.integers(0, action.nvec[0], size=(T, N)).astype(np.int32)
    term = np.zeros((T, N), np.float32)
    done = np.zeros((T, N), np.float32)
    term[1, 0] = done[1, 0] = 1.0  # env 0 terminates at t=1
    done[3, 1] = 1.0               # env 1 is truncated at t=3
    return Rollout(obs, a, rng.normal(size=(T, N)).astype(np.float32), term, done,
                   rng.normal(size=(T, N, obs_dim)).astype(np.float32),
                   rng.normal(size=(N, obs_dim)).astype(np.float32))


# ---------------------------------------------------------------------- A2C == textbook A2C
def _textbook_a2c(params, nets, cfg, ro: Rollout):
    """One synchronous A2C step written from the A3C paper (Mnih et al., 2016, Alg. S3):
    n-step returns computed backwards with a Python loop, advantage R - V, loss
    -log pi(a|s) * A + vf_coef * 0.5 (R - V)^2 - ent_coef * H, global-norm clipping, and
    PyTorch-style RMSprop (v = a v + (1 - a) g^2; p -= lr g / (sqrt(v) + eps)) from v = 0."""
    T, N = ro.reward.shape
    V = lambda o: nets.critic.apply(params["critic"], o)  # noqa: E731
    v_obs, v_final, v_last = np.asarray(V(ro.obs)), np.asarray(V(ro.final_obs)), \
        np.asarray(V(ro.last_obs))
    R = np.zeros((T, N))
    for n in range(N):
        ret = v_last[n]
        for t in reversed(range(T)):
            if ro.done[t, n]:  # episode boundary: bootstrap from the final obs unless terminal
                ret = 0.0 if ro.terminated[t, n] else v_final[t, n]
            ret = ro.reward[t, n] + cfg.gamma * ret
            R[t, n] = ret
    adv = jnp.asarray(R - v_obs, jnp.float32).reshape(-1)
    R = jnp.asarray(R, jnp.float32).reshape(-1)
    obs = ro.obs.reshape(T * N, -1)
    act = ro.action.reshape((T * N,) + ro.action.shape[2:])

    def loss(p):
        dist = nets.actor.apply(p["actor"], obs)
        v = nets.critic.apply(p["critic"], obs)
        return (-jnp.mean(dist.log_prob(act) * adv) + cfg.vf_coef * 0.5 * jnp.mean((R - v) ** 2)
                - cfg.ent_coef * jnp.mean(dist.entropy()))

    g = jax.grad(loss)(params)
    norm = optax.tree.norm(g)
    g = jax.tree_util.tree_map(lambda x: x * jnp.minimum(1.0, cfg.max_grad_norm / norm), g)
    a = cfg.rmsprop_decay
    return jax.tree_util.tree_map(
        lambda p, x: p - cfg.learning_rate * x / (jnp.sqrt((1 - a) * x**2) + cfg.optimizer_eps),
        params, g)


@pytest.mark.parametrize("action", [BOX, DISCRETE], ids=["box", "discrete"])
def test_a2c_configuration_of_ppo_equals_a_textbook_a2c_step(action):
    cfg = A2CConfig(n_envs=2, hidden_sizes=(8, 8), ent_coef=0.01)
    fns = make_ppo(cfg, spec(action))
    state = fns.init(jax.random.PRNGKey(0))
    ro = _rollout(action)
    new, _ = fns.update(state, ro, 1.0)
    want = _textbook_a2c(state.params, fns.nets, cfg, ro)
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6),
                           new.params, want)
    # and PPO's own defaults (clipping, 4 epochs, normalised advantages) give another result
    ppo = make_ppo(dataclasses.replace(cfg, n_epochs=4, clip_coef=0.2, norm_adv=True), spec(action))
    other, _ = ppo.update(ppo.init(jax.random.PRNGKey(0)), ro, 1.0)
    diff = jax.tree_util.tree_map(lambda x, y: float(jnp.max(jnp.abs(x - y))), other.params, want)
    assert max(jax.tree_util.tree_leaves(diff)) > 1e-4


def test_clipped_surrogate_has_no_gradient_outside_the_trust_region():
    cfg = PPOConfig(hidden_sizes=(8, 8), norm_adv=False, vf_coef=0.0, ent_coef=0.0)
    fns = make_ppo(cfg, spec(DISCRETE))
    params = fns.init(jax.random.PRNGKey(0)).params
    obs = jnp.ones((4, 3))
    act = jnp.array([0, 1, 2, 0])
    logp = fns.nets.actor.apply(params["actor"], obs).log_prob(act)
    zeros = jnp.zeros(4)
    # old log-probs far below the current ones: ratio >> 1 + eps with positive advantages
    b = Batch(obs, act, logp - 1.0, zeros, jnp.ones(4), zeros)
    g, m = jax.grad(ppo_loss, has_aux=True)(params, fns.nets, cfg, b)
    assert float(optax.tree.norm(g["actor"])) == 0.0 and float(m["train/clip_fraction"]) == 1.0
    # inside the region the gradient flows
    g, _ = jax.grad(ppo_loss, has_aux=True)(params, fns.nets, cfg, b._replace(old_logp=logp))
    assert float(optax.tree.norm(g["actor"])) > 0.0


def test_value_clipping_and_learning_rate_annealing():
    cfg = dataclasses.replace(TINY_PPO, clip_vloss=True, anneal_lr=True)
    fns = make_ppo(cfg, spec(BOX))
    state = fns.init(jax.random.PRNGKey(0))
    _, m = fns.update(state, _rollout(BOX, T=16), 0.25)
    assert float(m["train/learning_rate"]) == pytest.approx(0.25 * cfg.learning_rate)
    assert np.isfinite(float(m["train/value_loss"]))


def test_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="n_minibatches=3 must divide the rollout size"):
        PPOConfig(n_envs=2, n_steps=16, n_minibatches=3)
    with pytest.raises(ConfigError, match="vec_env='threads'"):
        PPOConfig(vec_env="threads")


# ---------------------------------------------------------------------- host driver
def test_host_rollout_keeps_final_obs_and_separates_truncation():
    # LineEnv without termination, 5-step time limit; obs[1] is the step count, so a final
    # observation (t=5) is told apart from the next episode's first one (t=0).
    cfg = dataclasses.replace(TINY_PPO, n_envs=2, n_steps=7)
    genv = make_env(LINE5, "ppo", ("Box",))
    fns = make_ppo(cfg, genv.spec)
    seen = []
    spy = fns._replace(update=lambda s, ro, f: (seen.append(jax.device_get(ro)) or s, {}))
    ln = OnPolicyDriver(cfg, genv, spy, 0, "ppo")
    ln.start()
    ln.advance(14, Control(14))
    ro = seen[0]
    np.testing.assert_array_equal(ro.done[:, 0], [0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(ro.terminated, 0)  # a time limit is not a terminal state
    assert ro.final_obs[4, 0, 1] == 5 and ro.obs[4, 0, 1] == 4  # the true final observation
    assert ro.last_obs[0, 1] == 2  # t=0 was the reset at step 5; two more steps since
    assert ln.host.episode == 2 and ln.host.recent_lengths == [5, 5]


def test_unregistered_env_instance_runs_with_one_env_only(tmp_path):
    from tandem.errors import EnvError
    with pytest.raises(EnvError, match="unregistered env instance can only be trained with "
                                       "n_envs=1"):
        train(TINY_PPO, line_env(), steps=32, out=tmp_path / "a")
    run = train(dataclasses.replace(TINY_PPO, n_envs=1), line_env(), steps=32,
                out=tmp_path / "b", progress=False)
    assert run.summary["steps"] == 32


def _final(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


CASES = {
    "ppo-pendulum-normalised": (dataclasses.replace(TINY_PPO, normalize_obs=True,
                                                    normalize_reward=True, anneal_lr=True),
                                "Pendulum-v1"),
    "a2c-cartpole": (A2CConfig(**{**SMALL, "n_steps": 8}), "CartPole-v1"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_deterministic_and_compiled_once(tmp_path, name):
    cfg, env = CASES[name]
    a = train(cfg, env, steps=64, seed=3, out=tmp_path / "a", progress=False)
    b = train(cfg, env, steps=96, seed=3, out=tmp_path / "b", progress=False)
    c = train(cfg, env, steps=64, seed=4, out=tmp_path / "c", progress=False)
    fns = onpolicy_fns(cfg, env)
    assert fns.traces["update"] == 1 and fns.traces["explore"] == 1  # any length, any seed
    a2 = train(cfg, env, steps=64, seed=3, out=tmp_path / "a2", progress=False)
    same = jax.tree_util.tree_map(np.array_equal, a.state.params, a2.state.params)
    assert all(jax.tree_util.tree_leaves(same))
    differ = jax.tree_util.tree_map(lambda x, y: not np.array_equal(x, y), a.state.params,
                                    c.state.params)
    assert any(jax.tree_util.tree_leaves(differ))
    assert b.summary["steps"] == 96


def onpolicy_fns(cfg, env):
    return make_ppo(cfg, make_env(env, cfg.algo, ("Box", "Discrete")).spec)


@pytest.mark.parametrize("name", list(CASES))
def test_exact_resume_and_save_load(tmp_path, name):
    # 6 rollouts straight vs 3 + resume 3; CartPole and Pendulum episodes are mid-way at
    # the checkpoint, so the sub-envs must be replayed to where they were.
    cfg, env = CASES[name]
    cfg = dataclasses.replace(cfg, anneal_lr=False)  # annealing depends on the run's total
    r = cfg.n_envs * cfg.n_steps
    full = train(cfg, env, steps=6 * r, seed=1, out=tmp_path / "full", progress=False)
    train(cfg, env, steps=3 * r, seed=1, out=tmp_path / "half", progress=False)
    resumed = resume(tmp_path / "half", steps=3 * r, progress=False)
    same = jax.tree_util.tree_map(np.array_equal, full.state, resumed.state)
    assert all(jax.tree_util.tree_leaves(same))
    assert _final(tmp_path / "half")["rollout/episodes"] == full.summary["rollout/episodes"]
    policy = load(tmp_path / "full")
    obs = np.stack([gym.make(env).observation_space.sample() for _ in range(4)])
    np.testing.assert_array_equal(policy.act(obs), full.policy.act(obs))
    a = policy.act(obs[0])
    if env == "CartPole-v1":
        assert a.dtype.kind == "i" and a.shape == () and int(a) in (0, 1)
    else:
        assert a.shape == (1,) and -2.0 <= float(a[0]) <= 2.0


def test_a_ppo_checkpoint_is_refused_as_a_foreign_n_envs(tmp_path):
    cfg = TINY_PPO
    train(cfg, "CartPole-v1", steps=32, out=tmp_path / "r", progress=False)
    run = json.loads((tmp_path / "r" / "config.json").read_text())
    run["config"]["n_envs"] = 4
    (tmp_path / "r" / "config.json").write_text(json.dumps(run))
    with pytest.raises(CheckpointError, match="n_envs 2 != 4"):
        resume(tmp_path / "r", steps=32)


def test_async_vector_env_matches_sync(tmp_path):
    cfg = dataclasses.replace(TINY_PPO, vec_env="async")
    a = train(cfg, "CartPole-v1", steps=64, seed=2, out=tmp_path / "async", progress=False)
    s = train(TINY_PPO, "CartPole-v1", steps=64, seed=2, out=tmp_path / "sync", progress=False)
    same = jax.tree_util.tree_map(np.array_equal, a.state.params, s.state.params)
    assert all(jax.tree_util.tree_leaves(same))


def test_multidiscrete_actions_train_and_deploy(tmp_path):
    gym.register("tandem-test/MultiLine-v0", entry_point="tests.envs:MultiDiscreteLineEnv",
                 max_episode_steps=10)
    try:
        run = train(TINY_PPO, "tandem-test/MultiLine-v0", steps=64, out=tmp_path / "m",
                    progress=False)
    finally:
        gym.registry.pop("tandem-test/MultiLine-v0")
    a = run.policy.act(np.zeros(2, np.float32))
    assert a.shape == (2,) and a.dtype.kind == "i" and 1 <= a[0] <= 3 and 0 <= a[1] < 2
