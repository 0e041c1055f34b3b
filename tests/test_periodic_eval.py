"""Evaluation during training: on a separate env, at eval_every, logged as eval/ rows, the best
checkpoint kept and reproducible, a callback that can stop training, resume without gaps."""

import csv
import json

import pytest

from tandem import ConfigError, evaluate, load, resume, train
from tandem.run.checkpoint import latest_checkpoint
from tests.conftest import TINY
from tests.envs import line_env

CFG = TINY.replace(eval_every=200, checkpoint_every=200, log_every=150)  # evals off the log grid


def _eval_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [(int(r["step"]), float(r["value"])) for r in csv.DictReader(fh)
                if r["name"] == "eval/return_mean"]


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pe") / "full"
    seen = []
    run = train(CFG, "Pendulum-v1", steps=600, seed=3, out=out, progress=False,
                on_eval=lambda step, m: seen.append((step, m)))
    return out, run, seen


def test_eval_rows_best_checkpoint_and_callback(full_run):
    out, run, seen = full_run
    assert [s for s, _ in seen] == [200, 400, 600]
    rows = _eval_rows(out)
    assert [s for s, _ in rows] == [200, 400, 600]
    assert [m["eval/return_mean"] for _, m in seen] == [v for _, v in rows]
    best = json.loads((out / "best.json").read_text())
    best_step, best_return = max(rows, key=lambda r: r[1])
    assert (best["step"], best["eval/return_mean"]) == (best_step, best_return)
    assert run.summary["best"]["step"] == best_step
    assert latest_checkpoint(out, "best").name == f"step_{best_step:012d}"
    # The kept policy is the one that scored: the same eval episodes give the same return.
    again = evaluate(out, episodes=CFG.eval_episodes, best=True)
    assert again["eval/return_mean"] == best_return
    assert (out / "eval_best.json").is_file()
    assert load(out, best=True).act([1.0, 0.0, 0.0]).shape == (1,)
    # the final evaluation is the same evaluation as the last periodic one
    assert run.summary["eval/return_mean"] == rows[-1][1]


def test_tensorboard_has_the_eval_scalars(full_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(full_run[0] / "tb"))
    acc.Reload()
    assert {"eval/return_mean", "eval/best_return", "time/eval_s"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("eval/return_mean")] == [200, 400, 600]
    tags = acc.Tags()["scalars"]
    assert all(t.split("/")[0] in ("train", "rollout", "eval", "time") for t in tags), tags


def test_a_callback_that_stops_training_then_resume_gives_the_same_curve(full_run, tmp_path):
    out = tmp_path / "stopped"

    def stop_at_400(step, metrics):
        if step == 400:  # as a tuner's pruning or a crash right after the evaluation
            raise _Stop

    with pytest.raises(_Stop):
        train(CFG, "Pendulum-v1", steps=600, seed=3, out=out, progress=False,
              on_eval=stop_at_400)
    assert latest_checkpoint(out).name == f"step_{200:012d}"  # 400's checkpoint never came
    resume(out, progress=False)
    assert _eval_rows(out) == _eval_rows(full_run[0])  # no gap, no duplicate step
    assert json.loads((out / "best.json").read_text()) == \
        json.loads((full_run[0] / "best.json").read_text())


def test_eval_schedule_errors(tmp_path):
    with pytest.raises(ConfigError, match="eval_every=200 needs eval_episodes >= 1"):
        train(CFG.replace(eval_episodes=0), "Pendulum-v1", steps=10)
    with pytest.raises(ConfigError, match="register it"):
        train(CFG, line_env(), steps=10)
    train(TINY, line_env(), steps=60, out=tmp_path / "r", progress=False)  # eval_every=0
    with pytest.raises(Exception, match="no best checkpoint"):
        load(tmp_path / "r", best=True)


def test_on_policy_evaluates_after_the_rollout_that_reaches_each_multiple(tmp_path):
    from tests.algos.test_ppo import TINY_PPO
    cfg = TINY_PPO.replace(eval_every=100, eval_episodes=1)
    per_rollout = cfg.n_envs * cfg.n_steps
    seen = []
    train(cfg, "CartPole-v1", steps=10 * per_rollout, out=tmp_path / "ppo", progress=False,
          on_eval=lambda step, m: seen.append(step))
    ends = [per_rollout * k for k in range(1, 11)]
    expected = [e for prev, e in zip([0] + ends, ends) if e // 100 > prev // 100]
    assert seen == expected and len(expected) >= 2
    assert [s for s, _ in _eval_rows(tmp_path / "ppo")] == expected
