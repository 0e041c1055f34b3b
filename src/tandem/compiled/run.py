"""Run folders for the compiled path: train / resume / load / evaluate N seeds as one program.

Folder layout: ``config.json`` (path "compiled", seeds), ``checkpoints/`` (the vmapped
:class:`LoopState`, every leaf with a leading seed axis), ``seed_<s>/`` with ``metrics.csv``,
``tb/`` and ``summary.json`` per seed, and an aggregate ``summary.json``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from tandem.algos import get_algo
from tandem.compiled import offpolicy, onpolicy
from tandem.core.guard import check_arrays, check_metrics
from tandem.config import Config
from tandem.core.checkpoint import (atomic_write_text, flatten_pytree, latest_checkpoint,
                                    load_checkpoint, restore_pytree, save_checkpoint)
from tandem.core.evaluate import EVAL_SEED_OFFSET
from tandem.core.logging import CSVSink, Progress, TensorBoardSink
from tandem.envs.jaxenv import JaxEnv, make_jax_env
from tandem.errors import CheckpointError, ConfigError, TrainingInterrupted

log = logging.getLogger("tandem")


def _check_schedule(cfg) -> None:
    if get_algo(cfg.algo).driver == "onpolicy":
        return  # chunks end on whole rollouts, as on the host path
    if cfg.normalize_obs:
        raise ConfigError("normalize_obs=True is not supported on the compiled path yet; train "
                          "without it or use a Gymnasium env")
    k = cfg.train_freq
    for name in ("learning_starts", "log_every", "checkpoint_every", "eval_every"):
        if getattr(cfg, name) % k:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be a multiple of train_freq={k} "
                              "on the compiled path (chunks end on training iterations)")


class _Program:
    """The jitted, vmapped chunk functions of one (config, env, seeds) and their compile time."""

    def __init__(self, cfg, env: JaxEnv, n_seeds: int) -> None:
        spec = get_algo(cfg.algo)
        if env.space_name not in spec.action_spaces:
            from tandem.algos import algos_for_action_space
            from tandem.errors import EnvError
            fits = sorted(a for a in algos_for_action_space(env.space_name)
                          if get_algo(a).driver != "impala")  # not on the compiled path
            wants = ("continuous (Box)" if spec.action_spaces == ("Box",)
                     else " or ".join(spec.action_spaces))
            raise EnvError(f"{cfg.algo.upper()} needs {wants} actions but {env.env_id} has "
                           f"{env.space_name} actions; tandem "
                           f"algorithms for it: {', '.join(fits)}")
        fns = spec.build(cfg, env.spec_json())
        self.fns, self.cfg, self.n, self.env = fns, cfg, n_seeds, env
        if spec.driver == "onpolicy":
            self.ct = onpolicy.make_train(cfg, env, fns)
            self.unit, self.warmup_steps = cfg.n_envs * cfg.n_steps, 0
        else:
            self.ct = offpolicy.make_train(cfg, env, fns, cfg.buffer_size)
            self.unit, self.warmup_steps = cfg.train_freq, cfg.learning_starts
        self.init = jax.jit(jax.vmap(self.ct.init))
        self.compile_s = 0.0
        self._cache: dict = {}
        self.traces = {"warmup": 0, "train": 0}

    def template(self):
        return jax.eval_shape(self.init, jax.numpy.zeros((self.n, 2), jax.numpy.uint32))

    def run(self, kind: str, ls, n: int):
        """Advance every seed by n warm-up steps or n training iterations (n is a traced
        argument, so each kind compiles once whatever the chunk length)."""
        n = jax.numpy.asarray(n, jax.numpy.int32)
        if kind not in self._cache:
            def fn(state, n):
                self.traces[kind] += 1
                return jax.vmap(getattr(self.ct, kind), in_axes=(0, None))(state, n)
            t0 = time.perf_counter()
            self._cache[kind] = jax.jit(fn, donate_argnums=0).lower(ls, n).compile()
            self.compile_s += time.perf_counter() - t0
        return self._cache[kind](ls, n)

    def evaluate(self, ls, seeds: list[int], episodes: int) -> np.ndarray:
        keys = jax.numpy.stack([jax.random.PRNGKey(s + EVAL_SEED_OFFSET) for s in seeds])
        if ("eval", episodes) not in self._cache:
            self._cache["eval", episodes] = jax.jit(jax.vmap(
                functools.partial(self.ct.evaluate, episodes=episodes)))
        fn = self._cache["eval", episodes]
        return np.asarray(fn(jax.vmap(self.ct.policy_of)(ls), keys), np.float64)  # [S, episodes]

    def policy(self, ls, i: int, spec: dict):
        """The deployable policy of seed index ``i``."""
        from tandem.core.types import ObsStats
        from tandem.host.run import policy_for
        params, stats = self.ct.policy_of(_seed_slice(ls, i)), None
        if isinstance(params, tuple):  # on-policy: (actor params, observation stats)
            params, stats = params
        pol = policy_for(self.cfg.algo, self.fns, params, None, spec)
        if stats is not None:
            pol.obs_stats = ObsStats(np.asarray(stats.mean), np.asarray(stats.std))
        return pol


# Fields that do not change the compiled chunk functions (only when and how often the host
# logs, checkpoints and evaluates), so runs differing only here share one compilation.
_HOST_ONLY = ("log_every", "checkpoint_every", "keep_checkpoints", "eval_episodes", "eval_every",
              "keep_best")


@functools.lru_cache(maxsize=8)
def _cached_program(cfg, env_id: str, env_kwargs_json: str, n_seeds: int) -> "_Program":
    env = make_jax_env(env_id, json.loads(env_kwargs_json) or None)
    return _Program(cfg, env, n_seeds)


def program_for(cfg, env: str | JaxEnv, env_kwargs: dict | None, n_seeds: int
                ) -> tuple[JaxEnv, "_Program"]:
    """The (cached) compiled program for ``cfg`` on ``env`` with ``n_seeds`` seeds."""
    if isinstance(env, JaxEnv):  # a user-built adapter: not cached
        return env, _Program(cfg, env, n_seeds)
    defaults = type(cfg)()
    key_cfg = cfg.replace(**{k: getattr(defaults, k) for k in _HOST_ONLY})
    prog = _cached_program(key_cfg, env, json.dumps(env_kwargs or {}, sort_keys=True), n_seeds)
    return prog.env, prog


def _keys(seeds: list[int]) -> jax.Array:
    return jax.numpy.stack([jax.random.PRNGKey(s) for s in seeds])


def _state_arrays(ls) -> dict:
    """Checkpoint arrays of the vmapped state; of the replay buffer only the filled rows."""
    if not hasattr(ls, "buffer"):
        return flatten_pytree(ls, "state")
    arrays = flatten_pytree(ls._replace(buffer=None), "state")
    size = int(np.asarray(ls.size).max())
    for name, x in ls.buffer._asdict().items():
        arrays[f"state/buffer/{name}"] = np.asarray(x)[:, :size]
    return arrays


def _restore_state(template, arrays: dict, source: str):
    if not hasattr(template, "buffer"):
        return restore_pytree(template, arrays, "state", source)
    ls = restore_pytree(template._replace(buffer=None), arrays, "state", source)
    fields = {}
    for name, t in template.buffer._asdict().items():
        full = np.zeros(t.shape, t.dtype)  # [S, capacity, ...]
        src = arrays.get(f"state/buffer/{name}")
        if src is None or src.shape[0] != t.shape[0] or src.shape[2:] != t.shape[2:] or \
                src.shape[1] > t.shape[1] or src.dtype != t.dtype:
            raise CheckpointError(f"{source}: replay buffer field '{name}' is missing or has "
                                  f"the wrong shape for this run's config")
        full[:, :src.shape[1]] = src
        fields[name] = jax.numpy.asarray(full)
    return ls._replace(buffer=type(template.buffer)(**fields))


def run_compiled(run_dir: Path, run: dict, cfg, env: JaxEnv, prog: _Program, ls, until: int,
                 progress: bool | None, resume_step: int | None, on_eval=None):
    """Drive chunks to ``until``: log per seed, checkpoint, evaluate, write summaries."""
    from tandem.host.run import (PeriodicEval, Sweep, _stop_on_interrupt, _versions,
                                 machine_info)

    seeds = run["seeds"]
    step = int(np.asarray(ls.step)[0])
    seed_dirs = [run_dir / f"seed_{s}" for s in seeds]
    for d in seed_dirs:
        d.mkdir(parents=True, exist_ok=True)
    sinks = [(CSVSink(d / "metrics.csv", resume_step), TensorBoardSink(d / "tb"))
             for d in seed_dirs]
    bar = Progress(until, step, progress, f"{cfg.algo} x{len(seeds)}")

    def checkpoint(at: int, folder: str = "checkpoints") -> None:
        arrays = _state_arrays(ls)
        check_arrays(arrays, at)  # never write a diverged state
        save_checkpoint(run_dir / folder, algo=cfg.algo, step=at, arrays=arrays,
                        meta={"host": {"step": at, "seeds": seeds}},
                        keep=cfg.keep_checkpoints if folder == "checkpoints" else 1)

    # Periodic evaluation of every seed; "best" is by the mean over seeds (one vmapped state).
    periodic = PeriodicEval(run_dir, cfg, step)
    per_seed: dict = {}

    def evaluate_now() -> dict:
        r = prog.evaluate(ls, seeds, cfg.eval_episodes)  # [seeds, episodes]
        per_seed["returns"] = r
        return {"eval/return_mean": float(r.mean(axis=1).mean()),
                "eval/return_std": float(r.mean(axis=1).std()), "eval/episodes": r.shape[1]}

    class _Flag:
        stop_requested = False
    flag = _Flag()
    start, t0, train_s = step, time.perf_counter(), 0.0
    compile0 = prog.compile_s
    if hasattr(ls, "total"):  # on-policy: the learning rate anneals to 0 at `until`
        ls = ls._replace(total=jax.numpy.full_like(ls.total, until))
    unit = prog.unit
    try:
        with _stop_on_interrupt(flag):
            while step < until:
                boundary = min((step // cfg.log_every + 1) * cfg.log_every, until)
                if cfg.eval_every:  # chunks also end where an evaluation is due
                    boundary = min(boundary, (step // cfg.eval_every + 1) * cfg.eval_every)
                if step < prog.warmup_steps:
                    n = min(boundary, prog.warmup_steps) - step
                    kind, iters = "warmup", n
                elif prog.warmup_steps:  # off-policy: iterations of train_freq steps
                    n = boundary - step
                    if n % unit:
                        raise ConfigError(f"steps must end on a training iteration: {until} - "
                                          f"learning_starts is not a multiple of train_freq="
                                          f"{unit}")
                    kind, iters = "train", n // unit
                else:  # whole rollouts; the last may pass `until`, as on the host path
                    iters = -(-(boundary - step) // unit)
                    kind, n = "train", iters * unit
                c0 = prog.compile_s
                t_chunk = time.perf_counter()
                ls, metrics = prog.run(kind, ls, iters)
                metrics = jax.device_get(metrics)
                for i, s in enumerate(seeds):
                    check_metrics({k: v[i] for k, v in metrics.items()}, step + n,
                                  f" (seed {s})")
                dt = time.perf_counter() - t_chunk - (prog.compile_s - c0)
                train_s += dt
                step += n
                ev = (periodic.run(step, evaluate_now, lambda at: checkpoint(at, "best"))
                      if periodic.due(step) else None)
                for i, (csv_sink, tb_sink) in enumerate(sinks):
                    m = {k: float(v[i]) for k, v in metrics.items()
                         if k not in ("rollout/episodes_done", "rollout/ep_return_sum")}
                    done = int(metrics["rollout/episodes_done"][i])
                    if done:
                        m["rollout/ep_return_mean"] = float(
                            metrics["rollout/ep_return_sum"][i]) / done
                    m["rollout/episodes"] = float(np.asarray(ls.episodes)[i])
                    m["time/sps"] = n / max(dt, 1e-9)
                    if ev is not None:
                        r = per_seed["returns"][i]
                        m.update({"eval/return_mean": float(r.mean()),
                                  "eval/return_std": float(r.std()),
                                  "time/eval_s": ev["time/eval_s"]})
                        if "eval/best_return" in ev:  # of the seeds' mean, as best/ holds
                            m["eval/best_return_seed_mean"] = ev["eval/best_return"]
                    csv_sink.write(step, m)
                    tb_sink.write(step, m)
                    if i == 0:
                        bar.line(step, m)
                bar.update(step, n / max(dt, 1e-9))
                if ev is not None and on_eval is not None:
                    on_eval(step, ev)
                if cfg.checkpoint_every and step < until and \
                        (step - n) // cfg.checkpoint_every < step // cfg.checkpoint_every:
                    checkpoint(step)
                if flag.stop_requested:
                    break
        checkpoint(step)
    finally:
        bar.close()
        for csv_sink, tb_sink in sinks:
            csv_sink.close()
            tb_sink.close()
    if flag.stop_requested:
        raise TrainingInterrupted(f"interrupted at step {step}; a checkpoint was written there: "
                                  f"continue with `tandem resume {run_dir}`")
    wall = time.perf_counter() - t0
    returns = (prog.evaluate(ls, seeds, cfg.eval_episodes) if cfg.eval_episodes
               else np.zeros((len(seeds), 0)))
    versions = _versions()
    summaries, policies = [], []
    steps_done = step - start
    for i, s in enumerate(seeds):
        r = returns[i]
        summary = {"algo": cfg.algo, "env": env.env_id, "seed": s, "steps": step,
                   "path": "compiled", "version": versions["tandem"],
                   "eval/return_mean": float(r.mean()) if r.size else None,
                   "eval/return_std": float(r.std()) if r.size else None,
                   "eval/episodes": int(r.size), "eval/returns": r.tolist(),
                   "time/sps": steps_done / max(train_s, 1e-9), "time/wall_s": wall,
                   "rollout/episodes": int(np.asarray(ls.episodes)[i]),
                   "resumed_from": resume_step, "best": periodic.best}
        atomic_write_text(seed_dirs[i] / "summary.json", json.dumps(summary, indent=1))
        summaries.append(summary)
        policies.append(prog.policy(ls, i, env.spec_json()))
    agg = aggregate(summaries)
    agg.update({"path": "compiled", "time/sps": steps_done / max(train_s, 1e-9),
                "time/sps_total": len(seeds) * steps_done / max(train_s, 1e-9),
                "time/compile_s": prog.compile_s - compile0, "time/wall_s": wall,
                "versions": versions, "machine": machine_info()})
    atomic_write_text(run_dir / "summary.json", json.dumps(agg, indent=1))
    log.info("done: %d seeds x %d steps, eval return %s, %.0f steps/s per seed (%.0f total), "
             "compile %.1f s -> %s", len(seeds), step,
             "n/a" if agg["eval/return_mean"] is None else
             f"{agg['eval/return_mean']:.2f} +- {agg['eval/return_std_across_seeds']:.2f}",
             agg["time/sps"], agg["time/sps_total"], agg["time/compile_s"], run_dir)
    return Sweep(run_dir, cfg.algo, env.env_id, seeds, summaries, agg, policies, ls)


def _seed_slice(tree, i: int):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def aggregate(summaries: list[dict]) -> dict:
    """Across-seed statistics of per-seed summaries (mean and std of the seeds' eval means)."""
    means = [s["eval/return_mean"] for s in summaries if s["eval/return_mean"] is not None]
    first = summaries[0]
    return {"algo": first["algo"], "env": first["env"], "steps": first["steps"],
            "seeds": [s["seed"] for s in summaries],
            "eval/return_mean": float(np.mean(means)) if means else None,
            "eval/return_std_across_seeds": float(np.std(means)) if means else None,
            "eval/return_per_seed": [s["eval/return_mean"] for s in summaries]}


# ============================================================================ entry points
def train_compiled(cfg: Config, env: str | JaxEnv, steps: int, seeds: list[int],
                   out: Path, progress: bool | None, env_kwargs: dict | None, on_eval=None):
    from tandem.host.run import _versions
    _check_schedule(cfg)
    jenv, prog = program_for(cfg, env, env_kwargs, len(seeds))
    if (out / "config.json").exists() or (out / "checkpoints").exists():
        raise ConfigError(f"'{out}' already holds a run; continue it with `tandem resume {out}` "
                          "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    # the replay buffer is preallocated per seed; fixed so a resume can train longer
    capacity = getattr(cfg, "buffer_size", None)
    run = {"algo": cfg.algo, "env": jenv.env_id, "path": "compiled", "seeds": seeds,
           "env_kwargs": env_kwargs or {}, "seed": seeds[0], "steps": int(steps),
           "capacity": capacity, "config": cfg.to_dict(), "env_spec": jenv.spec_json(),
           "versions": _versions()}
    atomic_write_text(out / "config.json", json.dumps(run, indent=1))
    ls = prog.init(_keys(seeds))
    log.info("training %s on %s for %d steps, seeds %s, as one compiled program -> %s",
             cfg.algo, jenv.env_id, steps, seeds, out)
    return run_compiled(out, run, cfg, jenv, prog, ls, int(steps), progress, None, on_eval)


def _restore(run_dir: Path, run: dict, cfg, folder: str = "checkpoints"
             ) -> tuple[JaxEnv, _Program, Any, Path]:
    if run.get("capacity") != getattr(cfg, "buffer_size", None):
        raise CheckpointError(f"{run_dir}: config.json is inconsistent (capacity != buffer_size)")
    jenv, prog = program_for(cfg, run["env"], run.get("env_kwargs") or None, len(run["seeds"]))
    ckpt = latest_checkpoint(run_dir, folder)
    _, arrays = load_checkpoint(ckpt, expect_algo=run["algo"])
    ls = _restore_state(prog.template(), arrays, str(ckpt))
    return jenv, prog, ls, ckpt


def resume_compiled(run_dir: Path, run: dict, cfg, steps: int | None, progress: bool | None,
                    on_eval=None):
    jenv, prog, ls, ckpt = _restore(run_dir, run, cfg)
    from tandem.host.run import resume_target
    start = int(np.asarray(ls.step)[0])
    until = resume_target(run_dir, run, ckpt, start, steps)
    return run_compiled(run_dir, run, cfg, jenv, prog, ls, until, progress, start, on_eval)


def load_compiled(run_dir: Path, run: dict, cfg, seed: int | None,
                  folder: str = "checkpoints"):
    seeds = run["seeds"]
    if seed is not None and seed not in seeds:
        raise CheckpointError(f"seed {seed} is not in this run (seeds {seeds})")
    i = 0 if seed is None else seeds.index(seed)
    _, prog, ls, _ = _restore(run_dir, run, cfg, folder)
    return prog.policy(ls, i, run["env_spec"])


def evaluate_compiled(run_dir: Path, run: dict, cfg, episodes: int,
                      folder: str = "checkpoints") -> dict:
    _, prog, ls, _ = _restore(run_dir, run, cfg, folder)
    returns = prog.evaluate(ls, run["seeds"], episodes)
    return {"eval/return_mean": float(returns.mean(axis=1).mean()),
            "eval/return_std_across_seeds": float(returns.mean(axis=1).std()),
            "eval/episodes": episodes, "eval/seeds": run["seeds"],
            "eval/returns_per_seed": returns.tolist()}
