"""Run folders and the public API: train, resume, load, evaluate.

A run folder holds ``config.json`` (algorithm, env, seed, config, env spaces), ``summary.json``,
``metrics.csv``, TensorBoard event files under ``tb/`` and ``checkpoints/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from tandem.algos import get_algo
from tandem.config import Config
from tandem.core.checkpoint import (MALFORMED, atomic_write_text, latest_checkpoint,
                                    load_checkpoint, restore_pytree, save_checkpoint)
from tandem.core.evaluate import evaluate_policy
from tandem.core.guard import check_arrays, check_metrics
from tandem.core.logging import CSVSink, Progress, TensorBoardSink
from tandem.core.normalize import RunningMeanStd
from tandem.core.types import ObsStats
from tandem.envs.gym import EnvInfo, flatten_obs, make_env, scale_action, to_env_action
from tandem.errors import CheckpointError, ConfigError, EnvError, TandemError, TrainingInterrupted
from tandem.host import offpolicy, onpolicy

log = logging.getLogger("tandem")


# ============================================================================ deployment
@dataclasses.dataclass
class Policy:
    """A trained deterministic policy: raw env observation in, env-scaled action out."""

    algo: str
    params: Any
    obs_stats: ObsStats | None
    action_low: np.ndarray
    action_high: np.ndarray
    obs_layout: dict
    _act: Any
    action_space: dict = dataclasses.field(default_factory=lambda: {"kind": "box"})

    def act(self, obs: Any) -> np.ndarray:
        """Action for one raw env observation (Dict/Tuple/multi-dim observations are
        flattened as in training); for a 1-D Box env also a batch [N, obs_dim]."""
        flat_box = self.obs_layout["type"] == "box" and len(self.obs_layout["shape"]) == 1
        return self.act_flat(obs if flat_box else flatten_obs(self.obs_layout, obs))

    def act_flat(self, obs: np.ndarray) -> np.ndarray:
        """Action for an already flattened observation [obs_dim] or batch [N, obs_dim]."""
        a = np.asarray(self._act(self.params, self.obs_stats, np.asarray(obs, np.float32)))
        if self.action_space["kind"] != "box":  # integer actions, Gymnasium's start added
            return to_env_action(a, self.action_low, self.action_high, self.action_space)
        return np.clip(scale_action(a, self.action_low, self.action_high), self.action_low,
                       self.action_high)

    __call__ = act


@dataclasses.dataclass
class Run:
    """A finished (or resumed) training run."""

    dir: Path
    algo: str
    env_id: str | None
    seed: int
    config: Config
    summary: dict
    state: Any
    policy: Policy

    def act(self, obs: Any) -> np.ndarray:
        return self.policy.act(obs)


@dataclasses.dataclass
class Sweep:
    """Several seeds of one configuration: one compiled program (JAX-native envs) or runs one
    after another (Gymnasium envs). ``summary`` aggregates across seeds."""

    dir: Path
    algo: str
    env_id: str | None
    seeds: list[int]
    summaries: list[dict]
    summary: dict
    policies: list[Policy]
    state: Any = None  # the compiled path's vmapped LoopState


def policy_for(algo: str, fns, params, rms: RunningMeanStd | None, spec: dict) -> Policy:
    return Policy(algo, params, None if rms is None else rms.stats(),
                  np.asarray(spec["action_low"], np.float64),
                  np.asarray(spec["action_high"], np.float64), spec["obs_layout"], fns.act,
                  spec.get("action_space") or {"kind": "box"})


def _driver(algo: str, cfg: Config | None = None):
    """The loop module of an algorithm (same interface: learner_arrays, learner_meta,
    run_steps, optional close, and a Learner with .host.step / .host.recent_returns): the
    Gymnasium host loops, IMPALA's Ray loop, or the off-policy loop fed by Ray workers."""
    kind = get_algo(algo).driver
    if kind == "impala":
        from tandem.distributed import impala
        return impala
    if kind == "offpolicy" and getattr(cfg, "workers", 0):
        from tandem.distributed import offpolicy as distributed_offpolicy
        return distributed_offpolicy
    return onpolicy if kind == "onpolicy" else offpolicy


def _close(driver, ln) -> None:
    if hasattr(driver, "close"):
        driver.close(ln)


