"""Argument checks every `mlco` command runs first, before any data is generated, read or trained.

argparse already refuses what it can type (``--records abc``) and choices; these refuse what
it cannot: a count below its minimum, a share outside its range, a port, an unknown model
kind, a missing input, an output path of the wrong kind. Each raises ``UserError`` with one
line that names the flag, the value and what is expected; ``mlco`` prints it and exits 2.
They import only the standard library and the model registry, so they cost nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

from ml_cloud_optimizer.cli import UserError
from ml_cloud_optimizer.models.registry import FORECASTERS, family

__all__ = [
    "at_least",
    "existing",
    "existing_dir",
    "fleet_file",
    "is_remote",
    "model_kind",
    "model_kinds",
    "out_dir",
    "port",
    "share",
    "source",
    "timestamp",
]

FLEET_SUFFIXES = (".parquet", ".pq", ".csv")
# Source strings that name a server, not a path (data.traces.prometheus.SCHEMES, kept light here).
REMOTE_PREFIXES = ("prometheus://", "prometheus+http://", "prometheus+https://")


def at_least(value: float | None, flag: str, minimum: float, what: str = "a whole number") -> None:
    """``value`` (None: not given, so fine) is at least ``minimum``."""
    if value is not None and not (math.isfinite(value) and value >= minimum):
        raise UserError(f"{flag} {value}: expected {what} of at least {minimum:g}")


def share(value: float | None, flag: str, *, low: float = 0.0, high: float = 1.0, high_inclusive=False) -> None:
    """``value`` lies in ``(low, high)``, or ``(low, high]`` when ``high_inclusive``."""
    if value is None:
        return
    inside = math.isfinite(value) and low < value and (value <= high if high_inclusive else value < high)
    if not inside:
        interval = f"({low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise UserError(f"{flag} {value}: expected a share in {interval}")


def port(value: int, flag: str = "--port") -> None:
    """A TCP port a server can listen on."""
    if not 0 < value < 65536:
        raise UserError(f"{flag} {value}: expected a TCP port in 1..65535")


def model_kind(kind: str, flag: str) -> str:
    """One forecaster kind of ``models.registry``."""
    if kind not in FORECASTERS:
        raise UserError(f"{flag} {kind}: unknown model kind {kind!r}; known: {', '.join(FORECASTERS)}")
    return kind


def model_kinds(text: str, flag: str = "--models") -> list[str]:
    """A comma-separated list of forecaster kinds to train, each known and trainable by name."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise UserError(f"{flag}: give at least one model kind; known: {', '.join(FORECASTERS)}")
    for kind in kinds:
        model_kind(kind, flag)
        if family(kind) == "ensemble":
            raise UserError(
                f"{flag} {kind}: built from the other models when it wins on validation; not trained by name"
            )
    return kinds


def is_remote(value: str | Path) -> bool:
    """A ``prometheus://`` or ``prometheus+https://`` source string, read over HTTP, not from disk."""
    return isinstance(value, str) and value.lower().startswith(REMOTE_PREFIXES)


def existing(path: str | Path, flag: str) -> Path:
    """An input file or directory that exists (or a remote source string, checked when it is read)."""
    if is_remote(path):
        return Path()
    if not Path(path).exists():
        raise UserError(f"{flag} {path}: no such file or directory")
    return Path(path)


def existing_dir(path: str | Path | None, flag: str, what: str = "directory", hint: str = "") -> None:
    """An input directory that exists (None: not given, so fine); ``hint`` says how to make one."""
    if path is not None and not Path(path).is_dir():
        raise UserError(f"{flag} {path}: no such {what}{f' ({hint})' if hint else ''}")


def source(value: str, flag: str, keywords: tuple[str, ...]) -> None:
    """One of ``keywords`` (``synthetic``, ``warehouse``) or an existing path."""
    if value not in keywords and not is_remote(value) and not Path(value).exists():
        raise UserError(f"{flag} {value}: no such file or directory (nor {' or '.join(map(repr, keywords))})")


def fleet_file(path: str | Path | None, flag: str = "--out") -> None:
    """Where a fleet can be saved: a ``.parquet``/``.pq``/``.csv`` file name, not a directory."""
    if path is None:
        return
    path = Path(path)
    if path.suffix.lower() not in FLEET_SUFFIXES:
        raise UserError(f"{flag} {path}: a fleet is saved as {', '.join(FLEET_SUFFIXES)}; name a file with one")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a directory; name the file to write")


def out_dir(path: str | Path | None, flag: str = "--out") -> None:
    """Where a command writes its files: a directory, or a path not taken by a file."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise UserError(f"{flag} {path}: is a file; name a directory to write into")


def timestamp(text: str | None, flag: str) -> None:
    """An ISO date or timestamp pandas can read."""
    if text is None:
        return
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise UserError(f"{flag} {text}: not a date; give an ISO date such as 2017-01-01 or 2017-01-01T00:00Z")
