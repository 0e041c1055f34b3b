"""The compiled driver: N seeds of a JAX-native env (gymnax, Brax) as one program.

The loop itself lives in ``compiled.offpolicy`` / ``compiled.onpolicy`` (pure chunk functions
over one :class:`LoopState` pytree). Here it is jitted and vmapped over the seeds once per
(config, env, number of seeds) and driven chunk by chunk: a chunk ends where the session's
next boundary is, so logging, evaluation and checkpoints happen between chunks. The chunk
length is a traced argument, so each kind of chunk (warm-up, training) compiles once.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import jax
import numpy as np

from tandem.algos import algos_for_action_space, get_algo
from tandem.compiled import offpolicy, onpolicy
from tandem.core.agent import AgentFns
from tandem.core.evaluate import EVAL_SEED_OFFSET
from tandem.core.pytree import flatten_pytree, restore_pytree
from tandem.core.types import ObsStats
from tandem.envs.jaxenv import JaxEnv, make_jax_env
from tandem.errors import CheckpointError, ConfigError, EnvError
from tandem.run.checkpoint import MALFORMED, Segmented, Snapshot, store_meta
from tandem.run.driver import Control
from tandem.run.results import Policy


def check_schedule(cfg) -> None:
    """ConfigError for what the compiled off-policy loop cannot do."""
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


class Program:
    """The jitted, vmapped chunk functions of one (config, env, seeds) and their compile time."""

    def __init__(self, cfg, env: JaxEnv, n_seeds: int) -> None:
        spec = get_algo(cfg.algo)
        if env.space_name not in spec.action_spaces:
            fits = algos_for_action_space(env.space_name, compiled=True)
            wants = ("continuous (Box)" if spec.action_spaces == ("Box",)
                     else " or ".join(spec.action_spaces))
            raise EnvError(f"{cfg.algo.upper()} needs {wants} actions but {env.env_id} has "
                           f"{env.space_name} actions; tandem "
                           f"algorithms for it: {', '.join(fits)}")
        fns: AgentFns = spec.build(cfg, env.spec)
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
            chunk = getattr(self.ct, kind)
            if not self.ct.batched:  # written for one seed: vmap it over the seeds
                chunk = jax.vmap(chunk, in_axes=(0, None))

            def fn(state, n):
                self.traces[kind] += 1
                return chunk(state, n)
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

    def policy(self, ls, i: int) -> Policy:
        """The deployable policy of seed index ``i``."""
        params, stats = self.ct.policy_of(jax.tree_util.tree_map(lambda x: x[i], ls)), None
        if isinstance(params, tuple):  # on-policy: (actor params, observation stats)
            params, stats = params
            if stats is not None:
                stats = ObsStats(np.asarray(stats.mean), np.asarray(stats.std))
        return Policy(self.cfg.algo, params, stats, self.fns.spec, self.fns.act)


@functools.lru_cache(maxsize=8)
def _cached_program(cfg, env_id: str, env_kwargs_json: str, n_seeds: int) -> Program:
    env = make_jax_env(env_id, json.loads(env_kwargs_json) or None)
    return Program(cfg, env, n_seeds)


def program_for(cfg, env: str | JaxEnv, env_kwargs: dict | None, n_seeds: int
                ) -> tuple[JaxEnv, Program]:
    """The (cached) compiled program for ``cfg`` on ``env`` with ``n_seeds`` seeds. Runs that
    differ only in their settings (logging, checkpoints, evaluation) share it."""
    if isinstance(env, JaxEnv):  # a user-built adapter: not cached
        return env, Program(cfg, env, n_seeds)
    key_cfg = cfg.replace(settings=type(cfg).default_settings())
    prog = _cached_program(key_cfg, env, json.dumps(env_kwargs or {}, sort_keys=True), n_seeds)
    return prog.env, prog


def _keys(seeds: list[int]) -> jax.Array:
    return jax.numpy.stack([jax.random.PRNGKey(s) for s in seeds])


_SUMS = ("rollout/episodes_done", "rollout/ep_return_sum")


class CompiledDriver:
    """Seeds vmapped in one program (see the module docstring)."""

    unit = "env_steps"
    per_seed_folders = True

    def __init__(self, cfg, env: str | JaxEnv, seeds: list[int], env_kwargs: dict | None = None
                 ) -> None:
        check_schedule(cfg)
        self.cfg, self.seeds = cfg, list(seeds)
        self.env, self.prog = program_for(cfg, env, env_kwargs, len(self.seeds))
        self.ls: Any = None
        self.step_ = 0
        self._acc: list | None = None  # metrics summed since the last metrics() call

    @property
    def compile_s(self) -> float:
        return self.prog.compile_s

    @property
    def step(self) -> int:
        return self.step_

    @property
    def state(self):
        return self.ls

    def start(self) -> None:
        self.ls = self.prog.init(_keys(self.seeds))
        self.step_ = int(np.asarray(self.ls.step)[0])

    def restore(self, meta: dict, arrays: dict, source: str) -> None:
        template = self.restore_policy(arrays, source)
        if template is not None:
            self.ls = self.ls._replace(buffer=self._restore_buffer(template, self.ls, meta,
                                                                   arrays, source))

    def restore_policy(self, arrays: dict, source: str):
        """The state without its replay buffer (enough to act and evaluate); returns the
        state template when there is a buffer to restore too."""
        template = self.prog.template()
        if not hasattr(template, "buffer"):
            self.ls = restore_pytree(template, arrays, "state", source)
            template = None
        else:
            arrays = dict(arrays)
            arrays.setdefault("state/first", np.zeros(len(self.seeds), bool))  # before issue 14
            self.ls = restore_pytree(template._replace(buffer=None), arrays, "state", source)
        self.step_ = int(np.asarray(self.ls.step)[0])
        return template

    def _restore_buffer(self, template, ls, meta: dict, arrays: dict, source: str) -> dict:
        store = store_meta(meta, "replay")
        capacity = self.cfg.buffer_size
        try:
            if store is not None:
                count = int(np.asarray(ls.step)[0])
                if store["count"] != count or store["capacity"] != capacity:
                    raise ValueError(f"replay count {store['count']} / capacity "
                                     f"{store['capacity']} do not fit step {count} / "
                                     f"buffer_size {capacity}")
                positions, prefix = np.arange(max(0, count - capacity), count) % capacity, "replay"
            else:  # before issue 14: the filled rows inline, in ring order
                size = arrays["state/buffer/obs"].shape[1]
                positions, prefix = np.arange(size), "state/buffer"
            fields = {}
            for name, t in template.buffer.items():
                full = np.zeros(t.shape, t.dtype)  # [S, capacity, ...]
                src = arrays.get(f"{prefix}/{name}")
                if src is None and prefix == "state/buffer" and name in ("truncated", "first"):
                    src = np.zeros((t.shape[0], len(positions)) + t.shape[2:], t.dtype)
                if src is None or src.shape != (t.shape[0], len(positions)) + t.shape[2:] or \
                        src.dtype != t.dtype:
                    raise ValueError(f"replay buffer field '{name}' is missing or has the wrong "
                                     "shape for this run's config")
                full[:, positions] = src
                fields[name] = jax.numpy.asarray(full)
        except MALFORMED as exc:
            raise CheckpointError(f"{source}: {exc}") from None
        return fields

    def advance(self, until: int, control: Control) -> None:
        prog, unit = self.prog, self.prog.unit
        if hasattr(self.ls, "total"):  # on-policy: the learning rate anneals to 0 at the total
            self.ls = self.ls._replace(total=jax.numpy.full_like(self.ls.total, control.total))
        while self.step_ < until and not control.stop:
            step = self.step_
            if step < prog.warmup_steps:
                n = min(until, prog.warmup_steps) - step
                kind, iters = "warmup", n
            elif prog.warmup_steps:  # off-policy: iterations of train_freq steps
                n = until - step
                if n % unit:
                    raise ConfigError(f"steps must end on a training iteration: {until} - "
                                      f"learning_starts is not a multiple of train_freq={unit}")
                kind, iters = "train", n // unit
            else:  # whole rollouts; the last may pass `until`, as on the host path
                iters = -(-(until - step) // unit)
                kind, n = "train", iters * unit
            self.ls, metrics = prog.run(kind, self.ls, iters)
            self._accumulate(jax.device_get(metrics), iters if kind == "train" else 0)
            self.step_ = step + n
            control.tick(self.step_)

    def _accumulate(self, metrics: dict, iters: int) -> None:
        """Sum chunk metrics: learner means weighted by iterations, episode sums as sums."""
        if self._acc is None:
            self._acc = [{"iters": 0, "sums": {}} for _ in self.seeds]
        for i, acc in enumerate(self._acc):
            acc["iters"] += iters
            for k, v in metrics.items():
                w = 1 if k in _SUMS else iters
                acc["sums"][k] = acc["sums"].get(k, 0.0) + float(v[i]) * w

    def metrics(self) -> list[dict]:
        episodes = np.asarray(self.ls.episodes)
        out = []
        for i, acc in enumerate(self._acc or [{"iters": 0, "sums": {}} for _ in self.seeds]):
            m = {k: v / max(acc["iters"], 1) for k, v in acc["sums"].items() if k not in _SUMS}
            done = acc["sums"].get("rollout/episodes_done", 0.0)
            if done:
                m["rollout/ep_return_mean"] = acc["sums"]["rollout/ep_return_sum"] / done
            m["rollout/episodes"] = float(episodes[i])
            out.append(m)
        self._acc = None
        return out

    def evaluate(self, episodes: int) -> list[dict]:
        r = self.prog.evaluate(self.ls, self.seeds, episodes)  # [S, episodes]
        return [{"returns": r[i].tolist(), "lengths": None} for i in range(len(self.seeds))]

    def snapshot(self) -> Snapshot:
        ls, meta = self.ls, {"host": {"step": self.step_, "seeds": self.seeds}}
        if not hasattr(ls, "buffer"):
            return Snapshot(flatten_pytree(ls, "state"), meta)
        arrays = flatten_pytree(ls._replace(buffer=None), "state")
        capacity = self.cfg.buffer_size

        def rows(a: int, b: int) -> dict[str, np.ndarray]:
            pos = np.arange(a, b) % capacity
            return {k: np.asarray(v)[:, pos] for k, v in ls.buffer.items()}
        return Snapshot(arrays, meta, {"replay": Segmented(self.step_, capacity, rows, axis=1)})

    def policy(self, index: int = 0) -> Policy:
        return self.prog.policy(self.ls, index)

    def summary(self, wall_s: float) -> dict:
        return {"jax_backend": jax.default_backend()}

    def close(self) -> None:
        pass
