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
          choices: tuple | None = None, optional: bool = False, compiled: bool = True) -> Any:
    """A config field: default, one-line doc, and bounds checked at construction.

    ``compiled=False`` marks a field that does not change the functions an algorithm builds
    (how many transitions are sampled, when training starts, ...): configs that differ only in
    such fields and in their :class:`Settings` share one compilation (:meth:`compile_key`).
    """
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices,
            "optional": optional, "compiled": compiled}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata=meta)


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


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a run is driven, the same record for every algorithm and every driver: when the
    session logs, evaluates and checkpoints (in the driver's step unit), and where Ray
    workers run. Composed into each config as ``cfg.settings``; on the command line, in
    ``config.json`` and in the Python constructor its fields stay flat (``--log-every``,
    ``SACConfig(log_every=...)``). None of them changes an algorithm's compiled functions.
    An algorithm changes a default with ``settings_defaults`` beside its config."""

    eval_episodes: int = param(10, "deterministic episodes per evaluation (periodic and final)",
                               ge=0)
    eval_every: int = param(0, "steps between evaluations during training, on a separate env "
                            "instance, at the first step the driver reaches at or past each "
                            "multiple (0: only the final evaluation)", ge=0)
    keep_best: bool = param(True, "with eval_every, keep the checkpoint with the best "
                            "evaluation return in best/ (tandem.load(run, best=True))")
    log_every: int = param(1000, "steps between metric log lines", ge=1)
    checkpoint_every: int = param(10_000, "steps between checkpoints (0: only at the end)",
                                  ge=0)
    keep_checkpoints: int = param(3, "how many recent checkpoints to keep", ge=1)
    workers: int = param(0, "Ray rollout workers, each a process stepping its own envs "
                         "(0: the learner steps its envs itself)", ge=0)
    ray_address: str | None = param(None, "Ray cluster for the workers: an address such as "
                                    "'auto' or 'ray://head:10001' (None: a local Ray started "
                                    "by tandem)", optional=True)
    worker_cpus: float = param(0.25, "CPUs Ray reserves per worker; workers that mostly wait on "
                               "a slow simulator need little, so several may share a core",
                               gt=0.0)


SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Settings))


class _ConfigMeta(type):
    """Lets a config be built flat: ``SACConfig(log_every=100)`` puts ``log_every`` into the
    composed :class:`Settings`. Names an unknown keyword with the closest field
    (``SACConfig(actor_lrr=...)``) as a ConfigError, as the command line does, instead of
    Python's bare TypeError."""

    def __call__(cls, *args: Any, **kwargs: Any):
        names = cls.field_names()
        for key in kwargs:
            if key not in names and key != "settings":
                raise cls.unknown_field_error(key)
        flat = {k: kwargs.pop(k) for k in SETTINGS_FIELDS if k in kwargs}
        base = kwargs.pop("settings", None)
        if base is None:
            base = cls.default_settings()
        elif not isinstance(base, Settings):
            raise ConfigError(f"{cls.__name__}.settings must be a tandem.config.Settings, got "
                              f"{type(base).__name__}")
        kwargs["settings"] = dataclasses.replace(base, **flat) if flat else base
        return super().__call__(*args, **kwargs)


def _check_value(name: str, f: dataclasses.Field, tp: Any, value: Any) -> None:
    """ConfigError naming ``name`` (Config.field) if ``value`` does not fit field ``f``."""
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


def _own_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name != "settings"]


