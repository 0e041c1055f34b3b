"""CLI exit codes and messages, run-folder contents, TensorBoard files readable by TensorBoard."""

import json
import os
import subprocess
import sys

import pytest

from tandem.cli import main

TINY_ARGS = ["--hidden-sizes", "16,16", "--batch-size", "32", "--buffer-size", "5000",
             "--learning-starts", "50", "--eval-episodes", "1", "--log-every", "100",
             "--checkpoint-every", "0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "sac", "--env", "Pendulum-v1", "--steps", "300", "--seed", "1",
                 "--out", str(out), "--progress", "lines", *TINY_ARGS]) == 0
    return out


def _strict_json(text):
    """json.loads that refuses NaN/Infinity, which other JSON readers reject."""
    def refuse(const):
        raise ValueError(f"non-standard JSON constant {const}")
    return json.loads(text, parse_constant=refuse)


def test_train_writes_the_run_folder(run_dir, capsys):
    summary = _strict_json((run_dir / "summary.json").read_text())
    for key in ("algo", "env", "seed", "steps", "version", "eval/return_mean",
                "eval/return_std", "eval/episodes", "time/sps", "time/wall_s"):
        assert key in summary, key
    assert summary["algo"] == "sac" and summary["env"] == "Pendulum-v1"
    assert summary["steps"] == 300 and summary["seed"] == 1 and summary["eval/episodes"] == 1
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["hidden_sizes"] == [16, 16] and cfg["config"]["learning_starts"] == 50
    assert (run_dir / "metrics.csv").read_text().startswith("step,name,value")
    assert list((run_dir / "checkpoints").glob("step_*/arrays.safetensors"))


def test_tensorboard_reads_the_event_file(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/critic_loss", "train/actor_loss", "train/alpha", "time/sps",
            "rollout/ep_return_mean"} <= tags
    steps = [e.step for e in acc.Scalars("train/critic_loss")]
    assert steps == [100, 200, 300]
    assert all(isinstance(e.value, float) for e in acc.Scalars("time/sps"))


def test_eval_and_resume_commands(run_dir, capsys):
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["eval/episodes"] == 2 and "eval/return_mean" in out
    assert main(["resume", str(run_dir), "--steps", "100", "--progress", "lines"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 400


@pytest.mark.parametrize("argv, message", [
    (["train", "sac", "--env", "CartPole-v1"], "needs continuous (Box) actions"),
    (["train", "sac", "--env", "Pendulm-v1"], "did you mean Pendulum-v1"),
    (["train", "sac", "--tau", "3"], "SACConfig.tau=3.0 is out of range"),
    (["train", "sac", "--batchsize", "3"], "did you mean batch_size"),
    (["train", "sac", "--gamma"], "--gamma needs a value"),
    (["train", "sac", "--steps", "ten"], "invalid int value"),
    (["train", "dqn"], "invalid choice"),
    (["train", "sac", "--envs", "4"], "--envs is for on-policy algorithms"),
    (["train", "ppo", "--envs", "3", "--n-steps", "5", "--n-minibatches", "4"],
     "must divide the rollout size n_envs x n_steps = 15"),
    (["eval", "/nonexistent/run"], "does not exist"),
    (["resume", "/nonexistent/run", "--steps", "5"], "does not exist"),
    (["eval"], "the following arguments are required"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tandem: error:") and message in err


def test_console_script_entry_point(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    bad = subprocess.run([sys.executable, "-m", "tandem.cli", "train", "sac", "--tau", "-1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0
    helped = subprocess.run([sys.executable, "-m", "tandem.cli", "config", "sac"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and "--learning-starts" in helped.stdout


def test_progress_bar_on_a_terminal(tmp_path):
    # `script` gives the command a pseudo-terminal, as a user's shell would.
    import shutil
    if shutil.which("script") is None:
        pytest.skip("util-linux `script` not available")
    cmd = (f"{sys.executable} -m tandem.cli train sac --env Pendulum-v1 --steps 120 "
           f"--out {tmp_path / 'r'} " + " ".join(TINY_ARGS))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "COLUMNS": "160", "TERM": "xterm"}
    out = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                         env=env, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "steps/s" in out.stdout and "120/120" in out.stdout and "ETA" in out.stdout


def test_ctrl_c_checkpoints_at_the_current_step_and_resume_continues(tmp_path):
    import signal
    import time

    out = tmp_path / "r"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "tandem.cli", "train", "sac", "--env",
                             "Pendulum-v1", "--steps", "1000000", "--out", str(out),
                             "--progress", "lines", *TINY_ARGS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "metrics.csv").exists() or "100" not in (out / "metrics.csv").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    step = int(err.split("interrupted at step ")[1].split(";")[0])
    assert step >= 100
    assert main(["resume", str(out), "--steps", "20", "--progress", "lines"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == step + 20


def test_ppo_and_a2c_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "ppo"
    assert main(["train", "ppo", "--env", "CartPole-v1", "--envs", "2", "--n-steps", "16",
                 "--steps", "64", "--hidden-sizes", "16,16", "--eval-episodes", "1",
                 "--out", str(out), "--progress", "lines"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["n_envs"] == 2 and summary["steps"] == 64
    assert 0 < summary["time/env_fraction"] < 1 and 0 < summary["time/learn_fraction"] < 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert {"train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl",
            "train/explained_variance", "rollout/ep_return_mean"} <= set(acc.Tags()["scalars"])
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    capsys.readouterr()
    assert main(["config", "a2c"]) == 0
    text = capsys.readouterr().out
    assert "--optimizer" in text and "default 'rmsprop'" in text and "--n-steps (int, default 5)" in text
