"""Fleets on disk: one call reads a saved fleet or any supported trace, one call saves it.

A saved fleet is two files, metrics at ``path`` and entities beside it at
``<stem>.entities<suffix>``, both Parquet (``.parquet``/``.pq``) or CSV (``.csv``) as the
suffix says. Both are written to temporary files first and renamed into place together,
so an interrupted write never leaves half a fleet behind.

Example:
    >>> paths = write_fleet(generate_fleet(10_000), "out/fleet.parquet")  # doctest: +SKIP
    >>> read_fleet("out/fleet.parquet").metrics.shape  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ml_cloud_optimizer.data.schema import ENTITY_COLUMNS, METRIC_COLUMNS, DataValidationError, Fleet, validate_fleet
from ml_cloud_optimizer.data.traces import detect_format, prometheus, read_trace, report_gaps

__all__ = ["CANONICAL", "entities_path", "read_fleet", "report_gaps", "write_fleet"]

CANONICAL = "canonical"
_KINDS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_CSV_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def entities_path(path: str | Path) -> Path:
    """Where the entities of the fleet saved at ``path`` live: ``<stem>.entities<suffix>``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.entities{path.suffix}")


def write_fleet(fleet: Fleet, path: str | Path) -> list[Path]:
    """Validate ``fleet`` and save it as Parquet or CSV, chosen by ``path``'s suffix.

    Returns:
        The metrics path and the entities path, in that order.
    """
    path = Path(path)
    kind = _kind(path)
    fleet = validate_fleet(fleet)
    targets = [path, entities_path(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    temps = [t.with_name(f".{t.name}.{os.getpid()}.tmp") for t in targets]
    try:
        for frame, temp in zip((fleet.metrics, fleet.entities), temps, strict=True):
            if kind == "parquet":
                frame.to_parquet(temp, index=False)
            else:
                frame.to_csv(temp, index=False, date_format=_CSV_TS_FORMAT)
        for temp, target in zip(temps, targets, strict=True):
            os.replace(temp, target)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    return targets


def read_fleet(path: str | Path, fmt: str | None = None, **options) -> Fleet:
    """Read a fleet saved by ``write_fleet`` or any trace ``read_trace`` knows.

    Args:
        path: a saved fleet's metrics file, or a trace file or directory, or a
            ``prometheus://HOST:PORT?...`` source string (``traces.prometheus``).
        fmt: ``"canonical"`` or one of ``traces.FORMATS``; detected when None.
        **options: trace options (see ``ml_cloud_optimizer.data.traces``).

    Returns:
        A validated ``Fleet`` with its gap report.
    """
    if prometheus.is_url(path):
        return read_trace(str(path), fmt or "prometheus", **options)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if fmt is None:
        fmt = CANONICAL if _is_canonical(path) else detect_format(path)
    if fmt != CANONICAL:
        return read_trace(path, fmt, **options)
    if options:
        raise DataValidationError(f"a canonical fleet file takes no options (got {', '.join(sorted(options))})")
    kind = _kind(path)
    side = entities_path(path)
    if not side.is_file():
        raise DataValidationError(f"{side}: entities file missing; write_fleet saves it beside {path.name}")
    metrics = _read_frame(path, kind, METRIC_COLUMNS)
    entities = _read_frame(side, kind, ENTITY_COLUMNS)
    fleet = validate_fleet(Fleet(metrics=metrics, entities=entities, source=str(path)))
    fleet.gaps = report_gaps(fleet.metrics)
    return fleet


def _kind(path: Path) -> str:
    kind = _KINDS.get(path.suffix.lower())
    if kind is None:
        raise DataValidationError(f"{path}: unsupported suffix {path.suffix!r}; use one of {', '.join(_KINDS)}")
    return kind


def _is_canonical(path: Path) -> bool:
    """A Parquet file, or a CSV whose header holds every canonical metric column."""
    kind = _KINDS.get(path.suffix.lower()) if path.is_file() else None
    if kind == "parquet":
        return True
    if kind == "csv":
        with open(path, encoding="utf-8", errors="replace") as handle:
            header = {c.strip() for c in handle.readline().rstrip("\r\n").split(",")}
        return set(METRIC_COLUMNS) <= header
    return False


def _read_frame(path: Path, kind: str, columns: dict[str, str]) -> pd.DataFrame:
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        # Timestamps stay text here: validate_fleet parses them as UTC.
        dtypes = {c: d for c, d in columns.items() if not d.startswith("datetime64")}
        return pd.read_csv(path, dtype=dtypes)
    except (pa.ArrowException, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataValidationError(f"{path}: cannot read as a saved fleet: {reason}") from None