@dataclasses.dataclass(frozen=True)
class Config(metaclass=_ConfigMeta):
    """Base of all algorithm configs. Subclasses set ``algo`` and declare fields with param();
    ``settings`` holds the run settings (:class:`Settings`), read flat as ``cfg.log_every``."""

    algo: ClassVar[str] = "base"
    # What `tandem tune` searches, declared beside each algorithm's config: field -> Search.
    search_space: ClassVar[dict[str, Search]] = {}
    # This algorithm's defaults of Settings fields (merged along the class hierarchy).
    settings_defaults: ClassVar[dict[str, Any]] = {}
    # Fields added after run folders were first written, with the behaviour tandem had before
    # them: a run folder's config.json without such a field was written when tandem behaved as
    # the value says, so loading or resuming it continues that run as it was.
    run_folder_defaults: ClassVar[dict[str, Any]] = {}
    # the field counting an offline algorithm's first stage (fitting a model before the
    # policy trains), part of --steps; None: no such stage
    stage_steps_field: ClassVar[str | None] = None

    settings: Settings = dataclasses.field(default=None, metadata={"doc": "run settings"})

    def __post_init__(self) -> None:
        if self.settings is None:  # dataclasses.replace and pickling bypass the metaclass
            object.__setattr__(self, "settings", type(self).default_settings())
        hints = typing.get_type_hints(type(self))
        for f in _own_fields(type(self)):
            _check_value(f"{type(self).__name__}.{f.name}", f, hints[f.name],
                         getattr(self, f.name))
        s_hints = typing.get_type_hints(Settings)
        for f in dataclasses.fields(Settings):
            _check_value(f"{type(self).__name__}.{f.name}", f, s_hints[f.name],
                         getattr(self.settings, f.name))
        if self.settings.eval_every and not self.settings.eval_episodes:
            raise ConfigError(f"{type(self).__name__}: eval_every={self.settings.eval_every} "
                              "needs eval_episodes >= 1")

    def __getattr__(self, name: str) -> Any:
        """Settings fields read flat: ``cfg.log_every`` is ``cfg.settings.log_every``."""
        if name in SETTINGS_FIELDS:
            return getattr(self.__dict__["settings"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def default_settings(cls) -> Settings:
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(klass.__dict__.get("settings_defaults", {}))
        return Settings(**merged)

    # ---------------------------------------------------------------- conversion
    def to_dict(self) -> dict[str, Any]:
        """Every field flat, settings included (what config.json and the CLI spell)."""
        out = {}
        for f in _own_fields(type(self)):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        for f in dataclasses.fields(Settings):
            out[f.name] = getattr(self.settings, f.name)
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in _own_fields(cls)] + list(SETTINGS_FIELDS)

    @classmethod
    def _field(cls, key: str) -> tuple[dataclasses.Field, Any]:
        """(field, type annotation) of a flat field name."""
        owner = Settings if key in SETTINGS_FIELDS else cls
        f = next(f for f in dataclasses.fields(owner) if f.name == key)
        return f, typing.get_type_hints(owner)[key]

    @classmethod
    def unknown_field_error(cls, key: str) -> ConfigError:
        close = difflib.get_close_matches(key, cls.field_names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else \
            f"; valid fields: {', '.join(cls.field_names())}"
        return ConfigError(f"unknown {cls.algo} config field '{key}'{hint}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        kwargs = {}
        for key, value in data.items():
            if key not in cls.field_names():
                raise cls.unknown_field_error(key)
            base, _ = _base_type(cls._field(key)[1])
            if typing.get_origin(base) is tuple and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def parse_value(cls, key: str, text: str) -> Any:
        """Parse a command-line string for field ``key`` according to its type."""
        if key not in cls.field_names():
            raise cls.unknown_field_error(key)
        base, optional = _base_type(cls._field(key)[1])
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
            if key not in self.field_names() and key != "settings":
                raise self.unknown_field_error(key)
        flat = {k: changes.pop(k) for k in SETTINGS_FIELDS if k in changes}
        settings = changes.pop("settings", self.settings)
        own = {f.name: getattr(self, f.name) for f in _own_fields(type(self))}
        return type(self)(**{**own, **changes}, settings=dataclasses.replace(settings, **flat))

    def compile_key(self) -> "Config":
        """This config with every field that does not shape the compiled functions at its
        default (settings, and fields declared with ``compiled=False``): a cache key for the
        algorithm builders, so that such configs share one compilation."""
        defaults = type(self)()
        host = {f.name: getattr(defaults, f.name) for f in _own_fields(type(self))
                if not f.metadata.get("compiled", True)}
        return self.replace(settings=defaults.settings, **host)

    @classmethod
    def describe(cls) -> str:
        lines = []
        defaults = cls.default_settings()
        for key in cls.field_names():
            f, tp = cls._field(key)
            default = getattr(defaults, key) if key in SETTINGS_FIELDS else f.default
            rng = _range_text(f.metadata)
            extra = f" [{rng}]" if rng else ""
            if f.metadata.get("choices"):
                extra = f" [one of {', '.join(map(str, f.metadata['choices']))}]"
            tname = getattr(tp, "__name__", str(tp))
            lines.append(f"  --{key.replace('_', '-')} ({tname}, default {default!r}){extra}: "
                         f"{f.metadata.get('doc', '')}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(Config):
    """Fields shared by every replay-based algorithm (SAC, DroQ, TD3, DDPG)."""

    gamma: float = param(0.99, "discount factor", ge=0.0, le=1.0)
    tau: float = param(0.005, "polyak coefficient of the target networks", gt=0.0, le=1.0)
    batch_size: int = param(256, "transitions per gradient step", ge=1, compiled=False)
    buffer_size: int = param(1_000_000, "replay buffer capacity (transitions)", ge=1,
                             compiled=False)
    learning_starts: int = param(1000, "steps of uniform random actions before learning",
                                 ge=0, compiled=False)
    train_freq: int = param(1, "env steps between two training calls", ge=1, compiled=False)
    gradient_steps: int = param(1, "gradient steps per training call, fused in one jitted "
                                "scan (update-to-data ratio = gradient_steps / train_freq)",
                                ge=1, compiled=False)
    hidden_sizes: tuple[int, ...] = param((256, 256), "hidden layer widths of actor and critics "
                                          "(simbav2: equal widths, one block per entry)")
    activation: str = param("relu", "hidden activation", choices=("relu", "tanh", "elu", "gelu",
                                                                  "silu"))
    network: str = param("mlp", "network of actor and critics: plain MLP or SimbaV2-style "
                         "hyperspherical blocks", choices=("mlp", "simbav2"))
    max_grad_norm: float | None = param(None, "clip gradients to this global norm (None: off)",
                                        gt=0.0, optional=True)
    normalize_obs: bool = param(False, "normalise observations with running statistics "
                                "(saved with the policy)", compiled=False)
    worker_steps: int = param(64, "env steps a worker takes per request (with --workers)",
                              ge=1, compiled=False)

    settings_defaults: ClassVar[dict[str, Any]] = {"log_every": 1000,
                                                   "checkpoint_every": 10_000}

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"{name}.batch_size={self.batch_size} exceeds buffer_size="
                              f"{self.buffer_size}: lower batch_size or raise buffer_size")
        if self.network == "simbav2" and len(set(self.hidden_sizes)) != 1:
            raise ConfigError(f"{name}.hidden_sizes={self.hidden_sizes}: network=simbav2 needs "
                              "equal widths (one residual block per entry), e.g. 256x256")
