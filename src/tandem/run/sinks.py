"""Where a run's metrics go: a long-format CSV, TensorBoard event files, and progress on the
terminal. Only the session writes them (``tandem.run.session``).

Metric names follow the vocabulary ``train/``, ``rollout/``, ``eval/``, ``time/``.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from pathlib import Path

log = logging.getLogger("tandem")


def _whole(row: list[str]) -> bool:
    """A complete (step, name, value) row."""
    if len(row) != 3:
        return False
    try:
        int(row[0]), float(row[2])
    except ValueError:
        return False
    return True


class CSVSink:
    """Long-format CSV (step, name, value): new metrics never break the header, and a resumed
    run drops rows past its checkpoint so the curve has no duplicate steps."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            text = self.path.read_text()
            if not text.endswith("\n"):  # a crash mid-row: the last line is partial
                text = text[: text.rfind("\n") + 1]
            rows = list(csv.reader(text.splitlines()))
            kept = [["step", "name", "value"]] + [r for r in rows[1:]
                                                  if _whole(r) and int(r[0]) <= resume_step]
            with open(self.path, "w", newline="") as fh:
                csv.writer(fh).writerows(kept)
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="")
        self._w = csv.writer(self._fh)
        if new:
            self._w.writerow(["step", "name", "value"])

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._w.writerow([step, name, repr(float(value))])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class TensorBoardSink:
    """Scalar summaries in a TensorBoard event file (tensorboard's writer; no TensorFlow).

    ``resume_step`` (a resume from the checkpoint at that step): the new file starts with
    TensorBoard's restart marker (a ``SessionLog.START`` event at the next step), on which
    TensorBoard drops the events past the checkpoint from the files written before, so the
    steps a crashed session logged after its last checkpoint appear once, not twice (as
    metrics.csv drops its rows past the checkpoint)."""

    def __init__(self, logdir: Path, resume_step: int | None = None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._Event, self._Summary = Event, Summary
        self._writer = EventFileWriter(str(logdir))
        if resume_step is not None:
            self._writer.add_event(Event(wall_time=time.time(), step=int(resume_step) + 1,
                                         session_log=SessionLog(status=SessionLog.START)))
            self._writer.flush()

    def write(self, step: int, metrics: dict[str, float]) -> None:
        values = [self._Summary.Value(tag=k, simple_value=float(v)) for k, v in metrics.items()]
        self._writer.add_event(self._Event(wall_time=time.time(), step=int(step),
                                           summary=self._Summary(value=values)))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class Progress:
    """A rich progress bar (steps/s, ETA, last return) on a terminal; periodic log lines
    otherwise, so CI logs and files stay readable."""

    def __init__(self, total: int, start: int, enabled: bool | None = None,
                 description: str = "train") -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.start = total, start
        self._bar = None
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                       TextColumn, TimeElapsedColumn, TimeRemainingColumn)
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[sps]} steps/s"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, completed=start,
                                            sps="-", info="")

    def update(self, step: int, sps: float, info: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, sps=f"{sps:.0f}", info=info)

    def line(self, step: int, metrics: dict[str, float]) -> None:
        """A plain log line (only when no bar is shown)."""
        if self._bar is not None:
            return
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
        log.info("step %d/%d %s", step, self.total, shown)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _fmt(v: float) -> str:
    if isinstance(v, float) and (abs(v) >= 1e4 or (0 < abs(v) < 1e-3)) and math.isfinite(v):
        return f"{v:.3g}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
