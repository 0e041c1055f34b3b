"""Typed, validated, frozen configuration dataclasses.

Each algorithm declares one ``Config`` subclass whose fields are made with :func:`param`, which
records a one-line doc and the valid range. Validation runs in ``__post_init__`` and names the
field, the bad value and the accepted range, so a typo never reaches JAX.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, ClassVar

from tandem.errors import ConfigError


def param(default: Any, doc: str, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None,
          choices: tuple | None = None, optional: bool = False) -> Any:
    """A config field: default, one-line doc, and bounds checked at construction."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices,
            "optional": optional}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata=meta)


def ray_param(which: str) -> Any:
    """The Ray fields of configs that can run rollout workers (IMPALA, the off-policy family):
    ``"address"`` (which cluster) or ``"cpus"`` (what each worker reserves)."""
    if which == "address":
        return param(None, "Ray cluster for the workers: an address such as 'auto' or "
                     "'ray://head:10001' (None: a local Ray started by tandem)", optional=True)
    return param(0.25, "CPUs Ray reserves per worker; workers that mostly wait on a slow "
                 "simulator need little, so several may share a core", gt=0.0)


@dataclasses.dataclass(frozen=True)
class Search:
    """One hyperparameter's search range for ``tandem tune`` (see :func:`log_uniform`,
    :func:`uniform`, :func:`choice`)."""

    kind: str  # "log" | "uniform" | "choice"
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()


def log_uniform(low: float, high: float) -> Search:
    """A float sampled uniformly in log space (learning rates, entropy coefficients)."""
    return Search("log", float(low), float(high))


def uniform(low: float, high: float) -> Search:
    return Search("uniform", float(low), float(high))


def choice(*values: Any) -> Search:
    """One of ``values`` (numbers, strings, booleans, None or tuples such as layer widths)."""
    return Search("choice", choices=tuple(values))


