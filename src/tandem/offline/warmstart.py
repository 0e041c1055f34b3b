"""Offline to online (``tandem train sac --init RUN``): an online run that starts from another
run's weights and, where that run learned from a dataset, keeps the dataset beside its own
replay buffer, each batch drawn half from either (RLPD's symmetric sampling, also Cal-QL's).

What can start what: an online algorithm starts from a run whose state holds its own state
(SAC from SAC-RND, whose update is SAC's; SAC from SAC; TD3 from TD3). The networks must be
the same: fields that shape them (``ARCH_FIELDS``) that the online config leaves at their
defaults are taken from the source run, and ``learning_starts`` left at its default becomes 0
(the policy acts from the first step: no uniform random phase to undo what was learned).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from tandem.algos import get_algo
from tandem.config import Config
from tandem.core.pytree import restore_pytree
from tandem.core.spaces import EnvSpec
from tandem.core.types import Transition
from tandem.envs.datasets import load_dataset
from tandem.errors import CheckpointError, ConfigError, DatasetError
from tandem.offline.driver import dataset_transitions
from tandem.run import folder as rf
from tandem.run.checkpoint import MALFORMED, latest_checkpoint, load_checkpoint

log = logging.getLogger("tandem")

# online algorithm -> {source algorithm: its state -> the online algorithm's state}
SOURCES: dict[str, dict[str, Callable[[Any], Any]]] = {
    "sac": {"sac": lambda s: s, "sac-rnd": lambda s: s.sac},
    "td3": {"td3": lambda s: s},
}
# config fields that shape the networks, the optimiser state or the policy's log-density
ARCH_FIELDS = ("hidden_sizes", "activation", "network", "n_critics", "critic_layer_norm",
               "critic_dropout", "squash_correction", "max_grad_norm")


@dataclasses.dataclass
class WarmStart:
    """What an online run takes from its source: the state, and the dataset (or None)."""

    run_dir: Path
    algo: str
    state: Any
    prior: Transition | None
    record: dict            # the run record's "init" entry (source, dataset, checksum)


def source_run(run_dir: str | Path, algo: str) -> tuple[dict, Config]:
    """The source run's record and config, checked to be able to start ``algo``."""
    run_dir = Path(run_dir)
    try:
        run = rf.read_run(run_dir)
    except CheckpointError as exc:
        raise CheckpointError(f"--init {run_dir}: {exc}") from None
    allowed = SOURCES.get(algo)
    if allowed is None:
        starters = ", ".join(sorted(SOURCES))
        raise ConfigError(f"--init starts {starters} from another run's weights, not {algo}")
    if run["algo"] not in allowed:
        raise ConfigError(f"--init: {algo} can start from a {' or '.join(sorted(allowed))} run; "
                          f"{run_dir} is a {run['algo']} run (different networks)")
    if run.get("driver") == "compiled":
        raise ConfigError(f"--init: {run_dir} is a compiled run; start from a Gymnasium or "
                          "offline run")
    cls = get_algo(run["algo"]).config_cls
    try:
        cfg = cls.from_dict({**cls.run_folder_defaults, **run["config"]})
    except ConfigError as exc:
        raise CheckpointError(f"--init {run_dir}: its config is invalid here ({exc})") from None
    if getattr(cfg, "normalize_obs", False):
        raise ConfigError(f"--init: {run_dir} normalises observations; starting online from "
                          "such a run is not supported (its statistics would change online)")
    return run, cfg


def adopt(cfg: Config, source_cfg: Config) -> Config:
    """``cfg`` with the source's network fields where ``cfg`` has the defaults, and
    learning_starts 0 where it has the default."""
    defaults = type(cfg)()
    changes = {f: getattr(source_cfg, f) for f in ARCH_FIELDS
               if f in cfg.field_names() and f in source_cfg.field_names()
               and getattr(cfg, f) == getattr(defaults, f)
               and getattr(source_cfg, f) != getattr(cfg, f)}
    if "learning_starts" in cfg.field_names() and cfg.learning_starts == \
            defaults.learning_starts:
        changes["learning_starts"] = 0
    if changes:
        log.info("--init: taking %s from the source run", changes)
    return cfg.replace(**changes) if changes else cfg


def load(run_dir: str | Path, run: dict, source_cfg: Config, algo: str, fns,
         key: jax.Array) -> WarmStart:
    """``algo``'s state from the source run's latest checkpoint (its PRNG key and update
    counter fresh from ``fns.init(key)``), and the source's dataset."""
    run_dir = Path(run_dir)
    spec = fns.spec
    try:
        src_spec = EnvSpec.from_json(run["env_spec"])
    except MALFORMED as exc:
        raise CheckpointError(f"--init {run_dir}: malformed env_spec ({exc!r})") from None
    if (src_spec.obs, src_spec.action) != (spec.obs, spec.action):
        raise ConfigError(f"--init: {run_dir} was trained with other spaces than this env's")
    src_fns = get_algo(run["algo"]).build(source_cfg, src_spec)
    ckpt = latest_checkpoint(run_dir)
    _, arrays = load_checkpoint(ckpt, expect_algo=run["algo"])
    src_state = restore_pytree(jax.eval_shape(src_fns.init, jax.random.PRNGKey(0)), arrays,
                               "state", str(ckpt))
    state = SOURCES[algo][run["algo"]](src_state)
    fresh = fns.init(key)
    _check_same_networks(state, fresh, run_dir)
    if hasattr(fresh, "key") and hasattr(fresh, "updates"):
        state = state._replace(key=fresh.key, updates=fresh.updates)
    record = {"run": str(run_dir.resolve()), "algo": run["algo"], "checkpoint": ckpt.name}
    prior = None
    if run.get("dataset"):
        record["dataset"] = {k: run["dataset"].get(k) for k in ("name", "path", "checksum")}
        prior = prior_transitions(record, spec)
    return WarmStart(run_dir, run["algo"], state, prior, record)


def _check_same_networks(state: Any, fresh: Any, run_dir: Path) -> None:
    a, b = jax.tree_util.tree_structure(state), jax.tree_util.tree_structure(fresh)
    shapes = [np.shape(x) for x in jax.tree_util.tree_leaves(state)]
    want = [np.shape(x) for x in jax.tree_util.tree_leaves(fresh)]
    if a != b or shapes != want:
        fields = ", ".join(ARCH_FIELDS)
        raise ConfigError(f"--init: {run_dir}'s networks differ from this config's; set the "
                          f"fields that shape them ({fields}) as the source run has them")


def prior_transitions(record: dict, spec: EnvSpec) -> Transition:
    """The source run's dataset as flat transitions (NumPy), checked to be the data it
    learned from (same checksum)."""
    ds = record["dataset"]
    try:
        data = load_dataset(ds["name"])
    except DatasetError:
        if not ds.get("path") or not Path(ds["path"]).is_dir():
            raise
        data = load_dataset(ds["path"])
    if ds.get("checksum") and data.checksum != ds["checksum"]:
        raise DatasetError(f"dataset '{data.name}' has changed since {record['run']} learned "
                           "from it (checksum differs)")
    return dataset_transitions(data, spec)
