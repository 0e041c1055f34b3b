"""``tandem tune ALGO --env ENV --trials N``: hyperparameter search with Optuna.

Each trial trains one run folder (``<out>/trial_<n>``) with a config sampled from the
algorithm's ``search_space`` (declared beside its config; fields the user fixes are not
searched), evaluates periodically and reports each evaluation to Optuna, whose median pruner
stops trials that fall behind. The study lives in a database, SQLite in ``<out>/study.db``
unless another URL is given, so an interrupted study resumes where it stopped: running the
same command again continues to N finished trials, and a trial whose process died is marked
failed and its parameters are tried again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from pathlib import Path
from typing import Any

from tandem.algos import get_algo
from tandem.api import train
from tandem.config import Config, Search
from tandem.envs.datasets import load_dataset
from tandem.errors import ConfigError, TandemError

log = logging.getLogger("tandem")

EXTRA_HINT = "install the tuning tools with: pip install 'tandem-rl[tune]'"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise TandemError(f"`tandem tune` needs optuna; {EXTRA_HINT}") from None
    return optuna


def _label(value: Any) -> Any:
    """Optuna stores numbers, strings, booleans and None; tuples (layer widths) go as text."""
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return value


def suggest(trial, space: dict[str, Search]) -> dict[str, Any]:
    """Sample one config's worth of fields from ``space`` with an Optuna trial."""
    out = {}
    for name, s in space.items():
        if s.kind == "log":
            out[name] = trial.suggest_float(name, s.low, s.high, log=True)
        elif s.kind == "uniform":
            out[name] = trial.suggest_float(name, s.low, s.high)
        elif s.kind == "choice":
            labels = [_label(c) for c in s.choices]
            picked = trial.suggest_categorical(name, labels)
            out[name] = s.choices[labels.index(picked)]
        else:
            raise ValueError(f"unknown search kind {s.kind!r} for {name}")
    return out


def params_to_fields(space: dict[str, Search], params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's stored params (tuples as text) back to config values."""
    out = {}
    for name, value in params.items():
        s = space.get(name)
        if s is not None and s.kind == "choice":
            labels = [_label(c) for c in s.choices]
            value = s.choices[labels.index(value)] if value in labels else value
        out[name] = value
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover_dead_trials(optuna, study, storage) -> int:
    """Trials left RUNNING by a process on this host that no longer exists: mark them failed
    and queue their parameters again. Trials of live processes (parallel workers sharing the
    database) and of other hosts are left alone."""
    host, n = socket.gethostname(), 0
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("host") != host or _pid_alive(int(t.user_attrs.get("pid", -1))):
            continue
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_state_values(tid, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        log.warning("trial %d was left running by a process that died; marked failed and "
                    "queued again with the same parameters", t.number)
        n += 1
    return n


def tune(cfg_cls: type[Config], env: str | None, trials: int, steps: int, out: str | Path,
         fixed: dict | None = None, seed: int = 0, storage: str | None = None,
         study_name: str | None = None, eval_every: int | None = None, pruner: str = "median",
         env_kwargs: dict | None = None, dataset: str | Path | None = None):
    """Run (or continue) a study until it holds ``trials`` finished (complete or pruned)
    trials; returns the ``optuna.Study``. Writes ``<out>/best.json`` after every trial.

    An offline algorithm is tuned on ``dataset`` (``env`` None): each trial trains on it for
    ``steps`` gradient steps and is scored by its return in the dataset's env."""
    optuna = _optuna()

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"--trials {trials!r}: must be an integer >= 1")
    offline = get_algo(cfg_cls.algo).driver == "offline"
    if offline:
        if dataset is None or env is not None:
            raise ConfigError(f"{cfg_cls.algo} is tuned on a dataset (--dataset NAME), and "
                              "evaluated in its env (no --env)")
        data = load_dataset(dataset)
        if data.env_id is None:
            raise ConfigError(f"dataset '{data.name}' records no env: a trial could not be "
                              "evaluated, so there is nothing to tune on")
        env_label = data.name
    elif dataset is not None:
        raise ConfigError(f"{cfg_cls.algo} learns online: tune it on an env (--env), not a "
                          "dataset")
    elif not isinstance(env, str):
        raise ConfigError("tune needs an env id (each trial makes its own env instances)")
    else:
        env_label = env
    fixed = dict(fixed or {})
    space = {k: v for k, v in cfg_cls.search_space.items() if k not in fixed}
    if not space:
        raise ConfigError(f"nothing to search: every field of {cfg_cls.__name__}."
                          "search_space was fixed on the command line")
    cfg_cls(**fixed)  # fixed values are checked before any trial runs
    every = eval_every if eval_every is not None else max(1, steps // 10)
    if every < 1 or every > steps:
        raise ConfigError(f"--eval-every {every}: must be between 1 and --steps ({steps})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or f"{cfg_cls.algo}-{env_label}"
    try:
        rdb = optuna.storages.RDBStorage(url)
    except Exception as exc:  # a bad URL or an unreachable database
        raise ConfigError(f"--storage {url!r}: cannot open ({type(exc).__name__}: {exc})") \
            from None
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    probe = optuna.create_study(storage=rdb, study_name=name, direction="maximize",
                                load_if_exists=True)
    if probe.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study '{name}' in {url} does not maximise a return")
    recovered = _recover_dead_trials(optuna, probe, rdb)
    done = len(probe.get_trials(deepcopy=False, states=finished_states))
    # A sampler seeded by how far the study got: a resumed study does not replay the
    # random start-up suggestions it already tried.
    sampler = optuna.samplers.TPESampler(seed=seed + len(probe.trials), n_startup_trials=5)
    # Median pruning after the first quarter of a trial: earlier returns say little.
    prune = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=steps // 4)
             if pruner == "median" else optuna.pruners.NopPruner())
    study = optuna.load_study(study_name=name, storage=rdb, sampler=sampler, pruner=prune)
    log.info("tuning %s on %s: %d of %d trials finished%s; study '%s' in %s", cfg_cls.algo,
             env_label, done, trials, f", {recovered} to retry" if recovered else "", name, url)

    def objective(trial) -> float:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        values = {**suggest(trial, space), **fixed}
        values.setdefault("eval_every", every)
        cfg = cfg_cls(**values)
        run_dir = out / f"trial_{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))

        def report(step: int, metrics: dict) -> None:
            trial.report(float(metrics["eval/return_mean"]), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"eval return {metrics['eval/return_mean']:.2f} at "
                                         f"step {step} is below the median of earlier trials")

        run = train(cfg, env, steps=steps, seed=seed, out=run_dir, progress=False,
                    env_kwargs=env_kwargs, on_eval=report, dataset=dataset)
        value = run.summary["eval/return_mean"]
        if value is None or not math.isfinite(value):
            raise TandemError(f"trial {trial.number}: no finite evaluation return")
        return float(value)

    def save_study_best(study, _trial) -> None:
        complete = study.get_trials(deepcopy=False,
                                    states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            return
        best = max(complete, key=lambda t: t.value)
        (out / "best.json").write_text(json.dumps({
            "study": name, "storage": url, "trial": best.number, "value": best.value,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in
                       params_to_fields(space, best.params).items()},
            "fixed": fixed, "run_dir": best.user_attrs.get("run_dir"),
            "finished_trials": len(study.get_trials(deepcopy=False, states=finished_states)),
        }, indent=1))

    if done < trials:
        study.optimize(objective, n_trials=trials - done, callbacks=[save_study_best],
                       catch=(), gc_after_trial=False)
    save_study_best(study, None)
    return study
