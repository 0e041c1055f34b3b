"""The Driver protocol: what every execution path gives the one training session.

A driver owns an execution path's loop and state (the Gymnasium host loops, the compiled
whole-loop program, the Ray learners): it advances, and it can say what it has. It decides
nothing about a run's lifecycle. The session (``tandem.run.session``) alone decides when to
log, evaluate, checkpoint and stop, writes every file, handles Ctrl-C and the divergence
guard, and fans out per seed.

A driver's life: built by the API with its config, env and seeds; then ``start()`` (fresh
state from the seeds) or ``restore(meta, arrays, source)`` (from a checkpoint); then
``advance(until, control)`` repeatedly, with ``metrics()``, ``evaluate()``, ``snapshot()``
and ``policy()`` between advances; ``close()`` at the end.

Steps count in the driver's ``unit`` (``STEP_UNITS``): env steps for the drivers so far;
frames after action repeat, joint steps of several agents, gradient steps of an offline
learner, or env turns of a text env for the coming ones. ``--steps``, ``learning_starts``,
``eval_every`` and ``checkpoint_every`` count in it, and summary.json names it.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from tandem.run.checkpoint import Snapshot

# step unit -> how one of them is named in messages
STEP_UNITS = {"env_steps": "env step", "frames": "frame", "joint_steps": "joint step",
              "gradient_steps": "gradient step", "env_turns": "env turn"}


class Control:
    """What the session tells a driver while it advances.

    ``stop``: set on Ctrl-C; the driver returns at the end of the step it is in.
    ``total``: the step the run trains to (on-policy learners anneal their learning rate
    over it). ``tick(step)``: report progress (cheap; the session shows it on the terminal),
    called every ``tick_every`` steps or so."""

    def __init__(self, total: int, tick: Callable[[int], None] | None = None,
                 tick_every: int = 200) -> None:
        self.stop = False
        self.total = total
        self.tick_every = max(1, tick_every)
        self._tick = tick

    def tick(self, step: int) -> None:
        if self._tick is not None:
            self._tick(step)


class Driver(Protocol):
    """One execution path. Lists (per seed) have one entry for each of ``seeds``."""

    unit: str                 # a key of STEP_UNITS
    seeds: list[int]
    per_seed_folders: bool    # vmapped seeds: metrics and summaries go to seed_<s>/
    compile_s: float          # seconds spent compiling so far (kept out of time/sps)

    @property
    def step(self) -> int:
        """Steps taken so far (every seed is at the same step)."""

    @property
    def state(self) -> Any:
        """The algorithm state, for Python users (``Run.state``)."""

    def start(self) -> None:
        """Fresh state from the seeds."""

    def restore(self, meta: dict, arrays: dict, source: str) -> None:
        """The state of a checkpoint (``source`` names it in errors, CheckpointError)."""

    def advance(self, until: int, control: Control) -> None:
        """Train to step ``until`` (a driver that moves in whole rollouts or updates may pass
        it) or until ``control.stop``."""

    def metrics(self) -> list[dict[str, float]]:
        """Per seed, the ``train/`` and ``rollout/`` metrics since the last call."""

    def evaluate(self, episodes: int) -> list[dict]:
        """Per seed, deterministic episodes of the current policy on a separate env
        instance: ``{"returns": [...], "lengths": [...] or None}``."""

    def snapshot(self) -> Snapshot:
        """Everything a checkpoint needs to continue exactly: arrays, JSON meta, and the
        replay buffers as segmented stores."""

    def policy(self, index: int = 0) -> Any:
        """The deployable :class:`tandem.run.results.Policy` of seed ``index``."""

    def summary(self, wall_s: float) -> dict:
        """Extra fields for every seed's summary.json (time split, worker restarts, ...)."""

    def close(self) -> None:
        """Release envs, worker processes and pools."""
