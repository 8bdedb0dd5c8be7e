"""What the dashboard shows, read from one run directory: each part found by its file name.

A run directory is whatever a run leaves behind: ``mlco train --out DIR`` writes the
leaderboard (and, where it saves them, the fleet and the hold-out forecasts),
``mlco recommend``, ``mlco backtest`` and ``mlco monitor`` add recommendations, the backtest
and the drift table. Each part is looked up by file name anywhere below the run directory
(the newest file wins), so a flat training directory, a pipeline run's tree of task folders
and the whole ``$MLCO_HOME`` all work. A part that is not there is ``None`` and one that
cannot be read a ``PartError``; the dashboard says which command makes the first and what
is wrong with the second, rather than failing. ``mlco report`` reads runs the
same way, through ``PARTS``, ``find_part`` and ``load_part``.

Every reader returns frames with ``entity_id`` as text and ``ts`` as UTC timestamps, the
shapes ``figures`` draws.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyarrow import ArrowException

from ml_cloud_optimizer.data.io import entities_path, read_fleet
from ml_cloud_optimizer.data.schema import Fleet

__all__ = [
    "NO_DATA",
    "PARTS",
    "PartError",
    "PartSpec",
    "default_run_dir",
    "find_part",
    "find_parts",
    "load_part",
    "load_parts",
    "missing_note",
    "run_signature",
]

NO_DATA = "No data yet"


def _read_table(path: Path) -> pd.DataFrame:
    """A CSV (optionally gzipped) or Parquet table, with ids as text and timestamps as UTC."""
    frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    if "entity_id" in frame.columns:
        frame["entity_id"] = frame["entity_id"].astype(str)
    for col in ("ts", "hour"):
        if col in frame.columns:
            frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _read_fleet(path: Path) -> Fleet:
    return read_fleet(path, fmt="canonical")


def _read_backtest(path: Path) -> dict[str, pd.DataFrame | None]:
    """The backtest summary and, when saved beside it, the per-step capacities of each policy."""
    capacity = path.with_name("backtest_capacity.csv.gz")
    return {"summary": _read_table(path), "capacity": _read_table(capacity) if capacity.is_file() else None}


@dataclass(frozen=True)
class PartSpec:
    """One part of a run: the file names that hold it, how to read it and which command writes it.

    ``columns`` are those the dashboard draws from; a file without them is refused by name.
    """

    name: str
    files: tuple[str, ...]
    reader: Callable[[Path], object]
    made_by: str
    columns: tuple[str, ...] = ()

    def read(self, path: Path):
        """The part read from ``path``; ValueError naming the file when a needed column is absent."""
        value = self.reader(path)
        frame = value["summary"] if isinstance(value, dict) else value
        if isinstance(frame, pd.DataFrame):
            missing = [c for c in self.columns if c not in frame.columns]
            if missing:
                raise ValueError(f"{path}: no column {', '.join(missing)} in this {self.name} file")
        return value


@dataclass(frozen=True)
class PartError:
    """A part whose file is there but cannot be read: the view shows this instead of failing."""

    name: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"Cannot read the {self.name} file {self.path}: {self.message}"


PARTS: dict[str, PartSpec] = {
    spec.name: spec
    for spec in (
        PartSpec("fleet", ("metrics.parquet", "fleet.parquet"), _read_fleet, "mlco run"),
        PartSpec(
            "forecasts",
            ("forecasts.parquet", "forecasts.csv.gz", "forecasts.csv"),
            _read_table,
            "mlco train",
            ("entity_id", "ts"),
        ),
        PartSpec("leaderboard", ("leaderboard.csv", "leaderboard.parquet"), _read_table, "mlco train", ("model",)),
        PartSpec(
            "recommendations",
            ("recommendations.csv", "recommendations.parquet"),
            _read_table,
            "mlco recommend",
            ("entity_id", "hour", "hourly_cost", "current_hourly_cost"),
        ),
        PartSpec(
            "backtest",
            ("backtest_summary.csv",),
            _read_backtest,
            "mlco backtest",
            ("policy", "core_hours", "underprovisioned_share"),
        ),
        PartSpec("drift", ("drift.csv", "drift.parquet"), _read_table, "mlco monitor", ("feature", "psi")),
    )
}


def default_run_dir() -> Path:
    """``$MLCO_RUN_DIR`` if set, else ``$MLCO_HOME`` (``./.mlco``) as a whole.

    Searching the whole home shows the newest of each part wherever the commands left it
    (``train/``, ``runs/<time>/``, ``pipeline_runs/<run>/``); the sidebar names each file.
    """
    from ml_cloud_optimizer.warehouse.server import mlco_home

    return Path(os.environ.get("MLCO_RUN_DIR") or mlco_home())


# Directories below a run that never hold a part and can be large: the embedded PostgreSQL's
# data, MLflow's stores, saved models.
_PRUNED = frozenset({"pgdata", "mlartifacts", "mlruns", "candidates", "champion", "__pycache__"})


def find_parts(run_dir: str | Path) -> dict[str, Path]:
    """The newest file below ``run_dir`` for every part present, in one walk of the tree."""
    wanted = {file: name for name, spec in PARTS.items() for file in spec.files}
    newest: dict[str, tuple[float, Path]] = {}
    for root, dirs, files in os.walk(run_dir):
        dirs[:] = [d for d in dirs if d not in _PRUNED and not d.startswith(".")]
        for file in files:
            name = wanted.get(file)
            if name is None:
                continue
            path = Path(root, file)
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if name not in newest or mtime > newest[name][0]:
                newest[name] = (mtime, path)
    return {name: newest[name][1] for name in PARTS if name in newest}


def find_part(run_dir: str | Path, name: str) -> Path | None:
    """The newest file below ``run_dir`` holding part ``name``, or None."""
    if name not in PARTS:
        raise KeyError(f"unknown part {name!r}; known: {', '.join(PARTS)}")
    return find_parts(run_dir).get(name)


def load_part(run_dir: str | Path, name: str):
    """Part ``name`` of the run read into frames, or None when the run has no file for it.

    Raises:
        ValueError, OSError: the file is there but unreadable or lacks a needed column.
    """
    path = find_part(run_dir, name)
    return None if path is None else PARTS[name].read(path)


def load_parts(run_dir: str | Path) -> dict[str, object]:
    """Every part of the run, reading the tree once: frames, None where absent, ``PartError`` where unreadable."""
    out: dict[str, object] = {}
    for name, path in find_parts(run_dir).items():
        try:
            out[name] = PARTS[name].read(path)
        except (ValueError, KeyError, OSError, ArrowException) as exc:
            message = (str(exc).splitlines() or [type(exc).__name__])[0].removeprefix(f"{path}: ")
            out[name] = PartError(name, path, message)
    return {name: out.get(name) for name in PARTS}


def run_signature(run_dir: str | Path) -> tuple[tuple[str, str, float], ...]:
    """(part, path, modification time) of every part found: a cache key that changes when a run is rewritten."""
    out = []
    for name, path in find_parts(run_dir).items():
        side = entities_path(path) if name == "fleet" else path
        out.append((name, str(path), max(path.stat().st_mtime, side.stat().st_mtime if side.exists() else 0.0)))
    return tuple(out)


def missing_note(name: str) -> str:
    """What the dashboard says when part ``name`` is absent: the one command that fills the whole run."""
    spec = PARTS[name]
    return f"{NO_DATA}: run `make run` (or `{spec.made_by}`), which writes {spec.files[0]} into the run directory."
