"""Run folders written by tandem before the run-lifecycle redesign (commit f007158, one per
driver, made by tests/data/legacy_runs/make_legacy_runs.py) still load, evaluate and resume."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tandem import evaluate, load, resume

LEGACY = Path(__file__).parent / "data" / "legacy_runs"
NAMES = ["host_sac", "host_ppo", "compiled_sac", "compiled_ppo", "ray_sac_workers",
         "ray_impala"]


@pytest.mark.parametrize("name", NAMES)
def test_legacy_run_loads_evaluates_and_resumes(tmp_path, name):
    run_dir = tmp_path / name
    shutil.copytree(LEGACY / name, run_dir)
    expected = json.loads((run_dir / "expected.json").read_text())
    policy = load(run_dir)
    for obs, action in zip(expected["obs"], expected["actions"]):
        got = policy.act(np.asarray(obs, np.float32))
        # the same parameters give the same actions (to float32 rounding of the scaling)
        np.testing.assert_allclose(np.asarray(got, np.float64), action, rtol=1e-6, atol=1e-6)
    result = evaluate(run_dir, episodes=2)
    assert result["eval/return_mean"] == pytest.approx(expected["eval_return_mean"], rel=1e-5)
    config = json.loads((run_dir / "config.json").read_text())
    resumed = resume(run_dir, steps=64 if "ppo" in name or "impala" in name else 50,
                     progress=False)
    assert resumed.summary["steps"] > int(config["steps"])
    # every driver names its step unit and writes the same core fields
    for key in ("eval/return_mean", "time/sps", "step_unit"):
        assert resumed.summary[key] is not None, key
    assert resumed.summary["step_unit"] == "env_steps"
    if "sac" in name:  # written with the paper's exact correction, before the field existed,
        # so the resume goes on with it (a new run's default is SB3's bounded one)
        from tandem.api import _config_from
        assert "squash_correction" not in config["config"]
        assert _config_from(config).squash_correction == "exact"
    if name == "host_sac":  # the best checkpoint of its periodic evaluation loads too
        best = load(run_dir, best=True)
        assert np.all(np.isfinite(best.act(np.asarray(expected["obs"][0], np.float32))))
