"""The whole-loop compiled path on real gymnax / Brax envs: vmapped seeds equal single seeds,
exact resume, one compilation, truncation, run folders, errors."""

import json

import jax
import numpy as np
import pytest

# gymnax and brax are in the [dev] extra: a broken install must fail here, not skip.
from gymnax import registered_envs  # noqa: E402

assert "CartPole-v1" in registered_envs

from tandem import (ConfigError, EnvError, PPOConfig, TD3Config, evaluate, load, resume,  # noqa: E402
                    train)
from tandem.cli import main  # noqa: E402
from tandem.compiled.driver import Program as _Program, _keys  # noqa: E402
from tandem.run.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from tandem.envs.jaxenv import make_jax_env  # noqa: E402
from tests.conftest import TINY  # noqa: E402
from tests.envs import line_env  # noqa: E402

ENV = "gymnax:Pendulum-v1"
CFG = TINY.replace(eval_episodes=2)  # learning_starts 50, log_every 100


def _arrays(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))[1]


def test_vmapped_seeds_equal_each_seed_alone(tmp_path):
    both = train(CFG, ENV, steps=260, seeds=[3, 4], out=tmp_path / "both", progress=False)
    alone = train(CFG, ENV, steps=260, seeds=[4], out=tmp_path / "alone", progress=False)
    a, b = _arrays(tmp_path / "both"), _arrays(tmp_path / "alone")
    for k in a:
        np.testing.assert_allclose(a[k][1], b[k][0], rtol=2e-4, atol=2e-5, err_msg=k)
    np.testing.assert_allclose(both.summaries[1]["eval/returns"],
                               alone.summaries[0]["eval/returns"], rtol=1e-3)
    assert both.summaries[0]["eval/returns"] != both.summaries[1]["eval/returns"]
    # one summary per seed plus the aggregate
    for s in (3, 4):
        per_seed = json.loads((tmp_path / "both" / f"seed_{s}" / "summary.json").read_text())
        assert per_seed["seed"] == s and per_seed["steps"] == 260
        assert (tmp_path / "both" / f"seed_{s}" / "metrics.csv").exists()
    agg = json.loads((tmp_path / "both" / "summary.json").read_text())
    assert agg["seeds"] == [3, 4] and agg["time/sps_total"] > agg["time/sps"] > 0
    np.testing.assert_allclose(agg["eval/return_mean"],
                               np.mean([s["eval/return_mean"] for s in both.summaries]))


def test_exact_resume(tmp_path):
    # TD3 with OU noise: the noise state, delayed updates and the buffer all cross the
    # checkpoint (SAC's update is covered by the vmapped test above).
    cfg = TD3Config(hidden_sizes=(16, 16), batch_size=32, learning_starts=50, log_every=100,
                    eval_episodes=1, checkpoint_every=0, exploration_noise="ou",
                    buffer_size=5000)
    train(cfg, ENV, steps=300, seeds=2, out=tmp_path / "full", progress=False)
    train(cfg, ENV, steps=150, seeds=2, out=tmp_path / "half", progress=False)
    with pytest.raises(ConfigError, match="already at step 150"):
        resume(tmp_path / "half", progress=False)
    resumed = resume(tmp_path / "half", steps=150, progress=False)
    assert resumed.summary["steps"] == 300 and resumed.summaries[1]["resumed_from"] == 150
    a, b = _arrays(tmp_path / "full"), _arrays(tmp_path / "half")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_compiles_once_for_any_chunk_length():
    env = make_jax_env(ENV)
    prog = _Program(CFG.replace(buffer_size=1000), env, 2)
    ls = prog.init(_keys([0, 1]))
    for n in (7, 13, 50):
        ls, _ = prog.run("warmup", ls, n)
    for n in (3, 11, 2):
        ls, _ = prog.run("train", ls, n)
    assert prog.traces == {"warmup": 1, "train": 1}
    assert int(ls.step[0]) == 70 + 16


def test_the_training_chunk_updates_the_buffer_in_place():
    # issue 22: steps/s fell with the buffer's size because XLA copied whole buffer fields
    # on every step; the compiled chunk must hold no copy of a buffer-sized array
    import re
    capacity = 4321
    prog = _Program(CFG.replace(buffer_size=capacity), make_jax_env(ENV), 2)
    ls, _ = prog.run("warmup", prog.init(_keys([0, 1])), 50)
    prog.run("train", ls, 2)
    hlo = prog._cache["train"].as_text()
    copies = [ln for ln in hlo.splitlines()
              if re.search(rf"= \w+\[[^\]]*\b{capacity}\b[^\]]*\]\S* copy\(", ln)]
    assert not copies, copies[:3]
    assert re.search(rf"\[2,{capacity},3\]", hlo)  # the buffer is in the program


