"""`tandem tune`: search spaces are valid configs, a study is killed mid-trial and the same
command resumes it (the dead trial is failed and retried with its parameters), pruning."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from tandem.algos import algo_names, get_algo
from tandem.cli import main
from tandem.tune import params_to_fields, suggest

FIXED = ["--hidden-sizes", "16,16", "--learning-starts", "100", "--eval-episodes", "1",
         "--checkpoint-every", "0", "--buffer-size", "5000"]


@pytest.mark.parametrize("algo", algo_names())
def test_every_search_space_samples_valid_configs(algo):
    cls = get_algo(algo).config_cls
    assert cls.search_space, f"{algo} declares no search space"
    assert set(cls.search_space) <= set(cls.field_names())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        values = suggest(trial, cls.search_space)
        cls(**values)  # raises ConfigError on an invalid combination
        study.tell(trial, 0.0)
        # what Optuna stores maps back to the same config values
        assert params_to_fields(cls.search_space, trial.params) == values


def _cmd(out, trials):
    return [sys.executable, "-m", "tandem.cli", "tune", "sac", "--env", "Pendulum-v1",
            "--trials", str(trials), "--steps", "600", "--out", str(out), *FIXED]


@pytest.mark.slow  # 30-45 s: in test.sh step 2, so the default suite stays < ~10 min
def test_a_killed_study_resumes_with_the_same_command(tmp_path):
    out = tmp_path / "study"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(_cmd(out, 3), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240
    while not (out / "trial_0001" / "config.json").exists():  # trial 0 done, 1 under way
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    url = f"sqlite:///{out / 'study.db'}"
    states = {t.number: t.state for t in optuna.load_study(study_name="sac-Pendulum-v1",
                                                            storage=url).trials}
    assert states == {0: optuna.trial.TrialState.COMPLETE, 1: optuna.trial.TrialState.RUNNING}

    done = subprocess.run(_cmd(out, 3), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "marked failed and queued again" in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["complete"] + result["pruned"] == 3 and result["failed"] == 1
    study = optuna.load_study(study_name="sac-Pendulum-v1", storage=url)
    trials = study.trials
    assert trials[1].state == optuna.trial.TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == trials[1].params
    best = json.loads((out / "best.json").read_text())
    assert best["value"] == study.best_value and best["finished_trials"] == 3
    assert best["fixed"]["hidden_sizes"] == [16, 16]

    # Asking again for 3 trials runs nothing; asking for 4 runs one more.
    again = subprocess.run(_cmd(out, 3), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "3 of 3 trials finished" in again.stderr
    assert len(optuna.load_study(study_name="sac-Pendulum-v1", storage=url).trials) == \
        len(trials)


@pytest.mark.slow  # 30-45 s: in test.sh step 2, so the default suite stays < ~10 min
def test_pruned_trials_stop_early_and_errors(tmp_path, capsys):
    from tandem import SACConfig
    from tandem.tune import tune
    fixed = dict(hidden_sizes=(16, 16), learning_starts=100, eval_episodes=1,
                 checkpoint_every=0, buffer_size=5000)
    study = tune(SACConfig, "Pendulum-v1", trials=5, steps=400, out=tmp_path / "p",
                 fixed=fixed, eval_every=40)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    for t in pruned:  # stopped before the end, after the first quarter
        steps = sorted(t.intermediate_values)
        assert 100 <= steps[-1] < 400
    assert all(sorted(t.intermediate_values) == list(range(40, 401, 40))
               for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert main(["tune", "sac", "--env", "Pendulum-v1", "--trials", "0"]) == 2
    assert "--trials 0" in capsys.readouterr().err
    assert main(["tune", "sac", "--env", "Pendulum-v1", "--trials", "1", "--batch-size",
                 "64", "--buffer-size", "10", "--out", str(tmp_path / "e")]) == 2
    assert "batch_size=64 exceeds buffer_size=10" in capsys.readouterr().err
    assert main(["tune", "sac", "--env", "Pendulum-v1", "--trials", "1", "--storage",
                 "nosuchdb://x", "--out", str(tmp_path / "e")]) == 2
    assert "cannot open" in capsys.readouterr().err


def test_an_offline_algorithm_is_tuned_on_a_dataset(tmp_path, monkeypatch, capsys):
    """Each trial trains on the dataset (gradient steps) and is scored in its env; the CLI
    takes --dataset instead of --env, and says which one an algorithm needs."""
    pytest.importorskip("minari")
    from tandem import datasets as dsets
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    dsets.collect("pendulum/tune-v0", 3, env="Pendulum-v1", seed=0)
    assert main(["tune", "iql", "--dataset", "pendulum/tune-v0", "--trials", "2", "--steps",
                 "60", "--eval-every", "30", "--hidden-sizes", "8", "--batch-size", "16",
                 "--eval-episodes", "1", "--checkpoint-every", "0", "--pruner", "none",
                 "--out", str(tmp_path / "t")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["complete"] == 2 and out["study"] == "iql-pendulum/tune-v0"
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    run = json.loads((tmp_path / "t" / f"trial_{best['trial']:04d}" / "config.json").read_text())
    assert run["dataset"]["name"] == "pendulum/tune-v0" and run["steps"] == 60
    assert run["config"]["hidden_sizes"] == [8]
    assert main(["tune", "iql", "--env", "Pendulum-v1", "--trials", "1"]) == 2
    assert "is tuned on a dataset" in capsys.readouterr().err
    assert main(["tune", "sac", "--dataset", "pendulum/tune-v0", "--trials", "1"]) == 2
    assert "learns online" in capsys.readouterr().err
    assert main(["tune", "iql", "--trials", "1"]) == 2
    assert "--env (online algorithms) or --dataset" in capsys.readouterr().err
