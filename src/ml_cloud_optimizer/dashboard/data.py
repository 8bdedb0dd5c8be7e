"""What the dashboard shows, read from one run directory: each part found by its file name.

A run directory is whatever a run leaves behind: ``mlco train --out DIR`` writes the fleet,
the hold-out forecasts, the leaderboard and the drift table; ``mlco recommend`` and
``mlco backtest`` add recommendations and the backtest. Each part is looked up by file name
anywhere below the run directory (the newest file wins), so a flat training directory and a
pipeline run's tree of task folders both work. A part that is not there is ``None``, and the
dashboard says which command makes it rather than failing.

Every reader returns frames with ``entity_id`` as text and ``ts`` as UTC timestamps, the
shapes ``figures`` draws.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ml_cloud_optimizer.data.io import entities_path, read_fleet
from ml_cloud_optimizer.data.schema import Fleet

__all__ = [
    "PARTS",
    "NO_DATA",
    "PartSpec",
    "default_run_dir",
    "find_part",
    "load_part",
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
    """One part of a run: the file names that hold it, how to read it and which command writes it."""

    name: str
    files: tuple[str, ...]
    reader: Callable[[Path], object]
    made_by: str


PARTS: dict[str, PartSpec] = {
    spec.name: spec
    for spec in (
        PartSpec("fleet", ("metrics.parquet", "fleet.parquet"), _read_fleet, "mlco train"),
        PartSpec("forecasts", ("forecasts.parquet", "forecasts.csv.gz", "forecasts.csv"), _read_table, "mlco train"),
        PartSpec("leaderboard", ("leaderboard.csv", "leaderboard.parquet"), _read_table, "mlco train"),
        PartSpec("recommendations", ("recommendations.csv", "recommendations.parquet"), _read_table, "mlco recommend"),
        PartSpec("backtest", ("backtest_summary.csv",), _read_backtest, "mlco backtest"),
        PartSpec("drift", ("drift.csv", "drift.parquet"), _read_table, "mlco train"),
    )
}


def default_run_dir(home: str | Path | None = None) -> Path:
    """``$MLCO_RUN_DIR`` if set, else the newest run under ``$MLCO_HOME/runs`` (``./.mlco`` by default).

    Falls back to ``$MLCO_HOME`` itself, which then simply shows the no-data notes.
    """
    if os.environ.get("MLCO_RUN_DIR"):
        return Path(os.environ["MLCO_RUN_DIR"])
    home = Path(home or os.environ.get("MLCO_HOME") or ".mlco")
    runs = [p for p in (home / "runs").glob("*") if p.is_dir()] if (home / "runs").is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else home


def find_part(run_dir: str | Path, name: str) -> Path | None:
    """The newest file below ``run_dir`` holding part ``name``, or None."""
    spec = PARTS[name]
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = [p for file in spec.files for p in run_dir.rglob(file) if p.is_file() and not _is_sidecar(p)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _is_sidecar(path: Path) -> bool:
    """True for the entities file that ``write_fleet`` saves beside a metrics file."""
    return ".entities" in path.name


def load_part(run_dir: str | Path, name: str):
    """Part ``name`` of the run read into frames, or None when the run has no file for it."""
    path = find_part(run_dir, name)
    return None if path is None else PARTS[name].reader(path)


def run_signature(run_dir: str | Path) -> tuple[tuple[str, str, float], ...]:
    """(part, path, modification time) of every part found: a cache key that changes when a run is rewritten."""
    out = []
    for name in PARTS:
        path = find_part(run_dir, name)
        if path is not None:
            out.append((name, str(path), path.stat().st_mtime))
            if name == "fleet" and entities_path(path).is_file():
                out.append((name, str(entities_path(path)), entities_path(path).stat().st_mtime))
    return tuple(out)


def missing_note(name: str) -> str:
    """What the dashboard says when part ``name`` is absent: the one command that fills the whole run."""
    spec = PARTS[name]
    return f"{NO_DATA}: run `make run` (or `{spec.made_by}`), which writes {spec.files[0]} into the run directory."
