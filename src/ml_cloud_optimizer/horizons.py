"""The forecast horizons, in 5-minute steps, and the one check every entry point applies to them.

The champion is chosen on the headline horizon (one hour ahead), so every leaderboard,
MLflow metric and report keys on it; a run whose horizons leave it out would train every
model and only then fail in evaluation. ``check_horizons`` lets the CLI, the pipeline's
parameters and the training step refuse such a list up front, with one line that says why.

This module imports nothing from the project but ``errors`` (which imports nothing), so
``features`` and the CLI can use it at no cost.
"""

from __future__ import annotations

from collections.abc import Iterable

from ml_cloud_optimizer.errors import UserInputError

__all__ = ["DEFAULT_HORIZONS", "HEADLINE_HORIZON", "PEAK_HORIZON", "check_horizons", "parse_horizons"]

DEFAULT_HORIZONS: tuple[int, ...] = (1, 12)
HEADLINE_HORIZON = 12  # one hour ahead: the champion is chosen on it
PEAK_HORIZON = 12  # peak classifiers warn of a peak within the next hour


def check_horizons(hs: Iterable) -> tuple[int, ...]:
    """``hs`` as sorted, unique whole numbers of steps, or a ``UserInputError`` naming what is wrong.

    Values may arrive as floats or strings (KFP hands numbers over as floats); a value that is
    not a whole number, one below 1, an empty list, or a list without ``HEADLINE_HORIZON`` is
    refused.

    Example:
        >>> check_horizons([12, 1, 12.0])
        (1, 12)
    """
    given = list(hs)
    shown = ",".join(str(h) for h in given)
    try:
        values = [float(h) for h in given]
    except (TypeError, ValueError):
        raise UserInputError(f"horizons {shown}: expected whole numbers of 5-minute steps") from None
    if any(not v.is_integer() for v in values):
        raise UserInputError(f"horizons {shown}: expected whole numbers of 5-minute steps")
    out = tuple(sorted({int(v) for v in values}))
    if out and out[0] < 1:
        raise UserInputError(f"horizons {shown}: steps ahead must be at least 1")
    if HEADLINE_HORIZON not in out:
        raise UserInputError(
            f"horizons {shown}: must include {HEADLINE_HORIZON} (one hour ahead; the champion is chosen on it)"
        )
    return out


def parse_horizons(text: str) -> tuple[int, ...]:
    """A comma-separated list such as ``"1,12"``, checked by ``check_horizons``."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    return check_horizons(parts)
