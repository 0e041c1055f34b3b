"""A small NumPy-only driver (no JAX, no Gymnasium) for the run-layer tests: it shows what a
new execution path has to provide to get logging, evaluation, checkpoints with replay
segments, exact resume, Ctrl-C and summaries from the one session.

The "env" is a 1-D point x pushed by the action, reward -x^2; the "agent" keeps a replay
ring buffer of (x, action, reward) rows and a gain w that a noisy rule moves towards
stabilising the point. Everything random comes from one NumPy generator, checkpointed.
"""

from __future__ import annotations

import os
import signal

import numpy as np

from tandem.core.spaces import EnvSpec
from tandem.run.checkpoint import Segmented, Snapshot
from tandem.run.driver import Control
from tandem.run.results import Policy

SPEC = EnvSpec.box(1, 1, low=-1.0, high=1.0, env_id="fake")


def _act(params, obs_stats, obs):
    return np.tanh(-params * np.asarray(obs))  # [N, 1]


class FakeDriver:
    unit = "env_steps"
    per_seed_folders = False
    compile_s = 0.0

    def __init__(self, seed: int, capacity: int = 64, interrupt_at: int | None = None) -> None:
        self.seeds = [seed]
        self.capacity = capacity
        self.interrupt_at = interrupt_at  # send ourselves SIGINT (Ctrl-C) at this step

    # ------------------------------------------------------------------ Driver
    @property
    def step(self) -> int:
        return self.t

    @property
    def state(self):
        return self.w

    def start(self) -> None:
        self.rng = np.random.default_rng(self.seeds[0])
        self.w, self.x, self.t, self.count = 0.1, 0.5, 0, 0
        self.rows = np.zeros((self.capacity, 3), np.float64)
        self.episode_return, self.returns, self.loss = 0.0, [], 0.0

    def restore(self, meta: dict, arrays: dict, source: str) -> None:
        self.start()
        h = meta["host"]
        self.rng.bit_generator.state = h["rng"]
        self.w, self.x, self.t = float(arrays["state/w"]), float(arrays["host/x"]), h["t"]
        self.episode_return, self.returns = h["episode_return"], list(h["returns"])
        store = meta["stores"]["replay"]
        self.count = store["count"]
        rows = arrays["replay/rows"]
        self.rows[np.arange(self.count - len(rows), self.count) % self.capacity] = rows

    def advance(self, until: int, control: Control) -> None:
        while self.t < until:
            a = float(_act(self.w, None, [self.x])[0]) + 0.1 * self.rng.normal()
            self.x = float(np.clip(self.x + 0.5 * a, -2, 2))
            r = -self.x ** 2
            self.rows[self.count % self.capacity] = (self.x, a, r)
            self.count += 1
            self.episode_return += r
            # learn: a noisy step of w towards larger gains on recent rows
            sample = self.rows[self.rng.integers(0, min(self.count, self.capacity), 8)]
            self.loss = float(np.mean(sample[:, 2]))
            self.w += 0.01 * (1.0 + 0.1 * self.rng.normal())
            self.t += 1
            if self.t % 20 == 0:  # episodes of 20 steps
                self.returns.append(self.episode_return)
                self.episode_return, self.x = 0.0, float(self.rng.uniform(-1, 1))
            if self.t == self.interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C
            if self.t % control.tick_every == 0:
                control.tick(self.t)
            if control.stop:
                return

    def metrics(self) -> list[dict]:
        m = {"train/loss": self.loss, "train/w": self.w, "rollout/episodes": len(self.returns)}
        if self.returns:
            m["rollout/ep_return_mean"] = float(np.mean(self.returns[-5:]))
        return [m]

    def evaluate(self, episodes: int) -> list[dict]:
        returns = []
        for i in range(episodes):
            x, total = 0.2 * (i + 1), 0.0
            for _ in range(20):
                x = float(np.clip(x + 0.5 * float(_act(self.w, None, [x])[0]), -2, 2))
                total -= x ** 2
            returns.append(total)
        return [{"returns": returns, "lengths": [20] * episodes}]

    def snapshot(self) -> Snapshot:
        arrays = {"state/w": np.asarray(self.w), "host/x": np.asarray(self.x)}
        meta = {"host": {"rng": self.rng.bit_generator.state, "t": self.t,
                         "episode_return": self.episode_return, "returns": self.returns}}

        def rows(a: int, b: int) -> dict:
            return {"rows": self.rows[np.arange(a, b) % self.capacity]}
        return Snapshot(arrays, meta, {"replay": Segmented(self.count, self.capacity, rows)})

    def policy(self, index: int = 0) -> Policy:
        return Policy("fake", self.w, None, SPEC, _act)

    def summary(self, wall_s: float) -> dict:
        return {}

    def close(self) -> None:
        pass
