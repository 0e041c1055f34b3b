"""Offline datasets (issue 16): Minari round trips both ways, the `tandem dataset` commands,
normalised scores, and one clear error for each kind of bad dataset or log file."""

from __future__ import annotations

import json
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

minari = pytest.importorskip("minari")

from minari.data_collector import EpisodeBuffer  # noqa: E402

from tandem.cli import main  # noqa: E402
from tandem.envs import datasets as ds  # noqa: E402
from tandem.errors import DatasetError  # noqa: E402


@pytest.fixture(autouse=True)
def dataset_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _episodes(n=3, steps=None, seed=0, env_id="Pendulum-v1"):
    env = gym.make(env_id)
    env.action_space.seed(seed)
    out = []
    for i in range(n):
        o, _ = env.reset(seed=seed + i)
        obs, act, rew, te, tr = [o], [], [], [], []
        done = False
        while not done:
            a = env.action_space.sample()
            o, r, term, trunc, _ = env.step(a)
            if steps is not None and len(rew) + 1 == steps:
                trunc = True
            obs.append(o), act.append(a), rew.append(r), te.append(term), tr.append(trunc)
            done = term or trunc
        out.append(dict(observations=np.array(obs), actions=np.array(act),
                        rewards=np.array(rew), terminations=np.array(te),
                        truncations=np.array(tr)))
    return out, env


