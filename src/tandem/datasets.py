"""``tandem dataset collect|from-run|import|info``: make offline datasets and look into them.

- ``collect``: roll out a trained run's deterministic policy (with Gaussian noise of std
  ``noise`` in the policy's [-1, 1] action units, as D4RL's noisy datasets) or a uniformly
  random policy in an env, and record the episodes.
- ``from_run``: the replay buffer of an off-policy run's latest checkpoint as a dataset
  (D4RL's "medium-replay" recipe: everything the agent saw while it learned).
- ``import_logs``: a controller's own logs (``.npz`` or ``.csv`` transitions) as a dataset,
  its spaces taken from an env or given as JSON.
- ``info``: size, episodes, return statistics, reference returns and normalised scores.

Every dataset made here records where it came from (run, policy, noise, seed) and, where
asked for, the local reference returns: a random policy's and an expert run's mean return in
the dataset's env (Minari's ``ref_min_score``/``ref_max_score``).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from tandem import api
from tandem.core.evaluate import evaluate_policy
from tandem.core.spaces import EnvSpec, to_env_action
from tandem.envs import datasets as ds
from tandem.envs.resolve import resolve_env
from tandem.errors import DatasetError, EnvError
from tandem.run import folder as rf
from tandem.run.checkpoint import latest_checkpoint, load_checkpoint

log = logging.getLogger("tandem")

REFERENCE_EPISODES = 10


# ============================================================================ rollouts
def _rollout(env: gym.Env, act: Callable[[Any], Any], episodes: int, seed: int) -> list[dict]:
    """``episodes`` episodes of ``act`` (raw obs -> env action), reset seeds seed + i."""
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        o, a, r, te, tr = [obs], [], [], [], []
        done = False
        while not done:
            action = np.asarray(act(obs))
            obs, reward, terminated, truncated, _ = env.step(action)
            o.append(obs)
            a.append(action)
            r.append(float(reward))
            te.append(bool(terminated))
            tr.append(bool(truncated))
            done = terminated or truncated
        out.append({"seed": seed + i, "observations": _stack(o), "actions": np.stack(a),
                    "rewards": np.asarray(r), "terminations": np.asarray(te),
                    "truncations": np.asarray(tr)})
    return out


def _stack(obs: list) -> Any:
    if isinstance(obs[0], dict):
        return {k: _stack([o[k] for o in obs]) for k in obs[0]}
    if isinstance(obs[0], tuple):
        return tuple(_stack([o[i] for o in obs]) for i in range(len(obs[0])))
    return np.stack([np.asarray(o) for o in obs])


def _random_act(env: gym.Env, seed: int) -> Callable[[Any], Any]:
    space = env.action_space
    space.seed(seed)
    return lambda _obs: space.sample()


def _noisy(policy, env: gym.Env, noise: float, seed: int) -> Callable[[Any], Any]:
    """The policy's action plus N(0, noise^2) in [-1, 1] units, clipped to the bounds."""
    if noise == 0:
        return policy.act
    rng = np.random.default_rng(seed)
    low, high = policy.action_low, policy.action_high
    half = (high - low) / 2

    def act(obs):
        a = np.asarray(policy.act(obs), np.float64)
        return np.clip(a + rng.normal(0.0, noise, a.shape) * half, low, high).astype(
            env.action_space.dtype)
    return act


def _run_env(run_dir: Path) -> tuple[dict, gym.Env]:
    run = rf.read_run(run_dir)
    if run.get("env") is None:
        raise EnvError(f"run '{run_dir}' was trained on an unregistered env instance; tandem "
                       "cannot make its env to collect in")
    return run, resolve_env(run["env"], run.get("env_kwargs") or {}).make()


def references(env: gym.Env, expert_run: str | Path | None, seed: int,
               episodes: int = REFERENCE_EPISODES) -> dict:
    """Local references: a random policy's mean return, and ``expert_run``'s deterministic
    policy's (None without one), each over ``episodes`` evaluation episodes."""
    r = evaluate_policy(_random_act(env, seed), env, episodes, seed)
    out: dict[str, Any] = {"random": float(np.mean(r["returns"])), "episodes": episodes}
    if expert_run is not None:
        e = evaluate_policy(api.load(expert_run).act, env, episodes, seed)
        out.update(expert=float(np.mean(e["returns"])), expert_run=str(expert_run))
    return out


