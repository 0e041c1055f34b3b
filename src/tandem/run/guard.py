"""Divergence guard: stop training when losses or parameters stop being finite, before a
non-finite value reaches a checkpoint.

The session calls :func:`check_metrics` on every log line (the learner's last metrics) and
:func:`check_arrays` on the algorithm state before every checkpoint (periodic, best, final).
A diverged run therefore stops at the first log line or checkpoint after the divergence, with
the step (in the driver's unit), what went non-finite, and (added by the session) the last
good checkpoint.
"""

from __future__ import annotations

import numpy as np

from tandem.errors import TrainingDiverged

# metrics that are NaN by design in some states (no variance to explain)
_MAY_BE_NAN = ("train/explained_variance",)

_ADVICE = ("lower the learning rate, scale the rewards down or clip gradients "
           "(--max-grad-norm)")


def check_metrics(metrics: dict, step: int, where: str = "", unit: str = "env step") -> None:
    """TrainingDiverged if a ``train/`` metric (floats) is NaN or infinite."""
    bad = sorted(k for k, v in metrics.items() if k.startswith("train/") and k not in _MAY_BE_NAN
                 and not np.all(np.isfinite(v)))
    if bad:
        raise TrainingDiverged(f"training diverged{where}: {', '.join(bad[:4])} became "
                               f"non-finite by {unit} {step}; {_ADVICE}")


def check_arrays(arrays: dict, step: int, prefix: str = "state/", where: str = "",
                 unit: str = "env step") -> None:
    """TrainingDiverged if a floating-point array under ``prefix`` holds NaN or inf (called
    before writing a checkpoint, so none is ever written with them)."""
    bad = [k for k, v in arrays.items() if k.startswith(prefix)
           and np.issubdtype(np.asarray(v).dtype, np.floating) and not np.all(np.isfinite(v))]
    if bad:
        raise TrainingDiverged(f"training diverged{where}: parameters or optimiser state "
                               f"({', '.join(sorted(bad)[:3])}) became non-finite by {unit} "
                               f"{step}; not writing them to a checkpoint; {_ADVICE}")
