"""ONNX export (issue 20): the exported graph gives the JAX policy's actions to 1e-5 for every
algorithm and space, runs in onnxruntime without JAX, and bad input gets one line."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

from tandem.algos import get_algo
from tandem.cli import main
from tandem.core.normalize import ObsStats
from tandem.core.spaces import EnvSpec, Space
from tandem.deploy import OnnxPolicy
from tandem.errors import ExportError
from tandem.export import policy_model, write_model, write_npz
from tandem.export.jaxpr_onnx import to_onnx
from tandem.run.results import Policy

BOX = Space.box((3,))
ABOX = Space.box((2,), low=[-2.0, 0.0], high=[2.0, 1.0])  # asymmetric bounds: scaling shows
DICT = Space.dict_of({"pos": Space.box((2,)), "mode": Space.discrete(3, start=1),
                      "flags": Space.multibinary(2)})
STATS = ObsStats(np.asarray([0.5, -1.0, 2.0], np.float32), np.asarray([2.0, 0.5, 3.0], np.float32))


def _policy(algo, obs=BOX, action=ABOX, stats=STATS, **fields):
    """A freshly initialised policy (parity does not need training: the graph is the same
    computation whatever the weights)."""
    spec = get_algo(algo)
    names = {f.name for f in dataclasses.fields(spec.config_cls)}
    cfg = spec.config_cls(**{k: v for k, v in {"hidden_sizes": (8, 8), **fields}.items()
                             if k in names})
    fns = spec.build(cfg, EnvSpec(obs, action, "Test-v0"))
    state = fns.init(jax.random.PRNGKey(3))
    return Policy(algo, fns.policy_params(state), stats if obs is BOX else None,
                  EnvSpec(obs, action, "Test-v0"), fns.act)


def _observations(obs_space, n, rng):
    if obs_space is BOX:  # within, and far outside, the normalised range (+-10 sigma)
        return (STATS.mean + STATS.std * rng.uniform(-10, 10, (n, 3))).astype(np.float32)
    return {"pos": rng.standard_normal((n, 2)).astype(np.float32),
            "mode": rng.integers(1, 4, n), "flags": rng.integers(0, 2, (n, 2))}


def _docs_forward():
    """The NumPy forward pass printed in docs/deploy.md, executed as printed."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    block = next(b.split("\n", 1)[1] for b in text.split("```python")[1:] if "def forward(" in b)
    scope = {}
    exec(block.split("```")[0], scope)
    return scope


def _check_parity(policy, tmp_path):
    model = policy_model(policy, {})
    path = write_model(model, tmp_path / f"{policy.algo}.onnx")
    npz = write_npz(model, tmp_path / f"{policy.algo}.npz")
    docs = _docs_forward()
    graph, weights = docs["load_npz_policy"](str(npz.with_suffix("")))
    onnx.checker.check_model(str(path), full_check=True)
    deployed = OnnxPolicy(path)
    rng = np.random.default_rng(0)
    for n in (1, 64):
        obs = _observations(policy.spec.obs, n, rng)
        want = policy.act(obs)
        got = deployed.act(obs)
        assert got.shape == want.shape
        feeds = [obs] if not isinstance(obs, dict) else [obs[k] for k in ("pos", "mode", "flags")]
        by_numpy = docs["forward"](graph, weights, *feeds)[0]
        assert by_numpy.dtype == got.dtype
        np.testing.assert_allclose(by_numpy, got, atol=1e-5, rtol=0)
        if policy.spec.action.kind == "box":
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
            assert (got >= np.asarray(policy.action_low, np.float32)).all()
            assert (got <= np.asarray(policy.action_high, np.float32)).all()
        else:
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want)
        # one observation: no batch axis in, none out
        one = obs[0] if not isinstance(obs, dict) else {k: v[0] for k, v in obs.items()}
        np.testing.assert_allclose(deployed.act(one), policy.act(one), atol=1e-5, rtol=0)
    meta = deployed.metadata
    assert meta["algo"] == policy.algo and meta["env_id"] == "Test-v0"
    assert Space.from_json(json.loads(meta["action_space"])) == policy.spec.action
    return path