def _write(out: str, episodes: list[dict], spaces: tuple[gym.Space, gym.Space],
           env_id: str | None, env_kwargs: dict, refs: dict | None, algorithm: str,
           description: str, provenance: dict) -> Path:
    lo = hi = None
    if refs is not None and "expert" in refs:
        lo, hi = refs["random"], refs["expert"]
    return ds.write_dataset(out, episodes, *spaces,
                            env_id=env_id, env_kwargs=env_kwargs, algorithm=algorithm,
                            description=description, ref_min_score=lo, ref_max_score=hi,
                            extra={"provenance": provenance, "references": refs})


def collect(out: str, episodes: int, run_dir: str | Path | None = None, noise: float = 0.0,
            env: str | None = None, env_kwargs: dict | None = None, seed: int = 0,
            expert: str | Path | None = None) -> Path:
    """Record ``episodes`` episodes of a run's policy (``run_dir``) or, with ``run_dir`` None,
    of a uniformly random policy in ``env``. ``expert``: a run whose policy sets the local
    expert reference (the random reference is always measured)."""
    rf.check_int("episodes", episodes, 1)
    if not (np.isfinite(noise) and noise >= 0):
        raise DatasetError(f"--noise must be >= 0, got {noise}")
    if run_dir is not None:
        run, genv = _run_env(Path(run_dir))
        env_id, kwargs = run["env"], run.get("env_kwargs") or {}
        policy = api.load(run_dir)
        act = _noisy(policy, genv, float(noise), seed)
        provenance = {"policy": "run", "run": str(run_dir), "algo": run["algo"],
                      "noise": noise, "seed": seed}
        algorithm = f"tandem {run['algo']}" + (f" + noise {noise}" if noise else "")
    else:
        if env is None:
            raise DatasetError("give a RUN to collect with, or --policy random --env ENV")
        env_id, kwargs = env, dict(env_kwargs or {})
        genv = resolve_env(env, kwargs).make()
        act = _random_act(genv, seed)
        provenance = {"policy": "random", "seed": seed}
        algorithm = "uniform random"
    try:
        eps = _rollout(genv, act, episodes, seed)
        refs = references(genv, expert, seed)
    finally:
        genv.close()
    n = sum(len(e["rewards"]) for e in eps)
    log.info("collected %d episodes, %d transitions, mean return %.1f", len(eps), n,
             np.mean([np.sum(e["rewards"]) for e in eps]))
    return _write(out, eps, (genv.observation_space, genv.action_space), env_id, kwargs, refs,
                  algorithm, f"{len(eps)} episodes of {algorithm} in {env_id}", provenance)


# ============================================================================ from a run
def from_run(run_dir: str | Path, out: str, expert: str | Path | None = None,
             seed: int = 0) -> Path:
    """The replay buffer of an off-policy run's latest checkpoint as a dataset: its episodes
    in the order they were collected (a wrapped buffer starts inside an episode; the episode
    still running at the checkpoint ends truncated)."""
    run_dir = Path(run_dir)
    run, env = _run_env(run_dir)
    try:
        if run.get("driver") == "compiled":
            raise DatasetError(f"'{run_dir}' trained on the compiled path, whose buffer lives "
                               "in the compiled state; from-run reads a Gymnasium run's replay")
        meta, arrays = load_checkpoint(latest_checkpoint(run_dir), expect_algo=run["algo"])
        if "replay/reward" not in arrays:
            raise DatasetError(f"'{run_dir}' ({run['algo']}) has no replay buffer in its "
                               "checkpoint; from-run needs an off-policy run (sac, td3, ...)")
        spec = EnvSpec.from_json(run["env_spec"])
        eps = _episodes_of_replay(arrays, spec, str(run_dir))
        refs = references(env, expert, seed)
    finally:
        env.close()
    provenance = {"policy": "replay", "run": str(run_dir), "algo": run["algo"],
                  "step": meta.get("step")}
    return _write(out, eps, (env.observation_space, env.action_space), run["env"],
                  run.get("env_kwargs") or {}, refs,
                  f"tandem {run['algo']} replay", f"the replay buffer of {run_dir} at step "
                  f"{meta.get('step')} ({len(eps)} episodes)", provenance)


