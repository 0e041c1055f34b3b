"""One env resolver (issue 14): module:Name factories, --env-kwargs for train, eval, tune and
check-env, reserved prefixes, and MuJoCo's log in the run folder."""

import json

import gymnasium as gym
import pytest

from tandem import train
from tandem.cli import main
from tandem.envs.resolve import parse_env_kwargs, resolve_env
from tandem.errors import EnvError
from tests.conftest import TINY

TINY_ARGS = ["--hidden-sizes", "16,16", "--batch-size", "32", "--learning-starts", "50",
             "--eval-episodes", "2", "--log-every", "100", "--checkpoint-every", "0",
             "--progress", "lines"]


def test_a_module_factory_with_env_kwargs_trains_evaluates_resumes_and_tunes(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "sac", "--env", "tests.envs:line_factory", "--env-kwargs",
                 "max_steps=30", "--steps", "120", "--out", str(out), *TINY_ARGS]) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["env"] == "tests.envs:line_factory"
    assert record["env_kwargs"] == {"max_steps": 30}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval/length_mean"] == 30  # episodes of the env made with max_steps=30
    # evaluated on the env made with other arguments (a robustness check)
    assert main(["eval", str(out), "--episodes", "2", "--env-kwargs", "max_steps=10"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])[
        "eval/length_mean"] == 10
    assert main(["resume", str(out), "--steps", "30", "--progress", "lines"]) == 0
    assert main(["check-env", "tests.envs:line_factory", "--env-kwargs", "max_steps=7",
                 "--steps", "20"]) == 0
    capsys.readouterr()
    assert main(["tune", "sac", "--env", "tests.envs:line_factory", "--env-kwargs",
                 "max_steps=15", "--trials", "1", "--steps", "60", "--out",
                 str(tmp_path / "t"), "--eval-every", "60", *TINY_ARGS[:-2]]) == 0
    trial = json.loads((tmp_path / "t" / "trial_0000" / "summary.json").read_text())
    assert trial["eval/length_mean"] == 15


@pytest.mark.parametrize("argv, message", [
    (["train", "sac", "--env", "mamujoco:Ant-v5"], "not supported by this version"),
    (["train", "sac", "--env", "text:Wordle"], "not supported by this version"),
    (["train", "sac", "--env", "tests.envs:no_such_factory"], "no env factory"),
    (["train", "sac", "--env-kwargs", "max_steps"], "key=value"),
])
def test_bad_env_strings_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_parse_env_kwargs_and_the_resolver():
    assert parse_env_kwargs("a=1,b=0.5,c=true,d=none,e=name") == {
        "a": 1, "b": 0.5, "c": True, "d": None, "e": "name"}
    assert parse_env_kwargs(None) == {}
    assert resolve_env("gymnax:CartPole-v1").kind == "jax"
    assert resolve_env("Pendulum-v1").kind == "gym"
    src = resolve_env("tests.envs:line_factory", {"max_steps": 3})
    assert src.kind == "factory" and src.make()._max_episode_steps == 3
    with pytest.raises(EnvError, match="not a gymnasium.Env"):
        resolve_env("json:dumps", {"obj": 1}).make()


def test_mujoco_writes_its_log_into_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gym.register("tandem-test/Unstable-v0", entry_point="tests.envs:unstable_mujoco",
                 max_episode_steps=20)
    try:
        train(TINY, "tandem-test/Unstable-v0", steps=60, out=tmp_path / "run", progress=False)
    finally:
        gym.registry.pop("tandem-test/Unstable-v0")
    assert "unstable" in (tmp_path / "run" / "MUJOCO_LOG.TXT").read_text()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
