"""User-facing errors.

Every mistake a user can make (a bad config value, an env tandem cannot drive, a missing or
foreign checkpoint) raises a subclass of :class:`TandemError` with a message that names what
was wrong and what to do. The CLI turns these into one line on stderr and exit code 2.
"""

from __future__ import annotations


class TandemError(Exception):
    """Base class of errors caused by user input, not by a bug in tandem."""


class ConfigError(TandemError, ValueError):
    """A configuration field has a bad value or does not exist."""


class EnvError(TandemError):
    """The environment cannot be used by the chosen algorithm, or misbehaved."""


class CheckpointError(TandemError):
    """A checkpoint or run folder is missing, corrupt, or from something else."""


class DatasetError(TandemError):
    """An offline dataset is missing, corrupt, empty, or does not fit its env."""


class ExportError(TandemError):
    """A policy cannot be exported (unsupported space or network, missing extra)."""


class TrainingInterrupted(TandemError):
    """Training was stopped by the user (Ctrl-C); a checkpoint was written first."""


class TrainingDiverged(TandemError):
    """A loss or a parameter became NaN or infinite; training stopped before writing it."""
