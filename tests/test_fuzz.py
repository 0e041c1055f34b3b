"""Hostile inputs (issue #7), fuzzed with hypothesis:

- the checkpoint loader, on at least 1,000 mutated checkpoints (truncated, bit-flipped,
  overwritten, foreign bytes, and meta.json values of every wrong type, with the arrays'
  checksum made to match so the mutation reaches the parser): every outcome is a loaded
  state or a CheckpointError naming the file, never another exception;
- the command line, on at least 1,000 random argument lists and config values: exit code 0
  or 2 with exactly one line on stderr, never a traceback. Training itself is replaced by a
  stub once a command is valid (the fuzz is about parsing and validation, not about
  training thousands of agents), and runs in a temporary working directory.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem import CheckpointError, SACConfig, load, train
from tandem.algos import get_algo
from tandem.envs.gym import make_env
from tandem.host.offpolicy import OffPolicyDriver
from tandem.run.checkpoint import ARRAYS, META, latest_checkpoint, load_checkpoint
from tests.conftest import TINY

FUZZ = settings(max_examples=1_000, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    train(TINY.replace(eval_episodes=0), "Pendulum-v1", steps=120, out=out, progress=False,
          check_env=False)
    return out


def _copy(run: Path, tmp_path_factory) -> Path:
    """A copy of the run folder; returns its latest checkpoint, the one to mutate."""
    dst = tmp_path_factory.mktemp("m") / "run"
    shutil.copytree(run, dst)
    return latest_checkpoint(dst)


def _load_and_restore(ckpt: Path) -> None:
    """What `tandem load` and `tandem resume` do with a checkpoint's contents."""
    load(ckpt.parent.parent)
    meta, arrays = load_checkpoint(ckpt, expect_algo="sac")
    genv = make_env("Pendulum-v1", "sac")
    cfg = SACConfig.from_dict(TINY.replace(eval_episodes=0).to_dict())
    fns = get_algo("sac").build(cfg, genv.spec)
    OffPolicyDriver(cfg, genv, fns, 0, "sac").restore(meta, arrays, str(ckpt))


def _expect_clean(ckpt: Path) -> None:
    try:
        _load_and_restore(ckpt)
    except CheckpointError as exc:
        assert ckpt.name in str(exc), exc  # the message names the file


SEGMENT = "replay segment"  # the replay rows the checkpoint names (run/replay/seg_*)
FILES = st.sampled_from([ARRAYS, META, SEGMENT])
MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), FILES, st.floats(0, 1)),
    st.tuples(st.just("flip"), FILES, st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("overwrite"), FILES, st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("foreign"), FILES, st.binary(max_size=512)),
)


@FUZZ
@given(mutation=MUTATIONS)
def test_fuzzed_checkpoint_bytes(good_run, tmp_path_factory, mutation):
    ckpt = _copy(good_run, tmp_path_factory)
    kind, name = mutation[0], mutation[1]
    path = (ckpt / name if name != SEGMENT else
            ckpt.parent.parent / "replay" /
            json.loads((ckpt / META).read_text())["stores"]["replay"]["files"][-1]["name"])
    data = bytearray(path.read_bytes())
    if kind == "truncate":
        data = data[: int(mutation[2] * len(data))]
    elif kind == "flip":
        i = min(int(mutation[2] * len(data)), len(data) - 1)
        data[i] ^= 1 << mutation[3]
    elif kind == "overwrite":
        i = min(int(mutation[2] * len(data)), len(data) - 1)
        data[i:i + len(mutation[3])] = mutation[3]
    else:
        data = bytearray(mutation[2])
    path.write_bytes(bytes(data))
    _expect_clean(ckpt)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) |
    st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)


def _paths(meta: dict, prefix=()) -> list[tuple]:
    out = []
    for k, v in meta.items():
        out.append(prefix + (k,))
        if isinstance(v, dict):
            out += _paths(v, prefix + (k,))
    return out


@pytest.mark.slow  # 30-45 s: in test.sh step 2, so the default suite stays < ~10 min
@FUZZ
@given(data=st.data())
def test_fuzzed_checkpoint_contents(good_run, tmp_path_factory, data):
    """Well-formed files with wrong contents: a meta.json field replaced or deleted, or the
    arrays file's bytes changed with the checksum updated to match (a foreign writer)."""
    ckpt = _copy(good_run, tmp_path_factory)
    meta = json.loads((ckpt / META).read_text())
    if data.draw(st.booleans(), label="edit meta"):
        path = data.draw(st.sampled_from(_paths(meta)), label="field")
        node = meta
        for k in path[:-1]:
            node = node[k]
        if data.draw(st.booleans(), label="delete"):
            del node[path[-1]]
        else:
            node[path[-1]] = data.draw(JSON_VALUES, label="value")
    else:
        blob = bytearray((ckpt / ARRAYS).read_bytes())
        i = data.draw(st.integers(0, len(blob) - 1), label="at")
        chunk = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
        blob[i:i + len(chunk)] = chunk
        (ckpt / ARRAYS).write_bytes(bytes(blob))
        meta["arrays_sha256"] = hashlib.sha256(bytes(blob)).hexdigest()
    (ckpt / META).write_text(json.dumps(meta))
    _expect_clean(ckpt)