def _minari_write(dataset_id, episodes, env, **kw):
    """A dataset written by Minari's own API (no tandem code)."""
    bufs = [EpisodeBuffer(id=i, **e) for i, e in enumerate(episodes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minari.create_dataset_from_buffers(dataset_id, bufs, env=env, **kw)


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ============================================================================ round trips
def test_a_dataset_written_by_tandem_opens_in_minari(capsys):
    rc, out, _ = _cli(capsys, "dataset", "collect", "--policy", "random", "--env", "Pendulum-v1",
                      "--episodes", "3", "--out", "pendulum/random-v0", "--seed", "5")
    assert rc == 0, out
    assert json.loads(out)["dataset"] == "pendulum/random-v0"
    theirs = minari.load_dataset("pendulum/random-v0")
    assert theirs.total_episodes == 3 and theirs.total_steps == 600
    assert theirs.spec.env_spec.id == "Pendulum-v1"
    mine = ds.load_dataset("pendulum/random-v0")
    assert mine.size == 600 and mine.env_id == "Pendulum-v1" and mine.max_episode_steps == 200
    for i, ep in enumerate(theirs.iterate_episodes()):
        rows = mine.episode == i
        np.testing.assert_array_equal(mine.obs[rows], ep.observations[:-1])
        np.testing.assert_array_equal(mine.next_obs[rows], ep.observations[1:])
        np.testing.assert_array_equal(mine.action[rows], ep.actions)
        np.testing.assert_allclose(mine.reward[rows], ep.rewards, rtol=1e-6)
        assert mine.truncated[rows][-1] and not mine.terminated[rows].any()
        assert mine.episode_returns[i] == pytest.approx(ep.rewards.sum())
    # episode i was reset with seed 5 + i: the first observation is that reset's
    env = gym.make("Pendulum-v1")
    np.testing.assert_array_equal(mine.obs[mine.episode == 2][0], env.reset(seed=7)[0])


def test_a_dataset_made_by_minaris_data_collector_loads_in_tandem():
    collector = minari.DataCollector(gym.make("Hopper-v5"))
    collector.action_space.seed(0)
    for i in range(3):
        collector.reset(seed=i)
        done = False
        while not done:
            _, _, te, tr, _ = collector.step(collector.action_space.sample())
            done = te or tr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collector.create_dataset("hopper/collected-v0", algorithm_name="random")
    theirs = minari.load_dataset("hopper/collected-v0")
    mine = ds.load_dataset("hopper/collected-v0")
    assert mine.env_id == "Hopper-v5" and mine.size == theirs.total_steps
    assert mine.terminated.sum() == 3  # random Hopper falls: every episode terminates
    eps = list(theirs.iterate_episodes())
    np.testing.assert_array_equal(mine.obs, np.concatenate([e.observations[:-1] for e in eps]))
    np.testing.assert_array_equal(mine.next_obs, np.concatenate([e.observations[1:]
                                                                 for e in eps]))
    # the d4rl reference applies to every Hopper version; no local one was recorded
    assert mine.references == {"d4rl": (-20.272305, 3234.3)}


def test_a_path_works_as_well_as_an_id(tmp_path):
    eps, env = _episodes(2)
    folder = ds.write_dataset(tmp_path / "logs" / "my-data", eps, env.observation_space,
                              env.action_space, env_id="Pendulum-v1")
    assert (folder / "data" / "metadata.json").is_file()
    by_path = ds.load_dataset(str(folder))
    assert by_path.size == 400 and by_path.env_id == "Pendulum-v1"
    assert minari.MinariDataset(folder / "data").total_steps == 400
    assert ds.load_dataset(str(folder / "data")).checksum == by_path.checksum


# ============================================================================ scores
def test_normalised_score_is_d4rls_and_agrees_with_minari():
    # D4RL: 100 * (R - random) / (expert - random); HalfCheetah's random -280.178953, expert
    # 12135.0, so their midpoint 5927.41 scores 50
    ref = ds.d4rl_reference("HalfCheetah-v5")
    assert ds.normalized_score([-280.178953, 12135.0, 5927.4105235], ref) == \
        pytest.approx([0.0, 100.0, 50.0])
    assert ds.d4rl_reference("Hopper-v4") == (-20.272305, 3234.3)
    assert ds.d4rl_reference("Pendulum-v1") is None
    eps, env = _episodes(2)
    _minari_write("pendulum/refs-v0", eps, env, ref_min_score=-1200.0, ref_max_score=-150.0)
    mine = ds.load_dataset("pendulum/refs-v0")
    assert mine.references == {"local": (-1200.0, -150.0)}
    returns = np.array([-1200.0, -675.0, -150.0, -100.0])
    theirs = minari.get_normalized_score(minari.load_dataset("pendulum/refs-v0"), returns)
    np.testing.assert_allclose(mine.normalized(returns)["local"], 100 * theirs)
    np.testing.assert_allclose(mine.normalized(returns)["local"], [0, 50, 100, 100 * 1100 / 1050])


def test_info_reports_size_returns_and_references(capsys):
    eps, env = _episodes(3)
    _minari_write("pendulum/info-v0", eps, env, ref_min_score=-1200.0, ref_max_score=-150.0)
    rc, out, _ = _cli(capsys, "dataset", "info", "pendulum/info-v0")
    assert rc == 0
    info = json.loads(out)
    returns = [float(np.sum(e["rewards"])) for e in eps]
    assert info["episodes"] == 3 and info["transitions"] == 600
    assert info["return_mean"] == pytest.approx(np.mean(returns))
    assert info["return_min"] == pytest.approx(min(returns))
    assert info["references"] == {"local": {"random": -1200.0, "expert": -150.0}}
    assert info["normalized_return_mean"]["local"] == pytest.approx(
        100 * (np.mean(returns) + 1200) / 1050)
    assert info["checksum"].startswith("sha256:") and info["truncations"] == 3


# ============================================================================ bad datasets
def _error(capsys, *argv) -> str:
    rc, out, err = _cli(capsys, *argv)
    assert rc == 2, (out, err)
    assert err.startswith("tandem: error: ") and err.count("\n") == 1, err
    return err


def test_a_missing_dataset_is_one_line_naming_what_is_there(capsys, dataset_root):
    eps, env = _episodes(1)
    _minari_write("pendulum/there-v0", eps, env)
    err = _error(capsys, "dataset", "info", "pendulum/not-there-v0")
    assert "no dataset 'pendulum/not-there-v0'" in err and "pendulum/there-v0" in err
    assert "no dataset folder" in _error(capsys, "dataset", "info", "./nowhere")


def test_without_the_offline_extra_the_error_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "minari", None)  # import minari raises ImportError
    assert "pip install 'tandem-rl[offline]'" in _error(capsys, "dataset", "info", "a/b-v0")


def test_a_corrupt_dataset_is_refused(capsys):
    eps, env = _episodes(2)
    folder = _minari_write("pendulum/corrupt-v0", eps, env).storage.data_path
    main_file = folder / "main_data.hdf5"
    blob = bytearray(main_file.read_bytes())
    main_file.write_bytes(bytes(blob[: len(blob) // 3]))  # truncated by a failed copy
    assert "is corrupt" in _error(capsys, "dataset", "info", "pendulum/corrupt-v0")
    (folder / "metadata.json").write_text("{not json")
    assert "is corrupt" in _error(capsys, "dataset", "info", "pendulum/corrupt-v0")


def test_nan_in_the_data_names_the_episode_and_step():
    eps, env = _episodes(3)
    eps[1]["rewards"][17] = np.nan
    _minari_write("pendulum/nan-v0", eps, env)
    with pytest.raises(DatasetError, match=r"episode 1 has NaN or inf in its rewards at step 17"):
        ds.load_dataset("pendulum/nan-v0")
    eps, env = _episodes(2)
    eps[0]["observations"][5, 1] = np.inf
    _minari_write("pendulum/inf-v0", eps, env)
    with pytest.raises(DatasetError, match=r"episode 0 has NaN or inf in its observations at "
                                           r"step 5"):
        ds.load_dataset("pendulum/inf-v0")


def test_episodes_must_end_with_a_flag_and_not_go_on_after_one():
    eps, env = _episodes(2)
    eps[1]["truncations"][-1] = False
    _minari_write("pendulum/open-v0", eps, env)
    with pytest.raises(DatasetError, match="episode 1 ends at step 199 without a termination"):
        ds.load_dataset("pendulum/open-v0")
    eps, env = _episodes(2)
    eps[0]["terminations"][50] = True
    _minari_write("pendulum/after-v0", eps, env)
    with pytest.raises(DatasetError, match="episode 0 is marked ended at step 50 but goes on"):
        ds.load_dataset("pendulum/after-v0")


def test_an_empty_dataset_is_refused():
    _, env = _episodes(1)
    _minari_write("pendulum/empty-v0", [], env)
    with pytest.raises(DatasetError, match="holds no episodes"):
        ds.load_dataset("pendulum/empty-v0")


def test_spaces_that_do_not_match_the_env_are_refused():
    eps, env = _episodes(2)
    wide = gym.spaces.Box(-3.0, 3.0, (1,), np.float32)  # Pendulum's torque is [-2, 2]
    _minari_write("pendulum/wide-v0", eps, env, action_space=wide)
    with pytest.raises(DatasetError, match="action space .* does not match env Pendulum-v1"):
        ds.load_dataset("pendulum/wide-v0")
    assert ds.load_dataset("pendulum/wide-v0", check_env=False).size == 400


def test_writing_is_all_or_nothing(dataset_root):
    eps, env = _episodes(2)
    ds.write_dataset("pendulum/once-v0", eps, env.observation_space, env.action_space,
                     env_id="Pendulum-v1")
    before = ds.checksum(ds.locate("pendulum/once-v0"))
    with pytest.raises(DatasetError, match="already exists"):
        ds.write_dataset("pendulum/once-v0", eps[:1], env.observation_space, env.action_space)
    assert ds.checksum(ds.locate("pendulum/once-v0")) == before
    bad = [dict(eps[0]), dict(eps[1])]
    bad[1]["observations"] = bad[1]["observations"][:, :2]  # the wrong shape for the space
    with pytest.raises(DatasetError, match="episode 1's observations have shape"):
        ds.write_dataset("pendulum/half-v0", bad, env.observation_space, env.action_space)
    assert not (dataset_root / "pendulum" / "half-v0").exists()
    assert not [p for p in (dataset_root / "pendulum").iterdir() if "partial" in p.name]
    with pytest.raises(DatasetError, match="not a Minari id"):
        ds.write_dataset("no version", eps, env.observation_space, env.action_space)


# ============================================================================ import
def _flat(eps):
    cat = lambda k, sl: np.concatenate([e[k][sl] for e in eps])  # noqa: E731
    return dict(obs=cat("observations", slice(None, -1)), next_obs=cat("observations",
                                                                      slice(1, None)),
                action=cat("actions", slice(None)), reward=cat("rewards", slice(None)),
                terminated=cat("terminations", slice(None)).astype(np.int8),
                truncated=cat("truncations", slice(None)).astype(np.int8))


def test_import_npz_and_csv_logs(tmp_path, capsys):
    eps, _ = _episodes(2, steps=30)
    cols = _flat(eps)
    np.savez(tmp_path / "logs.npz", **cols)
    rc, out, err = _cli(capsys, "dataset", "import", str(tmp_path / "logs.npz"), "--env",
                        "Pendulum-v1", "--out", "plant/npz-v0")
    assert rc == 0, err
    npz = ds.load_dataset("plant/npz-v0")
    assert npz.size == 60 and list(npz.episode_lengths) == [30, 30]
    np.testing.assert_array_equal(npz.obs, cols["obs"])
    np.testing.assert_array_equal(npz.next_obs, cols["next_obs"])
    np.testing.assert_allclose(npz.reward, cols["reward"], rtol=1e-6)
    header = ["obs_0", "obs_1", "obs_2", "action_0", "reward", "terminated", "truncated",
              "next_obs_0", "next_obs_1", "next_obs_2"]
    rows = np.column_stack([cols["obs"], cols["action"], cols["reward"], cols["terminated"],
                            cols["truncated"], cols["next_obs"]])
    np.savetxt(tmp_path / "logs.csv", rows, delimiter=",", header=",".join(header),
               comments="", fmt="%.9g")
    spaces = json.dumps({"observation": {"shape": [3]}, "action": {"low": [-2], "high": [2]}})
    rc, out, err = _cli(capsys, "dataset", "import", str(tmp_path / "logs.csv"), "--spaces",
                        spaces, "--out", "plant/csv-v0")
    assert rc == 0, err
    csv_ds = ds.load_dataset("plant/csv-v0")
    assert csv_ds.env_id is None  # no env: trains with evaluation off
    np.testing.assert_allclose(csv_ds.obs, cols["obs"], rtol=1e-6)
    np.testing.assert_allclose(csv_ds.action, cols["action"], rtol=1e-6)
    with pytest.raises(DatasetError, match="records no env"):
        csv_ds.make_env()


@pytest.mark.parametrize("damage, message", [
    (lambda c: c.update(truncated=np.zeros_like(c["truncated"])), "do not end an episode"),
    (lambda c: c["reward"].__setitem__(7, np.nan), "reward is NaN or inf at row 7"),
    (lambda c: c["next_obs"].__setitem__((3, 2), c["next_obs"][3, 2] + 0.01), "row 3's "
     "next_obs is not row 4's obs"),
    (lambda c: c.pop("next_obs"), "lacks next_obs"),
    (lambda c: c["action"].__setitem__(2, 5.0), "action at row 2 lies outside"),
])
def test_import_refuses_bad_logs_with_one_line(tmp_path, capsys, damage, message):
    eps, _ = _episodes(2, steps=20)
    cols = _flat(eps)
    damage(cols)
    np.savez(tmp_path / "bad.npz", **cols)
    err = _error(capsys, "dataset", "import", str(tmp_path / "bad.npz"), "--env", "Pendulum-v1",
                 "--out", "plant/bad-v0")
    assert message in err
    assert not ds.list_datasets()  # nothing half-written


# ============================================================================ from runs
def test_from_run_and_collect_record_a_trained_runs_data(tmp_path, capsys, tiny_cfg):
    from tandem import evaluate, load, train
    from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
    run = train(tiny_cfg, "Pendulum-v1", steps=450, out=tmp_path / "run", progress=False)
    rc, _, err = _cli(capsys, "dataset", "from-run", str(run.dir), "--out",
                      "pendulum/replay-v0")
    assert rc == 0, err
    replay = ds.load_dataset("pendulum/replay-v0")
    # 450 steps: two 200-step episodes cut by the time limit, then 50 steps still running
    # when the checkpoint was written (the log ends there: truncated)
    assert replay.size == 450 and list(replay.episode_lengths) == [200, 200, 50]
    assert replay.truncated.sum() == 3 and replay.truncated[-1]
    _, arrays = load_checkpoint(latest_checkpoint(run.dir))
    np.testing.assert_array_equal(replay.obs, arrays["replay/obs"])
    np.testing.assert_array_equal(replay.next_obs, arrays["replay/next_obs"])
    # the buffer holds policy actions in [-1, 1]; the dataset Pendulum's torques in [-2, 2]
    np.testing.assert_allclose(replay.action, 2 * arrays["replay/action"], rtol=1e-6)
    assert ds.load_dataset("pendulum/replay-v0").metadata["tandem"]["provenance"]["step"] == 450

    rc, _, err = _cli(capsys, "dataset", "collect", str(run.dir), "--episodes", "2", "--out",
                      "pendulum/policy-v0", "--expert", str(run.dir))
    assert rc == 0, err
    clean = ds.load_dataset("pendulum/policy-v0")
    np.testing.assert_allclose(clean.action, load(run.dir).act(clean.obs), atol=1e-6)
    lo, hi = clean.references["local"]
    assert hi == pytest.approx(evaluate(run.dir, episodes=10, seed=0)["eval/return_mean"])
    assert lo < -900  # a random policy on Pendulum
    rc, _, err = _cli(capsys, "dataset", "collect", str(run.dir), "--episodes", "2", "--out",
                      "pendulum/noisy-v0", "--noise", "0.3")
    assert rc == 0, err
    noisy = ds.load_dataset("pendulum/noisy-v0")
    assert noisy.metadata["tandem"]["provenance"]["noise"] == 0.3
    gap = np.abs(noisy.action - load(run.dir).act(noisy.obs))
    assert 0.2 < gap.mean() < 0.8 and gap.max() <= 4.0  # 0.3 * 2 (half range) in torque units
    assert noisy.references == {}  # no expert run, no D4RL reference: no normalised score

    err = _error(capsys, "dataset", "collect", str(run.dir), "--episodes", "1", "--out",
                 "pendulum/x-v0", "--env", "Pendulum-v1")
    assert "no --env" in err