def test_truncation_keeps_the_final_observation():
    # Pendulum never terminates: 200-step episodes are truncated. The transition that ends an
    # episode stores that episode's last observation as next_obs; the next row starts from a
    # fresh reset, so next_obs[i] == obs[i + 1] everywhere except at i = 199 and 399.
    env = make_jax_env(ENV)
    prog = _Program(CFG.replace(buffer_size=1000), env, 1)
    ls, _ = prog.run("warmup", prog.init(_keys([0])), 450)
    buf = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), ls.buffer)
    assert not buf["terminated"][:450].any()
    chain = np.all(buf["next_obs"][:449] == buf["obs"][1:450], axis=1)
    assert list(np.flatnonzero(~chain)) == [199, 399]
    assert int(ls.episodes[0]) == 2


def test_cli_seeds_eval_and_load(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "sac", "--env", ENV, "--steps", "120", "--seeds", "2", "--seed", "5",
               "--out", str(out), "--progress", "lines", "--hidden-sizes", "16x16",
               "--batch-size", "32", "--learning-starts", "50", "--log-every", "100",
               "--eval-episodes", "1", "--checkpoint-every", "0"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["seeds"] == [5, 6] and printed["steps"] == 120
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    assert len(json.loads((out / "eval.json").read_text())["eval/returns_per_seed"]) == 2
    p5, p6 = load(out, seed=5), load(out, seed=6)
    obs = np.array([[1.0, 0.0, 0.5]], np.float32)
    a5, a6 = p5.act(obs), p6.act(obs)
    assert a5.shape == (1, 1) and -2 <= a5[0, 0] <= 2 and not np.array_equal(a5, a6)
    with pytest.raises(Exception, match="seed 9 is not in this run"):
        load(out, seed=9)
    assert evaluate(out, episodes=1)["eval/seeds"] == [5, 6]


@pytest.mark.slow  # 30-45 s: in test.sh step 2, so the default suite stays < ~10 min
def test_brax_env_trains_and_terminates(tmp_path):
    # Brax's inverted pendulum (the smallest Brax env, quick to compile on CPU) terminates
    # when the pole falls: terminations are stored and do not bootstrap.
    cfg = CFG.replace(learning_starts=40, log_every=40, eval_episodes=1)
    sw = train(cfg, "brax:inverted_pendulum", steps=80, out=tmp_path / "b", progress=False,
               env_kwargs={"episode_length": 50})
    assert sw.summaries[0]["steps"] == 80 and sw.summaries[0]["rollout/episodes"] >= 2
    assert np.isfinite(sw.summaries[0]["eval/return_mean"])
    assert sw.policies[0].act(np.zeros((4,), np.float32)).shape == (1,)
    buf = _arrays(tmp_path / "b")
    assert buf["replay/terminated"][0].sum() >= 1


def test_errors_are_clear(tmp_path):
    with pytest.raises(EnvError, match="did you mean Pendulum-v1"):
        train(CFG, "gymnax:Pendulm-v1", steps=10, out=tmp_path / "a")
    with pytest.raises(EnvError, match="continuous .* tandem algorithms for it: a2c, ppo"):
        train(CFG, "gymnax:CartPole-v1", steps=10, out=tmp_path / "b")
    with pytest.raises(ConfigError, match="normalize_obs"):
        train(CFG.replace(normalize_obs=True), ENV, steps=10, out=tmp_path / "c")
    with pytest.raises(ConfigError, match="multiple of train_freq"):
        train(CFG.replace(train_freq=3), ENV, steps=10, out=tmp_path / "d")
    with pytest.raises(ConfigError, match="--seeds"):
        train(CFG, ENV, steps=10, seeds="3-x", out=tmp_path / "e")


def test_a_missing_suite_and_a_broken_suite_install_say_different_things(monkeypatch):
    from tandem.envs import jaxenv
    monkeypatch.setitem(__import__("sys").modules, "brax", None)  # as if not installed
    with pytest.raises(EnvError, match=r"needs brax; install .*tandem-rl\[jaxenv\]"):
        make_jax_env("brax:ant")
    # gymnax 1.0.1 imports `six` without declaring it: name the package that is missing.
    msg = jaxenv._import_failure("gymnax", "CartPole-v1",
                                 ModuleNotFoundError("No module named 'six'", name="six"))
    assert "importing gymnax failed (No module named 'six')" in msg


def test_gymnasium_seeds_run_one_after_another(tmp_path):
    sw = train(CFG, line_env(), steps=80, seeds="0,2", out=tmp_path / "s", progress=False)
    assert [s["seed"] for s in sw.summaries] == [0, 2]
    assert (tmp_path / "s" / "seed_2" / "config.json").exists()
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["seeds"] == [0, 2]
    with pytest.raises(Exception, match="sweep of 2 runs"):
        load(tmp_path / "s")
    np.testing.assert_array_equal(load(tmp_path / "s" / "seed_2").act(np.zeros(2, np.float32)),
                                  sw.policies[1].act(np.zeros(2, np.float32)))


# ---------------------------------------------------------------------- compiled PPO (issue #4)
PPO_TINY = PPOConfig(n_envs=4, n_steps=16, n_epochs=2, n_minibatches=2, hidden_sizes=(16, 16),
                     eval_episodes=2, log_every=128, checkpoint_every=0)


def test_compiled_ppo_seeds_resume_and_compile_once(tmp_path):
    # CartPole (Discrete) with observation and reward normalisation in the loop state
    cfg = PPO_TINY.replace(normalize_obs=True, normalize_reward=True)
    env = "gymnax:CartPole-v1"
    both = train(cfg, env, steps=384, seeds=[3, 4], out=tmp_path / "both", progress=False)
    train(cfg, env, steps=384, seeds=[4], out=tmp_path / "alone", progress=False)
    a, b = _arrays(tmp_path / "both"), _arrays(tmp_path / "alone")
    assert "state/obs_rms/mean" in a and "state/ret_rms/var" in a
    for k in a:
        np.testing.assert_allclose(a[k][1], b[k][0], rtol=2e-4, atol=2e-5, err_msg=k)
    assert both.summary["steps"] == 384 and int(both.state.episodes[0]) > 0
    # exact resume: 384 straight == 192 + resume 192 (3 + 3 rollouts of 64 steps)
    train(cfg, env, steps=192, seeds=[3, 4], out=tmp_path / "half", progress=False)
    resume(tmp_path / "half", steps=192, progress=False)
    c = _arrays(tmp_path / "half")
    assert a.keys() == c.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], c[k], err_msg=k)
    # one compilation for any number of rollouts per chunk
    _, prog = __import__("tandem.compiled.driver", fromlist=["x"]).program_for(cfg, env, None, 2)
    assert prog.traces["train"] == 1
    # the deployable policy carries the observation statistics and returns integer actions
    policy = load(tmp_path / "both", seed=4)
    assert policy.obs_stats is not None
    np.testing.assert_allclose(policy.obs_stats.mean, a["state/obs_rms/mean"][1], rtol=1e-6)
    act = policy.act(np.zeros((5, 4), np.float32))
    assert act.dtype.kind == "i" and act.shape == (5,)