@pytest.mark.parametrize("field", ["seed", "step", "episode"])
@pytest.mark.parametrize("value", [-1, 2.5, True, "3"])
def test_checkpoint_counters_are_counts(good_run, tmp_path_factory, field, value):
    """A counter that is not a whole number >= 0 is refused at restore (episode -1 once got
    through to the env reset's seed and crashed there)."""
    ckpt = _copy(good_run, tmp_path_factory)
    meta = json.loads((ckpt / META).read_text())
    meta["host"][field] = value
    (ckpt / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=field):
        _load_and_restore(ckpt)


# ---------------------------------------------------------------------------- the CLI
class _Reached(Exception):
    """A valid command got as far as training / tuning / sweeping (stubbed)."""


WORDS = ["train", "eval", "resume", "report", "tune", "sweep", "check-env", "config", "sac",
         "td3", "ddpg", "droq", "ppo", "a2c", "impala", "nope", "--env", "--steps", "--seed",
         "--seeds", "--out", "--envs", "--grid", "--episodes", "--best", "--trials",
         "--batch-size", "--actor-lr", "--hidden-sizes", "--eval-every", "--workers",
         "--gamma", "--tau", "--n-steps", "--clip-coef", "--learning-rate", "--unknown-field",
         "--progress", "--label", "--no-video", "--cpus-per-run", "--", "-x", "-1", "0", "1",
         "3", "1e9", "2.5", "nan", "inf", "-inf", "abc", "", "1,2", "0-3", "3-1", "64x64",
         "true", "None", "é", "x" * 300, "Pendulum-v1", "CartPole-v1", "NoEnv-v0",
         "gymnax:CartPole-v1", "gymnax:Nope-v0", "mod:Env-v0", "missing_run_dir",
         "learning_rate=1e-3,3e-4", "tau=", "=1", "bar", "lines"]


@FUZZ
@given(argv=st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=9))
def test_fuzzed_command_lines(monkeypatch, tmp_path, capsys, argv):
    from tandem import cli
    from tandem.envs import check
    from tandem.run.session import Session

    monkeypatch.chdir(tmp_path)

    def reached(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr(Session, "run", reached)
    monkeypatch.setattr("tandem.compiled.driver.CompiledDriver.start", reached)
    monkeypatch.setattr("tandem.compiled.driver.CompiledDriver.restore", reached)
    monkeypatch.setattr(check, "check_env", lambda *a, **k: [])
    monkeypatch.setattr("tandem.tune.tune", reached)
    monkeypatch.setattr("tandem.sweep.sweep", reached)
    monkeypatch.setattr("tandem.report.write_report", reached)
    try:
        code = cli.main(argv)
    except _Reached:
        return
    except SystemExit as exc:  # --help / -h
        assert exc.code == 0, argv
        return
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        # one error line (progress log lines may precede it)
        assert len([ln for ln in err.splitlines() if ln.startswith("tandem")]) == 1, (argv, err)
        assert "Traceback" not in err, (argv, err)


# ---------------------------------------------------------------------------- config values
HOSTILE = (st.none() | st.booleans() | st.integers(-2**70, 2**70) |
           st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=10) |
           st.lists(st.integers(-5, 300), max_size=4).map(tuple) |
           st.lists(st.floats(allow_nan=True), max_size=3) | st.dictionaries(st.text(max_size=3),
                                                                               st.integers()))


@FUZZ
@given(data=st.data())
def test_fuzzed_config_values(data):
    """Any field (or a made-up one) set to any value: a config or one ConfigError naming the
    field, never another exception (the Python API behind --field value)."""
    from tandem.algos import algo_names
    from tandem.errors import ConfigError
    cls = get_algo(data.draw(st.sampled_from(algo_names()), label="algo")).config_cls
    fields = list(cls.field_names()) + ["not_a_field"]
    kwargs = {data.draw(st.sampled_from(fields), label="field"): data.draw(HOSTILE, label="v")
              for _ in range(data.draw(st.integers(1, 3), label="n"))}
    try:
        cfg = cls(**kwargs)
    except ConfigError as exc:
        assert any(k in str(exc) for k in kwargs) or "must divide" in str(exc) or \
            "exceeds" in str(exc), (kwargs, exc)
        return
    cls.from_dict(cfg.to_dict())  # what a run folder stores reads back
