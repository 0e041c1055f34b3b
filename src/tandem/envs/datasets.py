"""Offline datasets in the Minari format (issue 16): find, read, check and write them.

A dataset is a Minari dataset folder: ``<root>/<id>/data/{main_data.hdf5, metadata.json}``
with root ``$MINARI_DATASETS_PATH`` (Minari's default ``~/.minari/datasets`` without it).
It is named by its Minari id (``[namespace/]name-vN``, e.g. ``pendulum/medium-v0``) or by a
path (anything starting with ``/``, ``.`` or ``~``, or an existing folder). Reading and
writing go through Minari's own storage, so a dataset written here opens in
``minari.load_dataset`` and one made by Minari's ``DataCollector`` loads here.

:func:`load_dataset` turns the episodes into flat transitions (``obs, action, reward,
next_obs, terminated, truncated``; an episode's last ``next_obs`` is its real final
observation, also at a truncation) and refuses, with one line naming the episode, what an
offline algorithm would silently learn garbage from: NaN/inf, an episode that does not end
with a termination or truncation, steps after a termination, arrays of inconsistent length,
an empty dataset, spaces that do not match the dataset's env.

Normalised score, as in D4RL: ``100 * (R - R_random) / (R_expert - R_random)``. Minari's
``ref_min_score``/``ref_max_score`` hold the local references (a random policy and the expert
run named when the dataset was made), so ``100 * minari.get_normalized_score`` agrees; D4RL's
published references for the MuJoCo locomotion envs are reported beside them, because a weak
local expert inflates scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import gymnasium as gym
import numpy as np

from tandem.envs.resolve import resolve_env
from tandem.errors import DatasetError, EnvError

# env family -> (random, expert) returns: D4RL's published references (Fu et al. 2020,
# d4rl/infos.py), used for every version of these Gymnasium MuJoCo envs.
D4RL_REFERENCES = {
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
}
EXTRA_HINT = "install the offline extra: pip install 'tandem-rl[offline]'"
TANDEM_KEY = "tandem"  # our own metadata (references, provenance) inside Minari's metadata.json
_ID = re.compile(r"(?:[\w.-]+/)*[\w.-]+-v\d+")


def _minari():
    try:
        import minari
    except ImportError:
        raise DatasetError(f"offline datasets need Minari; {EXTRA_HINT}") from None
    return minari


# ============================================================================ where
def datasets_root() -> Path:
    """Minari's dataset root: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root) if root else Path.home() / ".minari" / "datasets"


def _is_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).is_dir()


def dataset_folder(name: str | Path) -> Path:
    """The folder ``name`` means (the one holding ``data/``), whether or not it exists."""
    name = str(name)
    return Path(name).expanduser() if _is_path(name) else datasets_root() / name


def locate(name: str | Path) -> Path:
    """The ``data`` folder of the dataset ``name``; DatasetError naming what is there when
    there is no such dataset."""
    folder = dataset_folder(name)
    for data in (folder / "data", folder):
        if (data / "metadata.json").is_file():
            return data
    if folder.is_dir():
        raise DatasetError(f"'{folder}' is not a Minari dataset (no data/metadata.json)")
    if _is_path(str(name)):
        raise DatasetError(f"no dataset folder '{folder}'")
    have = list_datasets()
    listed = f"datasets there: {', '.join(have[:8])}" if have else "it holds no datasets"
    raise DatasetError(f"no dataset '{name}' in {datasets_root()} (MINARI_DATASETS_PATH); "
                       f"{listed}. Make one with `tandem dataset collect` or `tandem dataset "
                       "import`, or give the dataset's folder")


def list_datasets() -> list[str]:
    """Ids of the datasets under :func:`datasets_root`."""
    root = datasets_root()
    if not root.is_dir():
        return []
    return sorted(str(p.parent.parent.relative_to(root))
                  for p in root.glob("**/data/metadata.json"))


def checksum(data: Path) -> str:
    """sha256 of a dataset's data files (everything in ``data`` but metadata.json, which
    Minari rewrites when only metadata changes): what a run's checkpoint names."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(data).rglob("*") if p.is_file()):
        if f.name == "metadata.json":
            continue
        h.update(f.relative_to(data).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


# ============================================================================ references
def d4rl_reference(env_id: str | None) -> tuple[float, float] | None:
    """D4RL's (random, expert) returns for a Gymnasium MuJoCo locomotion env, else None."""
    if not env_id:
        return None
    base = env_id.rsplit(":", 1)[-1].split("-v")[0]
    return D4RL_REFERENCES.get(base)