def test_compiled_ppo_rollout_is_whole_and_box_actions_work(tmp_path):
    # Pendulum (Box): 200 steps asked, rollouts of 64 -> 4 rollouts = 256 steps, as on the
    # host path; the final eval uses the deterministic (clipped mean) action
    sw = train(PPO_TINY, ENV, steps=200, seeds=1, out=tmp_path / "p", progress=False)
    assert sw.summary["steps"] == 256
    assert np.isfinite(sw.summary["eval/return_mean"])
    a = sw.policies[0].act(np.zeros(3, np.float32))
    assert a.shape == (1,) and -2.0 <= float(a[0]) <= 2.0


def test_periodic_eval_on_the_compiled_path(tmp_path):
    # Evaluations between chunks (all seeds at once), logged per seed; best/ holds the state
    # whose mean over seeds scored best, and loading it reproduces that score.
    seen = []
    sw = train(CFG.replace(eval_every=100), ENV, steps=300, seeds=[0, 1], out=tmp_path / "p",
               progress=False, on_eval=lambda step, m: seen.append((step, m)))
    assert [s for s, _ in seen] == [100, 200, 300]
    rows = {}
    for s in (0, 1):
        text = (tmp_path / "p" / f"seed_{s}" / "metrics.csv").read_text().splitlines()
        rows[s] = [(int(r.split(",")[0]), float(r.split(",")[2])) for r in text
                   if ",eval/return_mean," in r]
        assert [st for st, _ in rows[s]] == [100, 200, 300]
    means = [np.mean([rows[0][k][1], rows[1][k][1]]) for k in range(3)]
    np.testing.assert_allclose([m["eval/return_mean"] for _, m in seen], means, rtol=1e-6)
    best = json.loads((tmp_path / "p" / "best.json").read_text())
    k = int(np.argmax(means))
    assert best["step"] == 100 * (k + 1) and sw.summary["time/sps"] > 0
    ev = evaluate(tmp_path / "p", episodes=CFG.eval_episodes, best=True)
    np.testing.assert_allclose(ev["eval/return_mean"], best["eval/return_mean"], rtol=1e-5)
