"""SAC: gradient isolation, determinism, no retrace, truncation, bounds, save/load, resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tandem import load, resume, train
from tandem.algos.sac import actor_loss, alpha_loss, critic_loss, make_sac
from tandem.core.spaces import EnvSpec
from tandem.core.types import Transition
from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
from tests.conftest import TINY, advance, host_driver
from tests.envs import DictObsEnv, line_env

OBS, ACT, B = 2, 1, 8  # the shapes of tests.envs.LineEnv, so compiled code is shared
SPEC = EnvSpec.box(OBS, ACT)


def _batch(key, lead=(B,)):
    k = jax.random.split(key, 5)
    return Transition(jax.random.normal(k[0], lead + (OBS,)),
                      jax.random.uniform(k[1], lead + (ACT,), minval=-1, maxval=1),
                      jax.random.normal(k[2], lead),
                      jax.random.normal(k[3], lead + (OBS,)),
                      (jax.random.uniform(k[4], lead) < 0.3).astype(jnp.float32))


def _nonzero(tree):
    return any(bool(jnp.any(x != 0)) for x in jax.tree_util.tree_leaves(tree))


@pytest.fixture(scope="module")
def fns():
    return make_sac(TINY, SPEC)


def test_critic_loss_moves_only_the_critic(fns):
    s = fns.init(jax.random.PRNGKey(0))
    grads = jax.jit(jax.grad(lambda c, a, t, la: critic_loss(c, a, t, la, _batch(jax.random.PRNGKey(1)),
                                                      jax.random.PRNGKey(2), fns.nets, 0.99)[0],
                     argnums=(0, 1, 2, 3)))(s.critic_params, s.actor_params,
                                           s.target_critic_params, s.log_alpha)
    g_critic, g_actor, g_target, g_alpha = grads
    assert _nonzero(g_critic)
    assert not _nonzero(g_actor) and not _nonzero(g_target) and float(g_alpha) == 0.0


def test_actor_loss_moves_only_the_actor(fns):
    s = fns.init(jax.random.PRNGKey(0))
    obs = _batch(jax.random.PRNGKey(1)).obs
    g_actor, g_critic, g_alpha = jax.jit(jax.grad(
        lambda a, c, la: actor_loss(a, c, la, obs, jax.random.PRNGKey(3), fns.nets)[0],
        argnums=(0, 1, 2)))(s.actor_params, s.critic_params, s.log_alpha)
    assert _nonzero(g_actor)
    assert not _nonzero(g_critic) and float(g_alpha) == 0.0
    # the temperature loss treats log-probs as constants: no gradient reaches the actor
    g_logp = jax.grad(lambda lp: alpha_loss(jnp.array(0.3), lp, -2.0))(jnp.ones(B))
    assert not _nonzero(g_logp)


def test_update_targets_follow_polyak_and_counts(fns):
    s0 = fns.init(jax.random.PRNGKey(0))
    s1, metrics = fns.update_many(s0, _batch(jax.random.PRNGKey(4), (1, B)))
    tau = TINY.tau
    expected = jax.tree_util.tree_map(lambda t, c: (1 - tau) * t + tau * c,
                                      s0.target_critic_params, s1.critic_params)
    for e, got in zip(jax.tree_util.tree_leaves(expected),
                      jax.tree_util.tree_leaves(s1.target_critic_params)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(e), rtol=1e-6, atol=1e-7)
    assert int(s1.updates) == 1
    assert set(metrics) >= {"train/critic_loss", "train/actor_loss", "train/alpha",
                            "train/entropy", "train/alpha_loss", "train/q_mean"}
    s3, _ = fns.update_many(s1, _batch(jax.random.PRNGKey(5), (3, B)))  # G = 3 in one call
    assert int(s3.updates) == 4


def test_zero_learning_rate_isolates_networks():
    # With the actor's learning rate at 0 the actor stays put while the critic learns.
    cfg = TINY.replace(actor_lr=1e-30, alpha_lr=1e-30)
    f = make_sac(cfg, SPEC)
    s0 = f.init(jax.random.PRNGKey(0))
    s1, _ = f.update_many(s0, _batch(jax.random.PRNGKey(1), (2, B)))
    for a, b in zip(jax.tree_util.tree_leaves(s0.actor_params),
                    jax.tree_util.tree_leaves(s1.actor_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-20)
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(s0.critic_params), jax.tree_util.tree_leaves(s1.critic_params)))


def _learner(env, seed=0):
    """A host driver on ``env`` with the shared tiny config (compiled code is reused)."""
    return host_driver(TINY, env, seed)


_advance = advance


def test_no_retrace_across_chunks():
    ln = _learner(line_env(max_steps=30))
    _advance(ln, 120)
    first = dict(ln.fns.traces)
    assert first["update_many"] >= 1 and first["explore"] >= 1
    _advance(ln, 400)  # many more update and act calls
    assert ln.fns.traces == first


def _params(state):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    runs = [train(TINY, line_env(), steps=150, seed=s, out=tmp_path / f"r{i}", progress=False)
            for i, s in enumerate((3, 3, 4))]
    a, b, c = (_params(r.state) for r in runs)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert runs[0].summary["eval/return_mean"] == runs[1].summary["eval/return_mean"]


def test_truncation_keeps_bootstrap_and_final_obs():
    # No termination: a 20-step time limit only truncates. Stored transitions must never be
    # marked terminal, and the last transition of each episode must carry its own final
    # observation (t = 20), not the first observation of the next episode (t = 0).
    ln = _learner(line_env(max_steps=20, terminate=False))
    _advance(ln, 60)
    d = ln.replay.data
    assert ln.episode == 3
    assert not d["terminated"][:60].any()
    np.testing.assert_array_equal(d["next_obs"][:60, 1], np.tile(np.arange(1, 21), 3))
    np.testing.assert_array_equal(d["obs"][:60, 1], np.tile(np.arange(0, 20), 3))


def test_termination_is_stored_and_stops_bootstrapping():
    ln = _learner(line_env(max_steps=200, terminate=True), seed=1)
    _advance(ln, 400)
    d = ln.replay.data
    term = d["terminated"][:400].astype(bool)
    assert term.any()
    assert np.all(np.abs(d["next_obs"][:400][term, 0]) > 0.9)  # final obs, before the reset
    assert np.all(np.abs(d["next_obs"][:400][~term, 0]) <= 0.9)


def test_actions_respect_asymmetric_bounds(tmp_path):
    env = line_env(low=2.0, high=5.0)
    run = train(TINY, env, steps=150, seed=0, out=tmp_path / "r", progress=False)
    acts = np.concatenate(env.unwrapped.actions)
    assert acts.min() >= 2.0 and acts.max() <= 5.0
    random_phase = acts[:TINY.learning_starts]
    assert 3.0 < random_phase.mean() < 4.0  # uniform over [2, 5] has mean 3.5
    a = run.policy.act(np.array([0.1, 3.0], np.float32))
    assert a.shape == (1,) and 2.0 <= a[0] <= 5.0


def test_save_load_round_trip(tmp_path):
    run = train(TINY.replace(normalize_obs=True), line_env(), steps=120, seed=0,
                out=tmp_path / "r", progress=False)
    policy = load(tmp_path / "r")
    obs = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_array_equal(policy.act(obs), run.policy.act(obs))
    assert policy.obs_stats is not None  # normaliser statistics travel with the policy
    np.testing.assert_array_equal(policy.obs_stats.mean, run.policy.obs_stats.mean)


def test_dict_observations_are_flattened_for_training_and_deployment(tmp_path):
    env = gym_time_limit(DictObsEnv())
    run = train(TINY, env, steps=80, seed=0, out=tmp_path / "r", progress=False)
    raw = {"pos": np.array([0.2], np.float32), "time": np.array([3.0], np.float32), "mode": 1}
    a = load(tmp_path / "r").act(raw)
    assert a.shape == (1,) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, run.policy.act(raw))
    assert run.policy.spec.obs.kind == "dict"


def gym_time_limit(env, n=20):
    import gymnasium as gym
    return gym.wrappers.TimeLimit(env, max_episode_steps=n)


def _all_arrays(run_dir):
    _, arrays = load_checkpoint(latest_checkpoint(run_dir))
    return arrays


@pytest.mark.parametrize("normalize", [False, True])
def test_exact_resume_is_bit_identical(tmp_path, normalize):
    # 330 steps straight vs 170 + resume 160 on Pendulum. 170 is mid-episode (episodes are
    # 200 steps), so the env fast-forward, the replay buffer, the NumPy generator, the
    # normaliser and the jitted state must all be restored exactly.
    cfg = TINY.replace(normalize_obs=normalize, gradient_steps=2, train_freq=2)
    full = train(cfg, "Pendulum-v1", steps=330, seed=5, out=tmp_path / "full", progress=False)
    train(cfg, "Pendulum-v1", steps=170, seed=5, out=tmp_path / "half", progress=False)
    resumed = resume(tmp_path / "half", steps=160, progress=False)
    assert resumed.summary["steps"] == 330
    a, b = _all_arrays(tmp_path / "full"), _all_arrays(tmp_path / "half")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert full.summary["eval/return_mean"] == resumed.summary["eval/return_mean"]
    # the metrics curve continues without a duplicate step
    import csv
    rows = list(csv.DictReader(open(tmp_path / "half" / "metrics.csv")))
    steps = [int(r["step"]) for r in rows if r["name"] == "time/sps"]
    assert steps == sorted(set(steps))


def test_resume_without_steps_finishes_the_original_total(tmp_path):
    cfg = TINY.replace(checkpoint_every=100)
    train(cfg, line_env(), steps=150, seed=0, out=tmp_path / "r", progress=False)
    # simulate a crash after the step-100 checkpoint: drop the final one
    import shutil
    ckpts = tmp_path / "r" / "checkpoints"
    shutil.rmtree(ckpts / "step_000000000150")
    (ckpts / "LATEST").write_text("step_000000000150\n")  # stale pointer, as after a crash
    run = resume(tmp_path / "r", env=line_env())
    assert run.summary["steps"] == 150 and run.summary["resumed_from"] == 100


def test_the_update_takes_its_losses_as_arguments(fns):
    # SAC-RND, DrQ and HASAC reuse SAC's update with losses of their own: here a variant
    # whose critic loss is zeroed leaves the critics where they were, and a variant of the
    # actor loss is the one the update differentiates
    import functools

    from tandem.algos.sac import update
    s0 = fns.init(jax.random.PRNGKey(0))
    used = []

    def frozen_critic(critic_params, *args):
        loss, metrics = critic_loss(critic_params, *args)
        used.append("critic")
        return 0.0 * loss, metrics

    def doubled_actor(actor_params, *args):
        loss, logp = actor_loss(actor_params, *args)
        used.append("actor")
        return 2.0 * loss, logp

    step = jax.jit(functools.partial(update, cfg=TINY, nets=fns.nets, target_entropy=-1.0,
                                     critic_loss_fn=frozen_critic, actor_loss_fn=doubled_actor))
    s1, _ = step(s0, _batch(jax.random.PRNGKey(1)), None)
    assert used == ["critic", "actor"]
    for a, b in zip(jax.tree_util.tree_leaves(s0.critic_params),
                    jax.tree_util.tree_leaves(s1.critic_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(s0.actor_params), jax.tree_util.tree_leaves(s1.actor_params)))