def normalized_score(returns, reference: tuple[float, float]):
    """D4RL's normalised score: 100 * (R - random) / (expert - random)."""
    lo, hi = reference
    return 100.0 * (np.asarray(returns, np.float64) - lo) / (hi - lo)


# ============================================================================ reading
@dataclasses.dataclass(frozen=True)
class Dataset:
    """A checked dataset as flat transitions. Observation arrays keep the space's structure
    (a dict of arrays for a Dict space); every leaf has a leading ``[N]`` axis."""

    name: str
    path: Path                      # the data folder
    checksum: str
    observation_space: gym.Space
    action_space: gym.Space
    env_id: str | None              # None: no env recorded (evaluation is off)
    env_kwargs: dict
    max_episode_steps: int | None
    obs: Any                        # [N, ...]
    action: np.ndarray              # [N, ...]
    reward: np.ndarray              # [N] float32
    next_obs: Any                   # [N, ...]
    terminated: np.ndarray          # [N] bool: no bootstrapping from next_obs
    truncated: np.ndarray           # [N] bool: the episode was cut (time limit, end of log)
    episode: np.ndarray             # [N] int32: the transition's episode index
    episode_returns: np.ndarray     # [E] float64
    episode_lengths: np.ndarray     # [E] int64
    metadata: dict                  # Minari's metadata.json as read

    @property
    def size(self) -> int:
        return int(self.reward.shape[0])

    @property
    def references(self) -> dict[str, tuple[float, float]]:
        """``local`` (Minari's ref_min/ref_max_score) and ``d4rl``, where known."""
        out = {}
        lo, hi = self.metadata.get("ref_min_score"), self.metadata.get("ref_max_score")
        if lo is not None and hi is not None:
            out["local"] = (float(lo), float(hi))
        d4rl = d4rl_reference(self.env_id)
        if d4rl is not None:
            out["d4rl"] = d4rl
        return out

    def normalized(self, returns) -> dict[str, np.ndarray]:
        """Normalised scores of ``returns`` against each known reference."""
        return {k: normalized_score(returns, ref) for k, ref in self.references.items()}

    def make_env(self) -> gym.Env:
        """The dataset's env (for evaluation); DatasetError when none is recorded."""
        if self.env_id is None:
            raise DatasetError(f"dataset '{self.name}' records no env, so its policies cannot "
                               "be evaluated; train with evaluation off")
        return resolve_env(self.env_id, self.env_kwargs).make()


def _map(fn: Callable, x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _map(fn, v) for k, v in x.items()}
    if isinstance(x, (tuple, list)) and not isinstance(x, np.ndarray):
        return tuple(_map(fn, v) for v in x)
    return fn(x)


def _leaves(x: Any, path: str = "") -> Iterable[tuple[str, np.ndarray]]:
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(v, f"{path}/{k}" if path else str(k))
    elif isinstance(x, (tuple, list)) and not isinstance(x, np.ndarray):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}/{i}" if path else str(i))
    else:
        yield path, np.asarray(x)


