"""THE training loop: one session for every driver.

A session advances a driver (``tandem.run.driver``) from boundary to boundary and decides,
alone, what happens at each: a log line (every ``log_every`` steps, at each evaluation and at
the end), an evaluation with the best checkpoint (``eval_every``), a checkpoint
(``checkpoint_every``, and always at the end), a stop (the run's total, or Ctrl-C). It writes
every sink (metrics.csv, TensorBoard, the progress bar), guards against divergence, keeps
replay segments (``tandem.run.checkpoint``), writes summary.json, and fans a run out per seed.

Boundaries fall at the multiples of each interval. A driver that moves in whole rollouts or
updates may pass a multiple; the boundary is then the step it reached (an on-policy run
evaluates after the rollout that reaches each multiple of ``eval_every``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tandem.errors import TandemError, TrainingInterrupted
from tandem.run import folder as rf
from tandem.run.checkpoint import SegmentWriter, save_checkpoint
from tandem.run.driver import STEP_UNITS, Control, Driver
from tandem.run.guard import check_arrays, check_metrics
from tandem.run.sinks import CSVSink, Progress, TensorBoardSink

log = logging.getLogger("tandem")

_NOT_LOGGED = ("rollout/episodes_done", "rollout/ep_return_sum")


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` (0: never) lies in (before, after]."""
    return bool(every) and after // every > before // every