def _episodes_of_replay(arrays: dict, spec, where: str) -> list[dict]:
    names = [k[len("replay/obs"):].lstrip("/") for k in arrays if k.startswith("replay/obs")]
    if names != [""]:
        raise DatasetError(f"'{where}': from-run handles flat (Box) observations so far")
    obs, nxt = arrays["replay/obs"], arrays["replay/next_obs"]
    action = to_env_action(spec.action, np.asarray(arrays["replay/action"]))
    reward = np.asarray(arrays["replay/reward"], np.float64)
    term = np.asarray(arrays["replay/terminated"]) > 0.5
    trunc = np.asarray(arrays["replay/truncated"], bool)
    first = np.asarray(arrays["replay/first"], bool)
    n = reward.shape[0]
    starts = sorted({0, *np.flatnonzero(first).tolist()})
    eps = []
    for a, b in zip(starts, starts[1:] + [n]):
        if b <= a:
            continue
        te, tr = term[a:b].copy(), trunc[a:b].copy()
        if not (te[-1] or tr[-1]):
            tr[-1] = True  # still running when the checkpoint was written: the log ends
        eps.append({"observations": np.concatenate([obs[a:b], nxt[b - 1:b]]),
                    "actions": action[a:b], "rewards": reward[a:b], "terminations": te,
                    "truncations": tr})
    return eps


# ============================================================================ import
def import_logs(file: str | Path, out: str, env: str | None = None,
                env_kwargs: dict | None = None, spaces: str | None = None) -> Path:
    """Transitions from ``file`` (.npz keys or .csv columns: obs, action, reward, terminated,
    truncated, next_obs; in .csv a vector is numbered columns obs_0, obs_1, ...), one row per
    step in time order, an episode ending at each row marked terminated or truncated.
    Spaces come from ``env`` (checked against the data) or ``spaces`` (JSON)."""
    file = Path(file)
    if not file.is_file():
        raise DatasetError(f"no file '{file}'")
    cols = _read_npz(file) if file.suffix == ".npz" else _read_csv(file) \
        if file.suffix == ".csv" else None
    if cols is None:
        raise DatasetError(f"'{file}': import reads .npz or .csv files")
    n = cols["reward"].shape[0]
    if n == 0:
        raise DatasetError(f"'{file}' holds no transitions")
    for k, v in cols.items():
        if v.shape[0] != n:
            raise DatasetError(f"'{file}': {k} has {v.shape[0]} rows, reward has {n}")
        if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
            row = int(np.argwhere(~np.isfinite(v.reshape(n, -1)))[0][0])
            raise DatasetError(f"'{file}': {k} is NaN or inf at row {row}")
    if env is not None:
        made = resolve_env(env, env_kwargs or {}).make()
        obs_space, act_space = made.observation_space, made.action_space
        made.close()
    elif spaces is not None:
        obs_space, act_space = _spaces_from_json(spaces, cols)
    else:
        raise DatasetError("give the data's env (--env ENV) or its spaces (--spaces JSON)")
    for k, space in (("obs", obs_space), ("next_obs", obs_space), ("action", act_space)):
        _check_rows(file, k, cols[k], space)
    end = cols["terminated"].astype(bool) | cols["truncated"].astype(bool)
    if not end[-1]:
        last = int(np.flatnonzero(end)[-1]) + 1 if end.any() else 0
        raise DatasetError(f"'{file}': rows {last}..{n - 1} after the last terminated/truncated "
                           f"flag do not end an episode; mark row {n - 1} truncated (the log "
                           "ends there) or terminated")
    stops = np.flatnonzero(end)
    gaps = np.flatnonzero(np.any((cols["next_obs"][:-1] != cols["obs"][1:]).reshape(n - 1, -1),
                                 axis=1) & ~end[:-1])
    if gaps.size:
        r = int(gaps[0])
        raise DatasetError(f"'{file}': row {r}'s next_obs is not row {r + 1}'s obs, yet row {r} "
                           f"does not end an episode; mark it terminated or truncated")
    eps, a = [], 0
    for b in stops + 1:
        eps.append({"observations": np.concatenate([cols["obs"][a:b], cols["next_obs"][b - 1:b]]),
                    "actions": cols["action"][a:b], "rewards": cols["reward"][a:b],
                    "terminations": cols["terminated"][a:b].astype(bool),
                    "truncations": cols["truncated"][a:b].astype(bool)})
        a = b
    return _write(out, eps, (obs_space, act_space), env, dict(env_kwargs or {}), None,
                  "imported logs", f"{len(eps)} episodes imported from {file.name}",
                  {"policy": "logs", "file": str(file)})


NAMES = ("obs", "action", "reward", "terminated", "truncated", "next_obs")


