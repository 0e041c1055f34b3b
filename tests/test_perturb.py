"""Zero-shot robustness (issue 20): the perturbation wrappers act as documented, and
`tandem eval --perturb` writes a table whose nominal row is the plain evaluation."""

import json

import gymnasium as gym
import numpy as np
import pytest

from tandem.cli import main
from tandem.envs.perturb import ActionDelay, ActionNoise, ObservationNoise, perturb
from tandem.errors import EnvError


class Recorder(gym.Env):
    """Observation = the last action received (so a test reads what reached the env)."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
    action_space = gym.spaces.Box(np.array([-1.0, 0.0], np.float32),
                                  np.array([1.0, 4.0], np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.asarray(action, np.float32), 0.0, False, False, {}


def test_action_delay_sends_the_action_of_k_steps_ago_and_the_midpoint_before():
    env = ActionDelay(Recorder(), 2)
    env.reset(seed=0)
    got = [env.step(np.array([0.1 * i, i], np.float32))[0] for i in range(1, 5)]
    np.testing.assert_allclose(got, [[0, 2], [0, 2], [0.1, 1], [0.2, 2]], atol=1e-6)
    env.reset(seed=0)  # a new episode starts idle again
    np.testing.assert_allclose(env.step(np.array([1, 1], np.float32))[0], [0, 2])
    with pytest.raises(EnvError):
        ActionDelay(Recorder(), 1.5)


def test_noise_wrappers_are_seeded_scaled_and_clipped():
    obs_env = ObservationNoise(Recorder(), 0.5)
    obs_env.reset(seed=3)
    a = [obs_env.step(np.zeros(2, np.float32))[0] for _ in range(2000)]
    obs_env.reset(seed=3)
    b = [obs_env.step(np.zeros(2, np.float32))[0] for _ in range(2000)]
    np.testing.assert_array_equal(a, b)  # the same seed, the same noise
    assert abs(np.std(a) - 0.5) < 0.03
    act_env = ActionNoise(Recorder(), 0.1)  # 10% of the half-range: std 0.1 and 0.2
    act_env.reset(seed=1)
    sent = np.asarray([act_env.step(np.array([0.0, 2.0], np.float32))[0]
                       for _ in range(4000)])
    np.testing.assert_allclose(sent.std(0), [0.1, 0.2], rtol=0.08)
    act_env.reset(seed=1)
    edge = np.asarray([act_env.step(np.array([1.0, 4.0], np.float32))[0] for _ in range(100)])
    assert (edge <= [1.0, 4.0]).all() and (edge[:, 0] < 1.0).any()


def test_mujoco_model_perturbations_scale_the_model():
    env = gym.make("InvertedPendulum-v5")
    model = env.unwrapped.model
    mass, inertia = model.body_mass.copy(), model.body_inertia.copy()
    friction, gear = model.geom_friction[:, 0].copy(), model.actuator_gear[:, 0].copy()
    perturb(env, "body_mass", 2.0)
    perturb(env, "friction", 0.5)
    perturb(env, "actuator_gain", 0.8)
    np.testing.assert_allclose(model.body_mass, 2 * mass)
    np.testing.assert_allclose(model.body_inertia, 2 * inertia)
    np.testing.assert_allclose(model.geom_friction[:, 0], 0.5 * friction)
    np.testing.assert_allclose(model.actuator_gear[:, 0], 0.8 * gear)
    with pytest.raises(EnvError, match="MuJoCo"):
        perturb(gym.make("Pendulum-v1"), "friction", 2.0)


def test_eval_perturb_command_writes_the_table(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "sac", "--env", "Pendulum-v1", "--steps", "200", "--seed", "0",
                 "--out", str(run), "--hidden-sizes", "16,16", "--batch-size", "32",
                 "--learning-starts", "100", "--eval-episodes", "1",
                 "--progress", "lines"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2"]) == 0
    plain = json.loads(capsys.readouterr().out)["eval/return_mean"]
    assert main(["eval", str(run), "--episodes", "2", "--perturb", "g=2,20",
                 "--perturb", "obs_noise=0,1", "--perturb", "action_delay=4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    table = json.loads((run / "perturb.json").read_text())
    assert printed["rows"] == [{k: r[k] for k in ("perturbation", "value", "return_mean")}
                               for r in table["rows"]]
    rows = {(r["perturbation"], r["value"]): r["return_mean"] for r in table["rows"]}
    assert list(rows)[0] == ("nominal", None) and rows[("nominal", None)] == plain
    assert rows[("obs_noise", 0)] == plain  # zero noise is the nominal env
    assert rows[("g", 2)] != plain and rows[("obs_noise", 1)] != plain
    assert rows[("action_delay", 4)] != plain
    assert printed["plot"] == str(run / "perturb.png") and (run / "perturb.png").stat().st_size
    from tandem.report import write_report
    index = write_report([run], tmp_path / "report", video=False)
    page = index.read_text()
    assert "Zero-shot robustness" in page and "action_delay" in page
    assert (tmp_path / "report" / "img" / "perturb_0_0.png").is_file()

    def fails(argv, needle):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err

    fails(["eval", str(run), "--perturb", "body_mass=2"], "MuJoCo")
    fails(["eval", str(run), "--perturb", "nope=1"], "does not take")
    fails(["eval", str(run), "--perturb", "obs_noise=loud"], "numbers")
    fails(["eval", str(run), "--perturb", "g"], "name=value")