def _concat(parts: list) -> Any:
    first = parts[0]
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple):
        return tuple(_concat([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate(parts, axis=0)


def _env_of(metadata: dict) -> tuple[str | None, dict, int | None]:
    """(env id, kwargs, time limit) from Minari's env_spec (or eval_env_spec), else from
    tandem's own record (an env made by a ``module:Name`` factory has no Gymnasium spec)."""
    text = metadata.get("eval_env_spec") or metadata.get("env_spec")
    if not text:
        ours = metadata.get(TANDEM_KEY) or {}
        return ours.get("env_id"), dict(ours.get("env_kwargs") or {}), None
    try:
        spec = json.loads(text) if isinstance(text, str) else dict(text)
    except json.JSONDecodeError:
        return None, {}, None
    return spec.get("id"), dict(spec.get("kwargs") or {}), spec.get("max_episode_steps")


def _check_episode(name: str, ep: dict) -> int:
    """Checks one episode; returns its number of steps."""
    eid = ep["id"]
    rewards = np.asarray(ep["rewards"])
    n = int(rewards.shape[0])
    if n == 0:
        raise DatasetError(f"dataset '{name}': episode {eid} has no steps")
    lengths = {"actions": None, "terminations": None, "truncations": None}
    for key in lengths:
        for _, leaf in _leaves(ep[key]):
            if leaf.shape[:1] != (n,):
                raise DatasetError(f"dataset '{name}' is corrupt: episode {eid} has "
                                   f"{leaf.shape[0] if leaf.ndim else 0} {key} for {n} rewards")
    for path, leaf in _leaves(ep["observations"]):
        if leaf.shape[:1] != (n + 1,):
            raise DatasetError(f"dataset '{name}' is corrupt: episode {eid} has "
                               f"{leaf.shape[0] if leaf.ndim else 0} observations{path and ' '}"
                               f"{path} for {n} steps (Minari keeps n + 1, the last one final)")
    for what, tree in (("rewards", rewards), ("actions", ep["actions"]),
                       ("observations", ep["observations"])):
        for path, leaf in _leaves(tree):
            if np.issubdtype(leaf.dtype, np.floating) and not np.all(np.isfinite(leaf)):
                bad = np.argwhere(~np.isfinite(leaf.reshape(leaf.shape[0], -1)))[0][0]
                raise DatasetError(f"dataset '{name}': episode {eid} has NaN or inf in its "
                                   f"{what}{' ' + path if path else ''} at step {bad}; remove "
                                   "or repair that episode")
    term = np.asarray(ep["terminations"], bool)
    trunc = np.asarray(ep["truncations"], bool)
    ends = np.flatnonzero(term | trunc)
    if ends.size == 0 or ends[-1] != n - 1:
        raise DatasetError(f"dataset '{name}': episode {eid} ends at step {n - 1} without a "
                           "termination or truncation flag; mark its last step terminated (the "
                           "task ended) or truncated (cut by a time limit or the end of the log)")
    if ends[0] != n - 1:
        raise DatasetError(f"dataset '{name}': episode {eid} is marked ended at step {ends[0]} "
                           f"but goes on to step {n - 1}; split it into two episodes")
    return n


def load_dataset(name: str | Path, check_env: bool = True) -> Dataset:
    """Read, check and flatten the dataset ``name`` (an id or a path). With ``check_env``, a
    dataset that records an env is checked against it: the env's spaces must be the
    dataset's (an env that cannot be made here only turns evaluation off)."""
    minari = _minari()
    from minari.dataset.minari_storage import MinariStorage

    data = locate(name)
    label = str(name)
    try:
        metadata = json.loads((data / "metadata.json").read_text())
        storage = MinariStorage.read(data)
        total = int(metadata.get("total_episodes", 0))
        episodes = list(storage.get_episodes(range(total))) if total else []
    except DatasetError:
        raise
    except Exception as exc:  # h5py, JSON, a missing group: any of them means a bad file
        raise DatasetError(f"dataset '{label}' at {data} is corrupt or not a Minari "
                           f"{minari.__version__} dataset ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not episodes:
        raise DatasetError(f"dataset '{label}' holds no episodes")
    obs_space, act_space = storage.observation_space, storage.action_space
    lengths = np.array([_check_episode(label, ep) for ep in episodes], np.int64)
    returns = np.array([float(np.sum(np.asarray(ep["rewards"], np.float64)))
                        for ep in episodes])
    env_id, env_kwargs, limit = _env_of(metadata)
    if check_env and env_id is not None:
        _check_env_spaces(label, env_id, env_kwargs, obs_space, act_space)
    obs = _concat([_map(lambda a: np.asarray(a)[:-1], ep["observations"]) for ep in episodes])
    next_obs = _concat([_map(lambda a: np.asarray(a)[1:], ep["observations"])
                        for ep in episodes])
    return Dataset(
        name=label, path=data, checksum=checksum(data), observation_space=obs_space,
        action_space=act_space, env_id=env_id, env_kwargs=env_kwargs, max_episode_steps=limit,
        obs=obs, action=_concat([_map(np.asarray, ep["actions"]) for ep in episodes]),
        reward=np.concatenate([np.asarray(ep["rewards"], np.float32) for ep in episodes]),
        next_obs=next_obs,
        terminated=np.concatenate([np.asarray(ep["terminations"], bool) for ep in episodes]),
        truncated=np.concatenate([np.asarray(ep["truncations"], bool) for ep in episodes]),
        episode=np.repeat(np.arange(len(episodes), dtype=np.int32), lengths),
        episode_returns=returns, episode_lengths=lengths, metadata=metadata)


def _same_space(a: gym.Space, b: gym.Space) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, gym.spaces.Box):
        return a.shape == b.shape and np.allclose(a.low, b.low) and np.allclose(a.high, b.high)
    if isinstance(a, gym.spaces.Dict):
        return a.spaces.keys() == b.spaces.keys() and all(
            _same_space(a[k], b[k]) for k in a.spaces)
    if isinstance(a, gym.spaces.Tuple):
        return len(a) == len(b) and all(_same_space(x, y) for x, y in zip(a, b))
    return a == b


def _check_env_spaces(name: str, env_id: str, kwargs: dict, obs_space: gym.Space,
                      act_space: gym.Space) -> None:
    try:
        env = resolve_env(env_id, kwargs).make()
    except (EnvError, gym.error.Error, ImportError):
        return  # not makeable here: the dataset trains with evaluation off
    try:
        for what, mine, theirs in (("observation", obs_space, env.observation_space),
                                   ("action", act_space, env.action_space)):
            if not _same_space(mine, theirs):
                raise DatasetError(f"dataset '{name}': its {what} space {mine} does not match "
                                   f"env {env_id}'s {theirs}; the data was recorded from "
                                   "another env (or env version)")
    finally:
        env.close()


# ============================================================================ writing
def _check_shape(name: str, eid: int, what: str, data: Any, space: gym.Space) -> None:
    if isinstance(space, gym.spaces.Dict):
        for k, sub in space.spaces.items():
            _check_shape(name, eid, f"{what}/{k}", data[k], sub)
    elif isinstance(space, gym.spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            _check_shape(name, eid, f"{what}/{i}", data[i], sub)
    elif np.asarray(data).shape[1:] != tuple(space.shape or ()):
        raise DatasetError(f"dataset '{name}': episode {eid}'s {what} have shape "
                           f"{np.asarray(data).shape[1:]} per step, the space {space} has "
                           f"{space.shape}")


def _dataset_id(name: str) -> str:
    if _is_path(name):
        base = re.sub(r"[^\w.-]+", "-", Path(name).expanduser().name) or "dataset"
        return base if _ID.fullmatch(base) else f"{base}-v0"
    if not _ID.fullmatch(name):
        raise DatasetError(f"dataset name '{name}' is not a Minari id: use [namespace/]name-vN, "
                           "e.g. pendulum/medium-v0, or give a folder path (./my-data)")
    return name


def write_dataset(out: str | Path, episodes: Iterable[dict], observation_space: gym.Space,
                  action_space: gym.Space, *, env_id: str | None = None,
                  env_kwargs: dict | None = None, algorithm: str = "tandem",
                  description: str = "", ref_min_score: float | None = None,
                  ref_max_score: float | None = None, extra: dict | None = None) -> Path:
    """Write ``episodes`` (dicts of ``observations`` [T+1, ...], ``actions`` [T, ...],
    ``rewards``, ``terminations``, ``truncations`` [T]; optional ``seed``) as a Minari
    dataset at ``out`` (an id or a path). All or nothing: it is written beside its place and
    moved there when complete. Returns the dataset folder."""
    _minari()
    from minari import __version__ as minari_version
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    out = str(out)
    dataset_id = _dataset_id(out)
    folder = dataset_folder(out)
    if folder.exists():
        raise DatasetError(f"dataset '{out}' already exists at {folder}; choose another name "
                           "or delete it")
    env_spec = None
    if env_id is not None:
        try:
            env_spec = gym.spec(env_id)
            if env_kwargs:
                env_spec = dataclasses.replace(env_spec, kwargs={**env_spec.kwargs,
                                                                 **env_kwargs})
        except gym.error.Error:
            env_spec = None  # a `module:Name` factory: recorded in our own metadata below
    tmp = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        storage = MinariStorage.new(tmp / "data", observation_space=observation_space,
                                    action_space=action_space, env_spec=env_spec,
                                    data_format="hdf5", jpeg_encoding=False)
        buffers = []
        for i, ep in enumerate(episodes):
            _check_episode(out, {**ep, "id": i})  # what load_dataset would refuse later
            _check_shape(out, i, "observations", ep["observations"], observation_space)
            _check_shape(out, i, "actions", ep["actions"], action_space)
            buffers.append(EpisodeBuffer(
                id=i, seed=ep.get("seed"), observations=ep["observations"],
                actions=ep["actions"], rewards=np.asarray(ep["rewards"], np.float64),
                terminations=np.asarray(ep["terminations"], bool),
                truncations=np.asarray(ep["truncations"], bool)))
        if not buffers:
            raise DatasetError(f"no episodes to write to '{out}'")
        meta: dict[str, Any] = {
            "dataset_id": dataset_id, "minari_version": minari_version,
            "algorithm_name": algorithm, "description": description,
            TANDEM_KEY: {"env_id": env_id, "env_kwargs": dict(env_kwargs or {}),
                         **(extra or {})}}
        if ref_min_score is not None and ref_max_score is not None:
            meta.update(ref_min_score=float(ref_min_score), ref_max_score=float(ref_max_score))
        storage.update_metadata(meta)
        storage.update_episodes(buffers)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    namespace = dataset_id.rsplit("/", 1)[0] if "/" in dataset_id else None
    if namespace and not _is_path(out):
        from minari.namespace import create_namespace, list_local_namespaces
        if namespace not in list_local_namespaces():
            create_namespace(namespace)
    return folder