def _read_npz(file: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as z:
            cols = {k: np.asarray(z[k]) for k in z.files}
    except Exception as exc:  # zip and format errors of a damaged file
        raise DatasetError(f"'{file}' is not a readable .npz file ({exc})") from None
    missing = [k for k in NAMES if k not in cols]
    if missing:
        raise DatasetError(f"'{file}' lacks {', '.join(missing)}; it needs arrays "
                           f"{', '.join(NAMES)}")
    out = {k: cols[k] for k in NAMES}
    for k in ("obs", "next_obs", "action"):
        if out[k].ndim == 1:
            out[k] = out[k][:, None]
    return out


def _read_csv(file: Path) -> dict[str, np.ndarray]:
    try:
        with open(file, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"'{file}' is not a readable .csv file ({exc})") from None
    if len(rows) < 2:
        raise DatasetError(f"'{file}' holds no transitions")
    header = [h.strip() for h in rows[0]]
    index: dict[str, list[int]] = {}
    for i, h in enumerate(header):
        base, _, num = h.rpartition("_")
        key = base if num.isdigit() and base in ("obs", "action", "next_obs") else h
        index.setdefault(key, []).append(i)
    missing = [k for k in NAMES if k not in index]
    if missing:
        raise DatasetError(f"'{file}' lacks column(s) {', '.join(missing)}; it needs obs_0.., "
                           "action_0.., reward, terminated, truncated, next_obs_0..")
    body = rows[1:]
    out = {}
    for k in NAMES:
        try:
            vals = [[_cell(r[i]) for i in index[k]] for r in body]
        except (ValueError, IndexError) as exc:
            raise DatasetError(f"'{file}': column {k}: {exc}") from None
        arr = np.asarray(vals, np.float64)
        out[k] = arr if k in ("obs", "next_obs", "action") else arr[:, 0]
    return out


def _cell(text: str) -> float:
    t = text.strip().lower()
    if t in ("true", "false"):
        return float(t == "true")
    return float(t)


def _spaces_from_json(text: str, cols: dict) -> tuple[gym.Space, gym.Space]:
    try:
        d = json.loads(text)
        boxes = []
        for key, data in (("observation", cols["obs"]), ("action", cols["action"])):
            b = d[key]
            shape = tuple(b.get("shape", data.shape[1:]))
            low = np.broadcast_to(np.asarray(b.get("low", -np.inf), np.float64), shape)
            high = np.broadcast_to(np.asarray(b.get("high", np.inf), np.float64), shape)
            boxes.append(gym.spaces.Box(low.astype(np.float32), high.astype(np.float32),
                                        shape, np.float32))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"--spaces must be JSON like '{{\"observation\": {{\"shape\": [3]}}, "
                           f"\"action\": {{\"low\": [-2], \"high\": [2]}}}}' ({exc!r})") from None
    return boxes[0], boxes[1]


def _check_rows(file: Path, key: str, data: np.ndarray, space: gym.Space) -> None:
    if not isinstance(space, gym.spaces.Box):
        raise DatasetError(f"'{file}': import handles Box spaces; {key} has {space}")
    if data.shape[1:] != space.shape:
        raise DatasetError(f"'{file}': {key} rows have shape {data.shape[1:]}, the space "
                           f"{space} has {space.shape}")
    outside = ~np.all((data >= space.low - 1e-6) & (data <= space.high + 1e-6),
                      axis=tuple(range(1, data.ndim)))
    if outside.any():
        r = int(np.flatnonzero(outside)[0])
        raise DatasetError(f"'{file}': {key} at row {r} lies outside the space {space}")


# ============================================================================ info
def info(name: str) -> dict:
    """What ``tandem dataset info`` prints."""
    d = ds.load_dataset(name)
    r = d.episode_returns
    out: dict[str, Any] = {
        "dataset": d.name, "path": str(d.path), "env": d.env_id,
        "env_kwargs": d.env_kwargs or None, "episodes": int(r.size), "transitions": d.size,
        "observation_space": str(d.observation_space), "action_space": str(d.action_space),
        "return_mean": float(r.mean()), "return_std": float(r.std()),
        "return_min": float(r.min()), "return_max": float(r.max()),
        "length_mean": float(d.episode_lengths.mean()),
        "terminations": int(d.terminated.sum()), "truncations": int(d.truncated.sum()),
        "references": {k: {"random": lo, "expert": hi} for k, (lo, hi) in
                       d.references.items()},
        "normalized_return_mean": {k: float(v) for k, v in
                                   d.normalized(float(r.mean())).items()},
        "checksum": d.checksum,
        "provenance": (d.metadata.get(ds.TANDEM_KEY) or {}).get("provenance")}
    if not out["references"]:
        out["note"] = ("no reference returns: normalised scores are omitted (make the dataset "
                       "with --expert RUN to record them)")
    return out