# Every algorithm with its default actor, and every kind of action head and observation. The
# default suite runs the two that exercise the most of the translator (CFPI's act takes a
# Q-gradient step: gathers, a scatter-add, an ensemble's Einsum; PPO's Discrete head: argmax
# and the int64 output); the export command's test adds SAC with normalised observations. The
# slow step runs the rest (each case compiles its algorithm's init, 3-13 s).
_slow = pytest.mark.slow
CASES = [
    pytest.param("cfpi", BOX, ABOX, {}, id="cfpi"),
    pytest.param("ppo", BOX, Space.discrete(4, start=2), {}, id="ppo-discrete"),
    pytest.param("sac", BOX, ABOX, {}, id="sac", marks=_slow),  # TanhGaussian
    pytest.param("td3", BOX, ABOX, {}, id="td3", marks=_slow),  # deterministic tanh
    pytest.param("sac", BOX, ABOX, {"network": "simbav2"}, id="sac-simbav2", marks=_slow),
    pytest.param("td3", BOX, ABOX, {"network": "simbav2"}, id="td3-simbav2", marks=_slow),
    pytest.param("iql", BOX, ABOX, {}, id="iql", marks=_slow),  # Gaussian, tanh mean
    pytest.param("ppo", BOX, ABOX, {}, id="ppo-box", marks=_slow),
    pytest.param("ppo", BOX, Space.multidiscrete([3, 2], start=[1, 0]), {},
                 id="ppo-multidiscrete", marks=_slow),
    pytest.param("sac", DICT, ABOX, {}, id="sac-dict-obs", marks=_slow),
    pytest.param("ppo", DICT, Space.discrete(3), {}, id="ppo-dict-obs", marks=_slow),
    *[pytest.param(a, BOX, act, {}, id=f"{a}-{act.kind}", marks=_slow) for a, act in [
        ("droq", ABOX), ("ddpg", ABOX), ("a2c", Space.discrete(3)), ("impala", ABOX),
        ("impala", Space.discrete(3)),
        ("bc", ABOX), ("td3bc", ABOX), ("sac-rnd", ABOX), ("csve", ABOX)]],
]


@pytest.mark.parametrize("algo, obs, action, fields", CASES)
def test_exported_actions_equal_the_jax_policy(algo, obs, action, fields, tmp_path):
    _check_parity(_policy(algo, obs, action, **fields), tmp_path)


@pytest.mark.slow
def test_argmax_ties_pick_the_first_action_as_jax_does(tmp_path):
    """All-equal logits (the last layer zeroed): JAX's argmax and the graph's take index 0."""
    policy = _policy("ppo", action=Space.discrete(5, start=1))
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.zeros_like(x) if "Dense_2" in jax.tree_util.keystr(p) else x,
        policy.params)
    policy = dataclasses.replace(policy, params=params)
    obs = _observations(BOX, 8, np.random.default_rng(1))
    assert (policy.act(obs) == 1).all()
    np.testing.assert_array_equal(OnnxPolicy(_check_parity(policy, tmp_path)).act(obs), 1)


def test_a_primitive_without_a_translation_is_one_export_error():
    with pytest.raises(ExportError, match="'sort'"):
        to_onnx(lambda x: (jnp.sort(x, axis=-1),), [("obs", (4,), np.float32, np.float32)],
                [("action", np.float32)], {})


