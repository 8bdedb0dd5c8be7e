"""Fleets and frames as pipeline artifacts: a directory of Parquet files each task can read back.

A fleet artifact is a directory holding ``metrics.parquet`` and, beside it as ``write_fleet``
lays it out, ``metrics.entities.parquet``. A frame artifact is a single Parquet file; a rows artifact
a directory holding ``rows.parquet`` and ``state.json`` (what the next step needs to know about the rows). Each save
returns a small summary that the component puts in the artifact's metadata, which the Kubeflow
UI shows next to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ml_cloud_optimizer.data.io import entities_path, read_fleet, write_fleet
from ml_cloud_optimizer.data.schema import Fleet

__all__ = [
    "FLEET_FILE",
    "fleet_summary",
    "load_entity_ids",
    "load_fleet",
    "load_frame",
    "load_rows",
    "save_fleet",
    "save_frame",
    "save_rows",
]

FLEET_FILE = "metrics.parquet"
WRITE_ROWS = 500_000  # rows per Parquet row group of ``save_frame``


def fleet_summary(fleet: Fleet) -> dict:
    """Rows, entities and time span of ``fleet`` (JSON-ready)."""
    metrics = fleet.metrics
    return {
        "rows": len(metrics),
        "entities": int(metrics["entity_id"].nunique()),
        "first_ts": metrics["ts"].min().isoformat() if len(metrics) else "",
        "last_ts": metrics["ts"].max().isoformat() if len(metrics) else "",
        "source": str(fleet.source),
    }


def save_fleet(fleet: Fleet, directory: str | Path) -> dict:
    """Write ``fleet`` into the artifact directory and return its summary."""
    write_fleet(fleet, Path(directory) / FLEET_FILE)
    return fleet_summary(fleet)


def load_fleet(directory: str | Path) -> Fleet:
    """Read back a fleet written by ``save_fleet`` (validated)."""
    return read_fleet(Path(directory) / FLEET_FILE, fmt="canonical")


def load_entity_ids(directory: str | Path) -> list[str]:
    """Entity ids of a saved fleet, reading only the small entities file."""
    table = pq.read_table(entities_path(Path(directory) / FLEET_FILE), columns=["entity_id"])
    return [str(v) for v in table.column("entity_id").to_pylist()]


def save_frame(frame: pd.DataFrame, path: str | Path) -> dict:
    """Write ``frame`` as one Parquet file at ``path`` and return rows and columns.

    Written in row groups of at most ``WRITE_ROWS`` rows, each converted to Arrow on its own:
    ``DataFrame.to_parquet`` converts the whole frame first, a second copy of it in memory
    (5 GB for the peak rows of 10M records).
    """
    import pyarrow as pa

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = None
    writer: pq.ParquetWriter | None = None
    try:
        for start in range(0, max(len(frame), 1), WRITE_ROWS):
            table = pa.Table.from_pandas(frame.iloc[start : start + WRITE_ROWS], schema=schema, preserve_index=False)
            if writer is None:
                schema, writer = table.schema, pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return {"rows": len(frame), "columns": int(frame.shape[1])}


def load_frame(path: str | Path) -> pd.DataFrame:
    """Read a frame written by ``save_frame``."""
    return pd.read_parquet(path)


def save_rows(frame: pd.DataFrame, directory: str | Path, state: dict) -> dict:
    """Write ``frame`` and its JSON ``state`` into the artifact directory; return rows and columns."""
    directory = Path(directory)
    summary = save_frame(frame, directory / "rows.parquet")
    (directory / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
    return summary


def load_rows(directory: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read back what ``save_rows`` wrote."""
    directory = Path(directory)
    return load_frame(directory / "rows.parquet"), json.loads((directory / "state.json").read_text())