def _range_text(m: dict) -> str:
    lo = f"> {m['gt']}" if m["gt"] is not None else (f">= {m['ge']}" if m["ge"] is not None else "")
    hi = f"< {m['lt']}" if m["lt"] is not None else (f"<= {m['le']}" if m["le"] is not None else "")
    return " and ".join(t for t in (lo, hi) if t)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(underlying type, is_optional) for annotations like ``float | None``."""
    args = typing.get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


class _ConfigMeta(type):
    """Names an unknown keyword with the closest field (``SACConfig(actor_lrr=...)``) as a
    ConfigError, as the command line does, instead of Python's bare TypeError."""

    def __call__(cls, *args: Any, **kwargs: Any):
        names = cls.field_names()
        for key in kwargs:
            if key not in names:
                raise cls.unknown_field_error(key)
        return super().__call__(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class Config(metaclass=_ConfigMeta):
    """Base of all algorithm configs. Subclasses set ``algo`` and declare fields with param()."""

    algo: ClassVar[str] = "base"
    # What `tandem tune` searches, declared beside each algorithm's config: field -> Search.
    search_space: ClassVar[dict[str, Search]] = {}

    # Evaluation, the same for every algorithm and both drivers (docs/evaluation.md).
    eval_episodes: int = param(10, "deterministic episodes per evaluation (periodic and final)",
                               ge=0)
    eval_every: int = param(0, "env steps between evaluations during training, on a separate "
                            "env instance (on-policy: after the rollout that reaches each multiple; 0: only "
                            "the final evaluation)", ge=0)
    keep_best: bool = param(True, "with eval_every, keep the checkpoint with the best "
                            "evaluation return in best/ (tandem.load(run, best=True))")

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            self._check_field(f, hints[f.name], getattr(self, f.name))
        if self.eval_every and not self.eval_episodes:
            raise ConfigError(f"{type(self).__name__}: eval_every={self.eval_every} needs "
                              "eval_episodes >= 1")

    def _check_field(self, f: dataclasses.Field, tp: Any, value: Any) -> None:
        name = f"{type(self).__name__}.{f.name}"
        base, optional = _base_type(tp)
        if value is None:
            if optional:
                return
            raise ConfigError(f"{name} must not be None ({f.metadata.get('doc', '')})")
        origin = typing.get_origin(base)
        if origin is tuple:
            if not isinstance(value, tuple) or not value:
                raise ConfigError(f"{name}={value!r}: expected a non-empty tuple such as (256, 256)")
            for v in value:
                if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                    raise ConfigError(f"{name}={value!r}: every entry must be a positive integer")
            return
        if base is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{name}={value!r}: expected true or false")
            return
        if base is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}={value!r}: expected an integer")
        elif base is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name}={value!r}: expected a number")
            if not math.isfinite(value):
                raise ConfigError(f"{name}={value!r}: expected a finite number")
        elif base is str:
            if not isinstance(value, str):
                raise ConfigError(f"{name}={value!r}: expected a string")
        m = f.metadata
        if m.get("choices") is not None and value not in m["choices"]:
            raise ConfigError(f"{name}={value!r}: must be one of {', '.join(map(str, m['choices']))}")
        bad = ((m.get("ge") is not None and value < m["ge"]) or
               (m.get("gt") is not None and value <= m["gt"]) or
               (m.get("le") is not None and value > m["le"]) or
               (m.get("lt") is not None and value >= m["lt"]))
        if bad:
            raise ConfigError(f"{name}={value!r} is out of range: must be {_range_text(m)} "
                              f"({m.get('doc', '')})")

    # ---------------------------------------------------------------- conversion
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def unknown_field_error(cls, key: str) -> ConfigError:
        close = difflib.get_close_matches(key, cls.field_names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            f"; valid fields: {', '.join(cls.field_names())}"
        return ConfigError(f"unknown {cls.algo} config field '{key}'{hint}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in data.items():
            if key not in cls.field_names():
                raise cls.unknown_field_error(key)
            base, _ = _base_type(hints[key])
            if typing.get_origin(base) is tuple and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def parse_value(cls, key: str, text: str) -> Any:
        """Parse a command-line string for field ``key`` according to its type."""
        hints = typing.get_type_hints(cls)
        if key not in cls.field_names():
            raise cls.unknown_field_error(key)
        base, optional = _base_type(hints[key])
        t = text.strip()
        if optional and t.lower() in ("none", "null", ""):
            return None
        try:
            if typing.get_origin(base) is tuple:
                return tuple(int(p) for p in t.replace("x", ",").split(",") if p.strip())
            if base is bool:
                if t.lower() in ("1", "true", "yes", "on"):
                    return True
                if t.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if base is int:
                v = float(t)
                if not v.is_integer():
                    raise ValueError
                return int(v)
            if base is float:
                return float(t)
        except ValueError:
            kind = {bool: "true or false", int: "an integer", float: "a number"}.get(
                base, "comma-separated integers")
            raise ConfigError(f"{cls.__name__}.{key}: cannot read {text!r} as {kind}") from None
        return t

    def replace(self, **changes: Any) -> "Config":
        for key in changes:
            if key not in self.field_names():
                raise self.unknown_field_error(key)
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> str:
        lines = []
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            rng = _range_text(f.metadata)
            extra = f" [{rng}]" if rng else ""
            if f.metadata.get("choices"):
                extra = f" [one of {', '.join(map(str, f.metadata['choices']))}]"
            tname = getattr(hints[f.name], "__name__", str(hints[f.name]))
            lines.append(f"  --{f.name.replace('_', '-')} ({tname}, default {f.default!r}){extra}: "
                         f"{f.metadata.get('doc', '')}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(Config):
    """Fields shared by every replay-based algorithm (SAC, DroQ, TD3, DDPG).

    The drivers (Gymnasium host loop and compiled loop) read these; ``HOST_FIELDS`` do not
    change an algorithm's compiled update, so configs that differ only there share one
    compilation (see :meth:`compile_key`).
    """

    gamma: float = param(0.99, "discount factor", ge=0.0, le=1.0)
    tau: float = param(0.005, "polyak coefficient of the target networks", gt=0.0, le=1.0)
    batch_size: int = param(256, "transitions per gradient step", ge=1)
    buffer_size: int = param(1_000_000, "replay buffer capacity (transitions)", ge=1)
    learning_starts: int = param(1000, "env steps of uniform random actions before learning",
                                 ge=0)
    train_freq: int = param(1, "env steps between two training calls", ge=1)
    gradient_steps: int = param(1, "gradient steps per training call, fused in one jitted "
                                "scan (update-to-data ratio = gradient_steps / train_freq)",
                                ge=1)
    hidden_sizes: tuple[int, ...] = param((256, 256), "hidden layer widths of actor and critics "
                                          "(simbav2: equal widths, one block per entry)")
    activation: str = param("relu", "hidden activation", choices=("relu", "tanh", "elu", "gelu",
                                                                  "silu"))
    network: str = param("mlp", "network of actor and critics: plain MLP or SimbaV2-style "
                         "hyperspherical blocks", choices=("mlp", "simbav2"))
    max_grad_norm: float | None = param(None, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    normalize_obs: bool = param(False, "normalise observations with running statistics "
                                "(saved with the policy)")
    log_every: int = param(1000, "env steps between metric log lines", ge=1)
    checkpoint_every: int = param(10_000, "env steps between checkpoints (0: only at the end)",
                                  ge=0)
    keep_checkpoints: int = param(3, "how many recent checkpoints to keep", ge=1)
    workers: int = param(0, "Ray rollout workers feeding the replay buffer, each stepping its "
                         "own env (0: the learner steps one env itself)", ge=0)
    worker_steps: int = param(64, "env steps a worker takes per request (with --workers)",
                              ge=1)
    ray_address: str | None = ray_param("address")
    worker_cpus: float = ray_param("cpus")

    HOST_FIELDS: ClassVar[tuple[str, ...]] = (
        "batch_size", "buffer_size", "learning_starts", "train_freq", "gradient_steps",
        "normalize_obs", "eval_episodes", "eval_every", "keep_best", "log_every", "checkpoint_every",
        "keep_checkpoints", "workers", "worker_steps", "ray_address", "worker_cpus")

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"{name}.batch_size={self.batch_size} exceeds buffer_size="
                              f"{self.buffer_size}: lower batch_size or raise buffer_size")
        if self.network == "simbav2" and len(set(self.hidden_sizes)) != 1:
            raise ConfigError(f"{name}.hidden_sizes={self.hidden_sizes}: network=simbav2 needs "
                              "equal widths (one residual block per entry), e.g. 256x256")

    def compile_key(self) -> "OffPolicyConfig":
        """This config with every host-only field at its default (a cache key for builders)."""
        defaults = type(self)()
        return self.replace(**{k: getattr(defaults, k) for k in self.HOST_FIELDS})
