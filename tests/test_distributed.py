"""Issue #6 on a real local Ray cluster started by the tests: IMPALA with Ray rollout workers,
off-policy --workers, a worker process killed mid-run, and a distributed sweep."""

import json
import logging
import os
import signal
import sys
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from tandem import EnvError, IMPALAConfig, load, resume, train
from tandem.cli import main
from tandem.errors import ConfigError
from tests.conftest import TINY
from tests.envs import line_env

ray = pytest.importorskip("ray")

IMPALA_TINY = IMPALAConfig(workers=2, envs_per_worker=2, n_steps=8, rollouts_per_update=2,
                           hidden_sizes=(16, 16),
                           eval_episodes=1, log_every=256, checkpoint_every=0)
SAC_WORKERS = TINY.replace(workers=2, worker_steps=50, learning_starts=100)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for this module (4 logical CPUs on any machine: workers mostly wait)."""
    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def test_impala_trains_checkpoints_loads_and_resumes(tmp_path):
    run = train(IMPALA_TINY, "CartPole-v1", steps=1_000, seed=0, out=tmp_path / "r",
                progress=False)
    s = run.summary
    # whole batches of rollouts_per_update x envs_per_worker x n_steps = 32 steps
    assert s["steps"] == 1_024 and s["rollout/worker_restarts"] == 0
    rows = (tmp_path / "r" / "metrics.csv").read_text()
    assert "rollout/policy_lag" in rows and "train/rho_mean" in rows
    policy = load(tmp_path / "r")
    obs, _ = gym.make("CartPole-v1").reset(seed=0)
    assert policy.act(obs) in (0, 1)
    resumed = resume(tmp_path / "r", steps=256, progress=False)
    assert resumed.summary["steps"] == 1_280 and resumed.summary["resumed_from"] == 1_024
    # the learner state continued: more updates than the first session's 32
    assert int(resumed.state.updates) == 40


def test_impala_needs_an_env_workers_can_make(tmp_path):
    with pytest.raises(ConfigError, match="registered env id"):
        train(IMPALA_TINY, line_env(), steps=100, out=tmp_path / "r", progress=False)


def test_workers_are_for_gymnasium_envs(tmp_path):
    with pytest.raises(ConfigError, match="JAX-native"):
        train(IMPALA_TINY, "gymnax:CartPole-v1", steps=100, out=tmp_path / "r")
    with pytest.raises(ConfigError, match="JAX-native"):
        train(SAC_WORKERS, "gymnax:Pendulum-v1", steps=100, out=tmp_path / "r")


def test_killed_worker_is_replaced_and_the_run_finishes(tmp_path, caplog):
    killed = {}

    def kill_a_worker():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            names = [a for a in ray.util.list_named_actors(all_namespaces=True)
                     if "worker0-0" in a["name"]]
            if names:
                actor = ray.get_actor(names[0]["name"], namespace=names[0]["namespace"])
                pid = ray.get(actor.pid.remote())
                # answered after its first rollout: kill it mid-run
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
            time.sleep(0.2)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    with caplog.at_level(logging.WARNING, logger="tandem"):
        run = train(IMPALA_TINY, "CartPole-v1", steps=8_000, seed=1, out=tmp_path / "r",
                    progress=False)
    killer.join(timeout=5)
    assert killed, "the test never found the worker to kill"
    assert run.summary["steps"] >= 8_000
    assert run.summary["rollout/worker_restarts"] == 1
    assert any("worker 0 died" in r.getMessage() for r in caplog.records)


def test_sac_with_workers_fills_the_replay_and_resumes(tmp_path):
    run = train(SAC_WORKERS, "Pendulum-v1", steps=400, seed=0, out=tmp_path / "r",
                progress=False)
    assert run.summary["steps"] == 400 and run.summary["workers"] == 2
    assert run.summary["rollout/episodes"] >= 0
    from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
    meta, arrays = load_checkpoint(latest_checkpoint(tmp_path / "r"))
    assert meta["stores"]["replay"]["count"] == 400
    # transitions from two workers with different seeds: no two first observations alike
    obs = arrays["replay/obs"]
    assert np.all(np.isfinite(obs)) and len(np.unique(obs[:, 0])) > 300
    resumed = resume(tmp_path / "r", steps=100, progress=False)
    assert resumed.summary["steps"] == 500


def test_worker_errors_stop_training_with_the_workers_message(tmp_path):
    gym.register("tandem-test/NaNLine-v0", entry_point="tests.envs:LineEnv",
                 kwargs={"bad_step": 5, "terminate": False}, max_episode_steps=20)
    # (the env check would catch this env before training; skip it to reach the worker)
    with pytest.raises(EnvError, match="rollout worker .* non-finite reward"):
        train(SAC_WORKERS, "tandem-test/NaNLine-v0", steps=300, out=tmp_path / "r",
              progress=False, check_env=False)


def test_env_registered_only_in_the_driver_reaches_the_workers(tmp_path):
    # registered here (not in an importable module's import side effects): the spec travels
    gym.register("tandem-test/DriverOnlyLine-v0", entry_point="tests.envs:LineEnv",
                 kwargs={"terminate": False}, max_episode_steps=25)
    run = train(SAC_WORKERS, "tandem-test/DriverOnlyLine-v0", steps=200, out=tmp_path / "r",
                progress=False)
    assert run.summary["rollout/episodes"] >= 6  # 200 steps of 25-step episodes, 2 workers


def test_sweep_of_four_tiny_runs(tmp_path):
    from tandem.sweep import sweep
    record = sweep(TINY, "Pendulum-v1", 200, [0, 1], {"learning_starts": [50, 100]},
                   tmp_path / "s", cpus_per_run=2)
    runs = record["runs"]
    assert len(runs) == 4 and all("summary" in r for r in runs)
    assert {(r["point"]["learning_starts"], r["seed"]) for r in runs} == \
        {(50, 0), (50, 1), (100, 0), (100, 1)}
    for r in runs:
        summary = json.loads((tmp_path / "s" / r["dir"].split("/s/")[-1] /
                              "summary.json").read_text())
        assert summary["steps"] == 200 and summary["seed"] == r["seed"]
    point = json.loads((tmp_path / "s" / "learning_starts=50" / "summary.json").read_text())
    assert point["seeds"] == [0, 1] and len(point["eval/return_per_seed"]) == 2
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["runs"] == runs
    # and tandem report reads a grid point as a sweep of seeds, the sweep folder as its points
    from tandem.report import _expand_sweeps, load_run_set
    assert len(load_run_set(tmp_path / "s" / "learning_starts=100").seeds) == 2
    assert _expand_sweeps([tmp_path / "s"], [None]) == [
        (tmp_path / "s" / "learning_starts=50", "sac learning_starts=50"),
        (tmp_path / "s" / "learning_starts=100", "sac learning_starts=100")]


def test_sweep_cli_rejects_a_bad_grid_without_starting_anything(tmp_path, capsys):
    assert main(["sweep", "sac", "--env", "Pendulum-v1", "--grid", "learning_rate",
                 "--out", str(tmp_path / "s")]) == 2
    assert "field=v1,v2" in capsys.readouterr().err
    assert main(["sweep", "sac", "--env", "Pendulum-v1", "--grid", "tau=2.0",
                 "--out", str(tmp_path / "s")]) == 2
    assert "tau" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_missing_ray_names_the_extra(monkeypatch):
    from tandem.distributed.cluster import require_ray
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"tandem-rl\[ray\]"):
        require_ray()