def test_export_command_runs_a_trained_policy_in_onnxruntime(tmp_path, capsys):
    """`tandem train` -> `tandem export` -> OnnxPolicy on observations recorded from the env,
    against `load(run).act`; then the one-line errors (exit 2) and nothing half-written."""
    from tandem import load
    run = tmp_path / "run"
    assert main(["train", "sac", "--env", "Pendulum-v1", "--steps", "300", "--seed", "0",
                 "--out", str(run), "--hidden-sizes", "16,16", "--batch-size", "32",
                 "--learning-starts", "100", "--normalize-obs", "true", "--eval-episodes", "1",
                 "--progress", "lines"]) == 0
    capsys.readouterr()
    out = tmp_path / "deploy" / "policy.onnx"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    policy, deployed = load(run), OnnxPolicy(out)
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=5)
    recorded = []
    for _ in range(50):
        recorded.append(obs)
        obs, *_ = env.step(deployed.act(obs))
    recorded = np.asarray(recorded, np.float32)
    np.testing.assert_allclose(deployed.act(recorded), policy.act(recorded), atol=1e-5, rtol=0)
    assert deployed.algo == "sac" and deployed.env_id == "Pendulum-v1"
    assert len(deployed.metadata["config_hash"]) == 16
    deployed.reset()
    assert main(["export", str(run), "--format", "npz",
                 "--out", str(tmp_path / "np" / "p.npz")]) == 0
    docs = _docs_forward()
    graph, weights = docs["load_npz_policy"](str(tmp_path / "np" / "p"))
    np.testing.assert_allclose(docs["forward"](graph, weights, recorded)[0],
                               deployed.act(recorded), atol=1e-5, rtol=0)
    assert graph["metadata"]["algo"] == "sac" and graph["format"] == "tandem-npz-1"
    assert sorted(p.name for p in (tmp_path / "np").iterdir()) == ["p.json", "p.npz"]

    def fails(argv, needle):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err

    fails(["export", str(run), "--out", str(tmp_path / "b.onnx"), "--best"], "best")
    fails(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.onnx")],
          "does not exist")
    fails(["export", str(run), "--out", str(tmp_path / "deploy")], "is a folder")
    fails(["export", str(run), "--out", str(tmp_path / "d.onnx"), "--format", "tflite"],
          "tflite")
    fails(["export", str(run), "--out", str(tmp_path / "d.onnx"), "--format", "npz"],
          "d.npz")
    for arrays in run.glob("checkpoints/step_*/arrays.safetensors"):
        arrays.write_bytes(b"not safetensors")
    fails(["export", str(run), "--out", str(tmp_path / "e.onnx")], "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy", "np", "run"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["policy.onnx"]
    with pytest.raises(Exception, match="not a policy exported by tandem"):
        OnnxPolicy(run / "config.json")


@pytest.mark.slow
def test_a_compiled_multi_seed_run_exports_the_chosen_seed(tmp_path, capsys):
    from tandem import load
    run = tmp_path / "run"
    assert main(["train", "sac", "--env", "gymnax:Pendulum-v1", "--seeds", "2", "--steps",
                 "1000", "--hidden-sizes", "16,16", "--out", str(run),
                 "--progress", "lines"]) == 0
    assert main(["export", str(run), "--seed", "1", "--out", str(tmp_path / "s1.onnx")]) == 0
    deployed = OnnxPolicy(tmp_path / "s1.onnx")
    obs = np.random.default_rng(0).uniform(-3, 3, (64, 3)).astype(np.float32)
    np.testing.assert_allclose(deployed.act(obs), load(run, seed=1).act(obs), atol=1e-5)
    assert np.abs(deployed.act(obs) - load(run, seed=0).act(obs)).max() > 1e-3
    assert deployed.metadata["seed"] == "1"
    capsys.readouterr()
    assert main(["export", str(run), "--seed", "7", "--out", str(tmp_path / "s7.onnx")]) == 2
    assert "seed 7" in capsys.readouterr().err
    assert not (tmp_path / "s7.onnx").exists()


def _fresh(code, extra_env=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu",
                                            **(extra_env or {})})


def test_deploy_imports_no_jax(tmp_path):
    path = write_model(policy_model(_policy("td3"), {}), tmp_path / "p.onnx")
    r = _fresh(f"import sys, numpy as np\nfrom tandem.deploy import OnnxPolicy\n"
               f"a = OnnxPolicy({str(path)!r}).act(np.zeros(3, np.float32))\n"
               f"print(a.shape, [m for m in sys.modules if m.split('.')[0] in "
               f"('jax', 'flax', 'optax', 'gymnasium', 'torch')])")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "(2,) []", r.stdout


def test_export_without_the_extra_is_one_line(tmp_path):
    """onnx not installed: the CLI names the extra to install (exit 2)."""
    r = _fresh("import sys\nsys.modules['onnx'] = None\nfrom tandem.cli import main\n"
               f"sys.exit(main(['export', {str(tmp_path)!r}, '--out', 'x.onnx']))")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().count("\n") == 0 and "tandem-rl[export]" in r.stderr, r.stderr