# ============================================================================ helpers
def _read_run(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run folder '{run_dir}' does not exist")
    if not path.is_file():
        parts = sorted(Path(run_dir).glob("seed_*/config.json"))
        if parts:
            raise CheckpointError(f"'{run_dir}' is a sweep of {len(parts)} runs, one per seed; "
                                  f"pass one of them, e.g. {parts[0].parent}")
        raise CheckpointError(f"'{run_dir}' is not a tandem run folder (no config.json)")
    try:
        run = json.loads(path.read_text())
        run["algo"], run["config"], run["env_spec"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"'{path}' is corrupt or not a tandem run config ({exc!r})") from None
    return run


def _config_from(run: dict) -> Config:
    spec = get_algo(run["algo"])
    try:
        return spec.config_cls.from_dict(run["config"])
    except ConfigError as exc:
        raise CheckpointError(f"run config is invalid for this tandem version: {exc}") from None


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r}: must be an integer >= {minimum}")


def _default_out(algo: str, env_id: str | None, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{algo}_{(env_id or 'custom').replace('/', '_')}_seed{seed}_{stamp}"


def _versions() -> dict:
    import flax
    import optax

    from tandem import __version__
    return {"tandem": __version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "gymnasium": gym.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def machine_info() -> dict:
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "jax_backend": jax.default_backend()}


class _Session:
    """Sinks, periodic evaluation and checkpointing for one training call (host side only)."""

    def __init__(self, run_dir: Path, run: dict, ln, resume_step: int | None, total: int,
                 progress: bool | None, eval_env: gym.Env, on_eval=None) -> None:
        self.run_dir, self.run, self.ln, self.algo = run_dir, run, ln, run["algo"]
        self.driver = _driver(self.algo, ln.cfg)
        self.csv = CSVSink(run_dir / "metrics.csv", resume_step)
        self.tb = TensorBoardSink(run_dir / "tb")
        self.progress = Progress(total, ln.host.step, progress, f"{self.algo}")
        self.eval_env, self.on_eval = eval_env, on_eval
        self.periodic = PeriodicEval(run_dir, ln.cfg, ln.host.step)

    def on_log(self, step: int, metrics: dict) -> None:
        check_metrics(metrics, step)
        ev = None
        if self.periodic.due(step):
            ev = self.periodic.run(step, self._evaluate, self._save_best)
            metrics = {**metrics, **ev}
        self.csv.write(step, metrics)
        self.tb.write(step, metrics)
        self.progress.line(step, metrics)
        if ev is not None and self.on_eval is not None:  # after the row is written: it may stop
            self.on_eval(step, ev)

    def _evaluate(self) -> dict:
        ln = self.ln
        policy = policy_for(self.algo, ln.fns, ln.fns.policy_params(ln.state), ln.rms,
                            self.run["env_spec"])
        return evaluate_policy(policy.act_flat, self.eval_env, ln.cfg.eval_episodes, ln.seed)

    def _save_best(self, step: int) -> None:
        self._save("best", step, keep=1)

    def _save(self, folder: str, step: int, keep: int) -> None:
        arrays = self.driver.learner_arrays(self.ln)
        check_arrays(arrays, step)  # never write a diverged state
        save_checkpoint(self.run_dir / folder, algo=self.algo, step=step, arrays=arrays,
                        meta=self.driver.learner_meta(self.ln), keep=keep)

    def on_progress(self, step: int, sps: float) -> None:
        r = self.ln.host.recent_returns
        self.progress.update(step, sps, f"return {np.mean(r):.1f}" if r else "")

    def on_checkpoint(self, step: int) -> None:
        self._save("checkpoints", step, keep=self.ln.cfg.keep_checkpoints)

    def close(self) -> None:
        self.progress.close()
        self.csv.close()
        self.tb.close()


class PeriodicEval:
    """Evaluation every ``cfg.eval_every`` env steps (the drivers write a log line there; an
    on-policy one after the rollout that reaches the multiple) and the best-checkpoint
    bookkeeping in ``best.json``; shared by both paths."""

    def __init__(self, run_dir: Path, cfg: Config, start_step: int) -> None:
        self.run_dir, self.cfg, self.last = run_dir, cfg, start_step
        self.every = cfg.eval_every
        self.result: dict | None = None  # the last evaluation in full (per-episode returns)
        path = run_dir / "best.json"
        self.best = json.loads(path.read_text()) if path.is_file() else None

    def due(self, step: int) -> bool:
        return bool(self.every) and step // self.every > self.last // self.every

    def run(self, step: int, evaluate, save_best) -> dict:
        """``evaluate()`` -> evaluate_policy's dict; ``save_best(step)`` writes best/."""
        t0 = time.perf_counter()
        ev = evaluate()
        self.last, self.result = step, ev
        m = {k: ev[k] for k in ("eval/return_mean", "eval/return_std", "eval/length_mean")
             if ev.get(k) is not None}
        if self.cfg.keep_best and m and (self.best is None or
                                         m["eval/return_mean"] > self.best["eval/return_mean"]):
            save_best(step)
            self.best = {"step": step, "eval/return_mean": m["eval/return_mean"],
                         "eval/episodes": ev["eval/episodes"]}
            atomic_write_text(self.run_dir / "best.json", json.dumps(self.best, indent=1))
        if self.best is not None:
            m["eval/best_return"] = self.best["eval/return_mean"]
        m["time/eval_s"] = time.perf_counter() - t0
        return m


def check_eval_schedule(cfg: Config, separate_env: bool) -> None:
    if cfg.eval_every and not separate_env:
        raise ConfigError("eval_every needs a second env instance for evaluation; this env was "
                          "passed as an unregistered instance: register it (gymnasium.register) "
                          "and pass its id, or set eval_every=0")


def _train_session(run_dir: Path, run: dict, ln, until: int, progress: bool | None,
                   resume_step: int | None, eval_env: gym.Env, on_eval=None) -> Run:
    algo = run["algo"]
    session = _Session(run_dir, run, ln, resume_step, until, progress, eval_env, on_eval)
    start_step, t0 = ln.host.step, time.perf_counter()
    try:
        with _stop_on_interrupt(ln):
            session.driver.run_steps(ln, until, session.on_log, session.on_checkpoint,
                                     session.on_progress)
        wall = time.perf_counter() - t0
        session.on_checkpoint(ln.host.step)
    except TandemError as exc:  # e.g. the env returned NaN: say what was kept
        _close(session.driver, ln)
        raise type(exc)(f"{exc}. {_kept(run_dir)}") from None
    except BaseException:
        _close(session.driver, ln)
        raise
    finally:
        session.close()
    if ln.stop_requested:
        raise TrainingInterrupted(f"interrupted at step {ln.host.step}; a checkpoint was written "
                                  f"there: continue with `tandem resume {run_dir}`")
    policy = policy_for(algo, ln.fns, ln.fns.policy_params(ln.state), ln.rms, run["env_spec"])
    periodic = session.periodic
    if periodic.result is not None and periodic.last == ln.host.step:
        ev = periodic.result  # the final evaluation is the one just done at this step
    else:
        ev = evaluate_policy(policy.act_flat, eval_env, ln.cfg.eval_episodes, ln.seed)
    _close(session.driver, ln)  # after the evaluation: it may run on the training instance
    versions = _versions()
    summary = {"algo": algo, "env": run["env"], "seed": ln.seed, "steps": ln.host.step,
               "version": versions["tandem"],
               **{k: v for k, v in ev.items() if k.startswith("eval/")},
               "eval/returns": ev["returns"],
               "time/sps": (ln.host.step - start_step) / max(wall, 1e-9), "time/wall_s": wall,
               "rollout/episodes": ln.host.episode,
               "rollout/ep_return_mean": (float(np.mean(ln.host.recent_returns))
                                          if ln.host.recent_returns else None),
               "resumed_from": resume_step, "versions": versions,
               "best": session.periodic.best,
               "machine": machine_info()}
    if hasattr(session.driver, "summary_fields"):  # Ray workers: restarts, losses
        summary.update(session.driver.summary_fields(ln))
    if hasattr(ln, "env_s"):  # on-policy: where the time went (env stepping vs learning)
        summary["time/env_fraction"] = ln.env_s / max(wall, 1e-9)
        summary["time/learn_fraction"] = ln.learn_s / max(wall, 1e-9)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    log.info("done: %d steps, eval return %s over %d episodes, %.1f steps/s -> %s",
             ln.host.step, "n/a" if ev["eval/return_mean"] is None else
             f"{ev['eval/return_mean']:.2f} +- {ev['eval/return_std']:.2f}",
             ev["eval/episodes"], summary["time/sps"], run_dir)
    return Run(run_dir, algo, run["env"], ln.seed, ln.cfg, summary, ln.state, policy)


@contextlib.contextmanager
def _stop_on_interrupt(ln):
    """First Ctrl-C: finish the current step, checkpoint, stop. Second: abort at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        ln.stop_requested = True
        log.warning("interrupt: stopping after this step and writing a checkpoint "
                    "(press Ctrl-C again to abort without one)")
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _kept(run_dir: Path) -> str:
    try:
        ckpt = latest_checkpoint(run_dir)
    except CheckpointError:
        return f"No checkpoint was written yet in {run_dir}"
    step = int(ckpt.name.split("_")[-1])
    return (f"The last checkpoint is at step {step}; after fixing the cause, continue with "
            f"`tandem resume {run_dir}`")


def _eval_env(info: EnvInfo, algo: str, env_kwargs: dict | None) -> gym.Env:
    """A separate env instance for evaluation when the env can be re-made from its id."""
    if info.env_id is not None:
        return make_env(info.env_id, algo, env_kwargs=env_kwargs).env
    return info.env  # an unregistered instance: evaluated after training, on the same object


# ============================================================================ public API
def parse_seeds(spec: str | int | list[int] | None, seed: int = 0) -> list[int] | None:
    """``8`` -> 8 seeds from ``seed``; ``"0-9"`` -> 0..9; ``"1,3,5"`` -> [1, 3, 5]."""
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)):
        seeds = [int(s) for s in spec]
    else:
        text = str(spec).strip()
        try:
            if "," in text:
                seeds = [int(t) for t in text.split(",") if t.strip()]
            elif "-" in text.lstrip("-"):
                lo, hi = (int(t) for t in text.split("-", 1))
                seeds = list(range(lo, hi + 1))
            else:
                n = int(text)
                if n < 1:
                    raise ValueError
                seeds = list(range(seed, seed + n))
        except ValueError:
            raise ConfigError(f"--seeds {spec!r}: give a count (8), a range (0-9) or a list "
                              "(1,3,5)") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {spec!r}: seeds must be distinct integers >= 0")
    return seeds


def train(cfg: Config, env: str | gym.Env, steps: int = 50_000, seed: int = 0,
          out: str | Path | None = None, progress: bool | None = None,
          env_kwargs: dict | None = None, seeds: str | int | list[int] | None = None,
          on_eval=None, check_env: bool = True) -> Run | Sweep:
    """Train ``cfg``'s algorithm on ``env`` for ``steps`` env steps.

    ``env`` is a Gymnasium id or instance (the host loop), or a JAX-native id such as
    ``gymnax:Pendulum-v1`` / ``brax:halfcheetah`` (the whole loop compiled into one program).
    Writes a run folder (``out``, default ``runs/<algo>_<env>_seed<S>_<time>``) and returns
    the :class:`Run`, whose ``policy.act(obs)`` gives deployable actions. With ``seeds`` (a
    count, a range "0-9" or a list) several seeds train into one folder and a :class:`Sweep`
    is returned: vmapped as one program on a JAX-native env, one after another otherwise. A
    JAX-native env always returns a Sweep (of one seed when ``seeds`` is not given).

    With ``cfg.eval_every`` the policy is evaluated during training and
    ``on_eval(step, metrics)`` is called after each evaluation (an exception raised there,
    e.g. a tuner's prune, stops training after the row is logged).

    A Gymnasium env is first checked (``tandem.envs.check.check_env``: a few hundred random
    steps on a separate instance); ``check_env=False`` skips that.
    """
    if not isinstance(cfg, Config):
        raise ConfigError(f"cfg must be a tandem config such as SACConfig(), got "
                          f"{type(cfg).__name__}")
    _check_int("steps", steps, 1)
    _check_int("seed", seed, 0)
    spec = get_algo(cfg.algo)
    seed_list = parse_seeds(seeds, seed)
    from tandem.envs.jaxenv import is_jax_env
    if is_jax_env(env):
        if spec.driver == "impala" or getattr(cfg, "workers", 0):
            raise ConfigError(f"{cfg.algo} with Ray workers steps Gymnasium envs; a JAX-native "
                              "env runs as one compiled program (drop --workers, or use ppo / "
                              "sac on it)")
        from tandem.compiled.run import train_compiled
        seed_list = seed_list or [seed]
        name = env if isinstance(env, str) else env.env_id
        run_dir = Path(out) if out is not None else _default_out(cfg.algo, name, seed_list[0])
        return train_compiled(cfg, env, steps, seed_list, run_dir, progress, env_kwargs,
                              on_eval)
    if seed_list is not None and len(seed_list) > 1:
        return _train_sequential(cfg, env, steps, seed_list, out, progress, env_kwargs,
                                 on_eval, check_env)
    if seed_list is not None:
        seed = seed_list[0]
    info = make_env(env, cfg.algo, env_kwargs)
    if check_env:
        from tandem.envs.check import check_env as run_checks
        for warning in run_checks(env, env_kwargs, seed=seed):
            log.warning("check-env: %s", warning)
    check_eval_schedule(cfg, info.env_id is not None)
    run_dir = Path(out) if out is not None else _default_out(cfg.algo, info.env_id, seed)
    if (run_dir / "config.json").exists() or (run_dir / "checkpoints").exists():
        raise ConfigError(f"'{run_dir}' already holds a run; continue it with `tandem resume "
                          f"{run_dir}` or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    run = {"algo": cfg.algo, "env": info.env_id, "env_from_instance": not isinstance(env, str),
           "env_kwargs": env_kwargs or {}, "seed": int(seed), "steps": int(steps),
           "config": cfg.to_dict(), "env_spec": info.spec_json(), "versions": _versions()}
    atomic_write_text(run_dir / "config.json", json.dumps(run, indent=1))
    fns = spec.build(cfg, info.spec_json())
    driver = _driver(cfg.algo, cfg)
    if driver is offpolicy:
        ln = driver.new_learner(cfg, info, fns, int(seed))
    else:
        ln = driver.new_learner(cfg, info, fns, int(seed), env, env_kwargs)
    log.info("training %s on %s for %d steps (seed %d) -> %s", cfg.algo, info.env_id or "env",
             steps, seed, run_dir)
    return _train_session(run_dir, run, ln, int(steps), progress, None,
                          _eval_env(info, cfg.algo, env_kwargs), on_eval)


def _train_sequential(cfg, env, steps: int, seeds: list[int], out, progress,
                      env_kwargs, on_eval=None, check_env: bool = True) -> Sweep:
    """Gymnasium env, several seeds: normal run folders ``<out>/seed_<s>`` one after another."""
    from tandem.compiled.run import aggregate
    name = env if isinstance(env, str) else getattr(env.spec, "id", None)
    sweep_dir = Path(out) if out is not None else _default_out(cfg.algo, name, seeds[0])
    runs = [train(cfg, env, steps, s, sweep_dir / f"seed_{s}", progress, env_kwargs,
                  on_eval=on_eval, check_env=check_env and i == 0)
            for i, s in enumerate(seeds)]
    agg = aggregate([r.summary for r in runs])
    agg["path"] = "host"
    agg["time/sps"] = float(np.mean([r.summary["time/sps"] for r in runs]))
    atomic_write_text(sweep_dir / "summary.json", json.dumps(agg, indent=1))
    return Sweep(sweep_dir, cfg.algo, runs[0].env_id, seeds, [r.summary for r in runs], agg,
                 [r.policy for r in runs])


def _env_for_run(run: dict, env: str | gym.Env | None) -> EnvInfo:
    if env is None:
        if run.get("env_from_instance") and run.get("env") is None:
            raise EnvError("this run was trained on an unregistered env instance; pass the env "
                           "(Python: env=...) to continue or evaluate it")
        env = run["env"]
    info = make_env(env, run["algo"], run.get("env_kwargs") or None)
    want = run["env_spec"]
    if info.obs_dim != want["obs_dim"] or info.action_dim != want["action_dim"]:
        raise EnvError(f"env has obs_dim={info.obs_dim}, action_dim={info.action_dim}; the run "
                       f"was trained with {want['obs_dim']} and {want['action_dim']}")
    return info


def resume_target(run_dir: Path, run: dict, ckpt: Path, start: int, steps: int | None) -> int:
    """The step a resume trains to (``steps`` more, or the original total), recorded in
    config.json so that a later crash finishes the same total."""
    until = start + steps if steps is not None else int(run["steps"])
    if until <= start:
        raise ConfigError(f"the run is already at step {start} (asked total {run['steps']}); "
                          "pass --steps M to train M more steps")
    run["steps"] = until
    atomic_write_text(run_dir / "config.json", json.dumps(run, indent=1))
    log.info("resuming %s from %s (step %d) to step %d", run["algo"], ckpt, start, until)
    return until


def resume(run_dir: str | Path, steps: int | None = None, progress: bool | None = None,
           env: str | gym.Env | None = None, on_eval=None) -> Run:
    """Continue a run from its latest checkpoint: ``steps`` more env steps, or (None) up to
    the total it was started with, so a crashed run finishes what it was asked to do."""
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    cfg = _config_from(run)
    if steps is not None:
        _check_int("steps", steps, 1)
    if run.get("path") == "compiled":
        from tandem.compiled.run import resume_compiled
        return resume_compiled(run_dir, run, cfg, steps, progress, on_eval)
    if not any((run_dir / "checkpoints").glob("step_*")):
        # stopped (crashed, killed) before its first checkpoint: nothing to continue from,
        # so the run starts again from step 0 with its saved config, seed and total
        _env_for_run(run, env)  # the env can still be made, with the same spaces
        log.warning("'%s' has no checkpoint yet (it stopped before its first one): starting "
                    "it again from step 0", run_dir)
        for name in ("config.json", "metrics.csv", "summary.json", "best.json"):
            (run_dir / name).unlink(missing_ok=True)
        for folder in ("tb", "checkpoints", "best"):
            shutil.rmtree(run_dir / folder, ignore_errors=True)
        total = int(run["steps"]) if steps is None else int(steps)
        return train(cfg, env if env is not None else run["env"], steps=total,
                     seed=int(run["seed"]), out=run_dir, progress=progress,
                     env_kwargs=run.get("env_kwargs") or None, on_eval=on_eval)
    ckpt = latest_checkpoint(run_dir)
    meta, arrays = load_checkpoint(ckpt, expect_algo=run["algo"])
    info = _env_for_run(run, env)
    spec = get_algo(run["algo"])
    fns = spec.build(cfg, run["env_spec"])
    driver = _driver(run["algo"], cfg)
    if driver is offpolicy:
        ln = driver.restore_learner(cfg, info, fns, meta, arrays, str(ckpt))
    else:
        source = env if env is not None else run["env"]
        ln = driver.restore_learner(cfg, info, fns, meta, arrays, str(ckpt), source,
                                    run.get("env_kwargs") or None)
    start = ln.host.step
    until = resume_target(run_dir, run, ckpt, start, steps)
    return _train_session(run_dir, run, ln, until, progress, start,
                          _eval_env(info, run["algo"], run.get("env_kwargs") or None), on_eval)


def load(run_dir: str | Path, seed: int | None = None, best: bool = False) -> Policy:
    """The deployable policy of a run folder: its latest checkpoint, or with ``best`` the one
    that scored best in the periodic evaluation (``eval_every``). For a compiled multi-seed
    run, ``seed`` picks the seed (default: the first)."""
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    cfg = _config_from(run)
    folder = "best" if best else "checkpoints"
    if run.get("path") == "compiled":
        from tandem.compiled.run import load_compiled
        return load_compiled(run_dir, run, cfg, seed, folder)
    ckpt = latest_checkpoint(run_dir, folder)
    meta, arrays = load_checkpoint(ckpt, expect_algo=run["algo"])
    spec = run["env_spec"]
    fns = get_algo(run["algo"]).build(cfg, spec)
    state = restore_pytree(jax.eval_shape(fns.init, jax.random.PRNGKey(0)), arrays, "state",
                           str(ckpt))
    params = fns.policy_params(state)
    try:
        rms = (RunningMeanStd.from_state(arrays) if meta.get("host", {}).get("normalize_obs")
               else None)
    except MALFORMED as exc:
        raise CheckpointError(f"{ckpt}: observation statistics are missing or malformed "
                              f"({exc!r})") from None
    return policy_for(run["algo"], fns, params, rms, spec)


def evaluate(run_dir: str | Path, episodes: int = 10, seed: int | None = None,
             env: str | gym.Env | None = None, best: bool = False) -> dict:
    """Deterministic evaluation of a run's policy (``best``: the best checkpoint); writes
    ``eval.json`` (``eval_best.json``) in the run folder."""
    _check_int("episodes", episodes, 1)
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    if run.get("path") == "compiled":
        from tandem.compiled.run import evaluate_compiled
        result = evaluate_compiled(run_dir, run, _config_from(run), episodes,
                                   "best" if best else "checkpoints")
    else:
        policy = load(run_dir, best=best)
        info = _env_for_run(run, env)
        result = evaluate_policy(policy.act_flat, info.env, episodes,
                                 run["seed"] if seed is None else seed)
    atomic_write_text(run_dir / ("eval_best.json" if best else "eval.json"),
                      json.dumps(result, indent=1))
    return result