def next_multiple(step: int, every: int) -> int | None:
    return (step // every + 1) * every if every else None


class Session:
    """Drive ``driver`` to step ``until`` in the run folder ``run_dir``.

    ``run`` is the run's record (config.json), ``settings`` the config's :class:`Settings`.
    ``resume_step``: the checkpoint step a resumed run continues from (rows and TensorBoard
    events past it, left by a crash, are dropped); ``restored_meta``: that checkpoint's meta
    (which replay segments already exist). ``on_eval(step, metrics)`` is called after each
    periodic evaluation's row is written; an exception raised there stops training (no
    checkpoint is written at that step)."""

    def __init__(self, run_dir: Path, run: dict, driver: Driver, settings: Any, until: int, *,
                 progress: bool | None = None, on_eval: Callable | None = None,
                 resume_step: int | None = None, restored_meta: dict | None = None) -> None:
        self.run_dir, self.record, self.driver, self.s = Path(run_dir), run, driver, settings
        self.until, self.on_eval, self.resume_step = until, on_eval, resume_step
        self.unit = STEP_UNITS[driver.unit]
        seeds = driver.seeds
        self.dirs = ([self.run_dir / f"seed_{s}" for s in seeds] if driver.per_seed_folders
                     else [self.run_dir])
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        stores = (restored_meta or {}).get("stores") or {}
        self.writers: dict[str, SegmentWriter] = {}
        self._stores_seen = stores if isinstance(stores, dict) else {}
        self.best = rf.read_best(self.run_dir)
        self.last_eval: tuple[int, list[dict]] | None = None  # (step, per-seed stats)
        self.last_metrics: list[dict] = [{} for _ in seeds]

    # ------------------------------------------------------------------ checkpoints
    def _writer(self, name: str) -> SegmentWriter:
        if name not in self.writers:
            self.writers[name] = SegmentWriter(self.run_dir / name, name,
                                               self._stores_seen.get(name))
        return self.writers[name]

    def _save(self, folder: str, step: int) -> None:
        snap = self.driver.snapshot()
        check_arrays(snap.arrays, step, unit=self.unit)  # never write a diverged state
        best = folder == "best"  # the best policy; resuming always uses checkpoints/
        stores = {} if best else snap.stores
        save_checkpoint(self.run_dir / folder, algo=self.record["algo"], step=step,
                        arrays=snap.arrays, meta=snap.meta,
                        keep=1 if best else self.s.keep_checkpoints, stores=stores,
                        writers={n: self._writer(n) for n in stores})

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, episodes: int) -> list[dict]:
        # a driver may add its own eval/ fields (the offline driver: normalised scores)
        return [{**rf.eval_stats(r["returns"], r.get("lengths")), **r.get("extra", {})}
                for r in self.driver.evaluate(episodes)]

    def _periodic_eval(self, step: int) -> tuple[list[dict], dict]:
        """Evaluate every seed, keep the best checkpoint by the mean over seeds; returns the
        per-seed stats and the metrics handed to ``on_eval``."""
        t0 = time.perf_counter()
        per_seed = self._evaluate(self.s.eval_episodes)
        self.last_eval = (step, per_seed)
        means = [e["eval/return_mean"] for e in per_seed]
        m = {"eval/return_mean": float(np.mean(means)),
             "eval/return_std": (per_seed[0]["eval/return_std"] if len(per_seed) == 1
                                 else float(np.std(means)))}
        if len(per_seed) == 1 and per_seed[0]["eval/length_mean"] is not None:
            m["eval/length_mean"] = per_seed[0]["eval/length_mean"]
        if len(per_seed) == 1:
            m.update({k: v for k, v in per_seed[0].items()
                      if k.startswith("eval/normalized_score")})
        if self.s.keep_best and (self.best is None or
                                 m["eval/return_mean"] > self.best["eval/return_mean"]):
            self._save("best", step)
            self.best = {"step": step, "eval/return_mean": m["eval/return_mean"],
                         "eval/episodes": per_seed[0]["eval/episodes"]}
            rf.write_best(self.run_dir, self.best)
        if self.best is not None:
            m["eval/best_return"] = self.best["eval/return_mean"]
        m["time/eval_s"] = time.perf_counter() - t0
        return per_seed, m

    # ------------------------------------------------------------------ the loop
    def run(self) -> tuple[list[dict], dict | None]:
        """Train to ``until``; returns (per-seed summaries, aggregate summary or None)."""
        d, s = self.driver, self.s
        start, t0 = d.step, time.perf_counter()
        compile0, eval_s = d.compile_s, 0.0
        sinks = [(CSVSink(p / "metrics.csv", self.resume_step),
                  TensorBoardSink(p / "tb", self.resume_step)) for p in self.dirs]
        label = self.record["algo"] + (f" x{len(d.seeds)}" if len(d.seeds) > 1 else "")
        bar = Progress(self.until, start, self.progress, label)
        mark = {"step": start, "t": t0, "compile": compile0, "info": ""}

        def tick(step: int) -> None:
            dt = time.perf_counter() - mark["t"] - (d.compile_s - mark["compile"])
            bar.update(step, (step - mark["step"]) / max(dt, 1e-9), mark["info"])

        control = Control(self.until, tick, max(1, min(s.log_every, 200)))
        try:
            with _stop_on_interrupt(control):
                while d.step < self.until:
                    step = d.step
                    target = min(x for x in (next_multiple(step, s.log_every),
                                             next_multiple(step, s.eval_every),
                                             next_multiple(step, s.checkpoint_every),
                                             self.until) if x is not None)
                    d.advance(target, control)
                    new = d.step
                    eval_due = crossed(step, new, s.eval_every)
                    if crossed(step, new, s.log_every) or eval_due or new >= self.until:
                        eval_s += self._log(new, eval_due, sinks, bar, mark)
                    if crossed(step, new, s.checkpoint_every) and new < self.until:
                        self._save("checkpoints", new)
                    if control.stop:
                        break
            wall = time.perf_counter() - t0  # the loop's time, without the final checkpoint
            self._save("checkpoints", d.step)
        except TandemError as exc:  # e.g. the env returned NaN: say what was kept
            d.close()
            raise type(exc)(f"{exc}. {rf.kept_message(self.run_dir)}") from None
        except BaseException:
            d.close()
            raise
        finally:
            bar.close()
            for csv_sink, tb_sink in sinks:
                csv_sink.close()
                tb_sink.close()
        if control.stop:
            d.close()
            raise TrainingInterrupted(f"interrupted at step {d.step}; a checkpoint was written "
                                      f"there: continue with `tandem resume {self.run_dir}`")
        train_s = max(wall - eval_s - (d.compile_s - compile0), 1e-9)
        if self.last_eval is not None and self.last_eval[0] == d.step:
            final = self.last_eval[1]  # the final evaluation is the one just done here
        else:
            final = (self._evaluate(s.eval_episodes) if s.eval_episodes else
                     [rf.eval_stats([], None) for _ in d.seeds])
        extra = d.summary(wall)
        backend = extra.pop("jax_backend", None)
        d.close()  # after the evaluation: it may run on the training instance
        return self._summaries(start, final, train_s, wall, extra, backend,
                               d.compile_s - compile0)

    def _log(self, step: int, eval_due: bool, sinks: list, bar: Progress, mark: dict) -> float:
        """One log line per seed at ``step`` (with an evaluation if due); returns the seconds
        the evaluation took."""
        d = self.driver
        per_seed_metrics = d.metrics()
        multi = len(d.seeds) > 1 or d.per_seed_folders
        for seed, m in zip(d.seeds, per_seed_metrics):
            check_metrics(m, step, f" (seed {seed})" if len(d.seeds) > 1 else "", self.unit)
        now = time.perf_counter()
        dt = now - mark["t"] - (d.compile_s - mark["compile"])
        sps = (step - mark["step"]) / max(dt, 1e-9)
        ev, eval_s = None, 0.0
        if eval_due:
            per_seed, ev = self._periodic_eval(step)
            eval_s = ev["time/eval_s"]
        for i, ((csv_sink, tb_sink), m) in enumerate(zip(sinks, per_seed_metrics)):
            row = {k: v for k, v in m.items() if k not in _NOT_LOGGED}
            row["time/sps"] = sps
            if ev is not None:
                if multi:
                    row.update({"eval/return_mean": per_seed[i]["eval/return_mean"],
                                "eval/return_std": per_seed[i]["eval/return_std"],
                                "time/eval_s": eval_s})
                    if "eval/best_return" in ev:  # of the seeds' mean, as best/ holds
                        row["eval/best_return_seed_mean"] = ev["eval/best_return"]
                else:
                    row.update(ev)
            csv_sink.write(step, row)
            tb_sink.write(step, row)
            if i == 0:
                bar.line(step, row)
        self.last_metrics = per_seed_metrics
        ret = per_seed_metrics[0].get("rollout/ep_return_mean")
        mark.update(step=step, t=time.perf_counter(), compile=d.compile_s,
                    info=f"return {ret:.1f}" if ret is not None else mark["info"])
        bar.update(step, sps, mark["info"])
        if ev is not None and self.on_eval is not None:  # after the row: it may stop training
            self.on_eval(step, ev)
        return eval_s

    def _summaries(self, start: int, final: list[dict], train_s: float, wall: float,
                   extra: dict, backend: str | None, compile_s: float
                   ) -> tuple[list[dict], dict | None]:
        d, run = self.driver, self.record
        versions = rf.versions()
        steps_done = d.step - start
        summaries = []
        for i, seed in enumerate(d.seeds):
            last = self.last_metrics[i]
            summary = {"algo": run["algo"], "env": run["env"], "seed": seed, "steps": d.step,
                       "step_unit": d.unit, "version": versions["tandem"], **final[i],
                       "time/sps": steps_done / train_s, "time/wall_s": wall,
                       "rollout/episodes": int(last.get("rollout/episodes", 0)),
                       "rollout/ep_return_mean": last.get("rollout/ep_return_mean"),
                       "resumed_from": self.resume_step, "best": self.best, **extra}
            if d.per_seed_folders:
                summary["path"] = run.get("path", "compiled")
            else:
                summary.update(versions=versions,
                               machine=rf.machine_info(backend))
            rf.write_summary(self.dirs[i], summary)
            summaries.append(summary)
        agg = None
        if d.per_seed_folders:
            agg = rf.aggregate(summaries)
            agg.update({"path": run.get("path", "compiled"), "time/sps": steps_done / train_s,
                        "time/sps_total": len(d.seeds) * steps_done / train_s,
                        "time/compile_s": compile_s, "time/wall_s": wall,
                        "versions": versions,
                        "machine": rf.machine_info(backend)})
            rf.write_summary(self.run_dir, agg)
        r = summaries[0]
        log.info("done: %d steps, eval return %s over %d episodes, %.1f steps/s -> %s",
                 d.step, "n/a" if r["eval/return_mean"] is None else
                 f"{r['eval/return_mean']:.2f} +- {r['eval/return_std']:.2f}",
                 r["eval/episodes"], r["time/sps"], self.run_dir)
        return summaries, agg


@contextlib.contextmanager
def _stop_on_interrupt(control: Control):
    """First Ctrl-C: finish the current step, checkpoint, stop. Second: abort at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        control.stop = True
        log.warning("interrupt: stopping after this step and writing a checkpoint "
                    "(press Ctrl-C again to abort without one)")
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def each_seed(out: Path, seeds: list[int], train_one: Callable[[int, Path, bool], Any]
              ) -> tuple[list[Any], dict]:
    """Per-seed fan-out for drivers that train one seed at a time: ordinary run folders
    ``out/seed_<s>`` one after another (``train_one(seed, folder, first)`` returns a Run),
    then the across-seed aggregate in ``out/summary.json``."""
    runs = [train_one(s, Path(out) / f"seed_{s}", i == 0) for i, s in enumerate(seeds)]
    agg = rf.aggregate([r.summary for r in runs])
    agg["path"] = "host"
    agg["time/sps"] = float(np.mean([r.summary["time/sps"] for r in runs]))
    rf.write_summary(Path(out), agg)
    return runs, agg
