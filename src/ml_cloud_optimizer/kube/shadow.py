"""Observe before acting: what would have been recommended, beside what then happened.

Autoscaler vendors earn an operator's trust by running beside the cluster first. In shadow mode
(and whenever low coverage blocks auto-apply) the recommender writes nothing it would have
applied; every cycle appends one JSON line per workload to a shadow log instead. ``report`` later
sets each logged request beside the usage of the hour that followed it: how often usage went
above the request (it would have been throttled or OOM-killed), and what it would have saved
against what was requested at the time. The confidence flag is logged with each line, so the
report shows whether the flag blocked the workloads that would have gone short.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.kube.forecasting import Cycle

__all__ = ["REPORT_COLUMNS", "ShadowLog", "report"]

_HOUR = pd.Timedelta(hours=1)
REPORT_COLUMNS = [
    "workload",
    "cycles",
    "confident_share",
    "mean_coverage",
    "recommended_cores",
    "current_cores",
    "saving_share",
    "short_share",
    "peak_over_request",
]


@dataclass
class ShadowLog:
    """An append-only JSON-lines file of recommendations that were not applied (or all, in shadow mode)."""

    path: Path

    def append(self, cycle: Cycle, outcomes=()) -> int:
        """One line per forecast workload of ``cycle`` and what was done about it; returns the lines written."""
        done = {o.workload: o.action for o in outcomes}
        lines = []
        for entity, f in sorted(cycle.forecasts.items()):
            if f.sizing is None:
                continue
            mem = sum(c.memory.target for c in f.sizing.containers if c.memory is not None) * f.sizing.replicas
            lines.append(
                {
                    "time": pd.Timestamp(cycle.ended, unit="s", tz="UTC").isoformat(),
                    "origin": f.origin.isoformat(),
                    "workload": entity,
                    "action": done.get(entity, "forecast"),
                    "replicas": f.sizing.replicas,
                    "request_cores": f.sizing.request_cores,
                    "current_cores": f.sizing.current_cores,
                    "request_mem_bytes": mem or None,
                    "p90_cores": f.sizing.p90_cores,
                    "coverage": {k: (v if np.isfinite(v) else None) for k, v in f.coverage.items()},
                    "confident": f.confident,
                }
            )
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as out:
                out.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
        return len(lines)

    def read(self) -> pd.DataFrame:
        """The log as a frame; a line that is not JSON is a ``ValueError`` naming its number."""
        rows = []
        for number, text in enumerate(self.path.read_text().splitlines(), 1):
            if text.strip():
                try:
                    rows.append(json.loads(text))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{self.path}:{number}: not a shadow log line ({exc.msg})") from None
        if not rows:
            raise ValueError(f"{self.path}: the shadow log is empty")
        frame = pd.DataFrame(rows)
        frame["origin"] = pd.to_datetime(frame["origin"], utc=True)
        return frame


def report(log: pd.DataFrame, metrics: pd.DataFrame, entities: pd.DataFrame) -> pd.DataFrame:
    """Per workload: logged requests against the CPU used in the hour after each one's origin.

    ``short_share`` is the share of the following hour's 5-minute slots whose usage was above the
    logged request; ``peak_over_request`` the largest usage over request; ``saving_share`` what
    the request would have saved against the cores requested at the time. Entries whose hour has
    not happened yet (no usage in ``metrics``) are left out.
    """
    vcpus = entities.assign(entity_id=entities["entity_id"].astype(str)).set_index("entity_id")["vcpus"]
    usage = metrics.assign(entity_id=metrics["entity_id"].astype(str))
    usage = usage.assign(cores=usage["cpu_util"] * usage["entity_id"].map(vcpus))[["entity_id", "ts", "cores"]]
    rows = []
    for workload, entries in log.groupby("workload", sort=True):
        seen = usage.loc[usage["entity_id"] == workload]
        short = peaks = 0.0
        slots, scored = 0, []
        for _, entry in entries.iterrows():
            after = seen.loc[(seen["ts"] > entry["origin"]) & (seen["ts"] <= entry["origin"] + _HOUR), "cores"].dropna()
            if after.empty:
                continue
            scored.append(entry)
            short += float((after > entry["request_cores"] + 1e-9).sum())
            slots += len(after)
            peaks = max(peaks, float(after.max()) / entry["request_cores"])
        if not scored:
            continue
        done = pd.DataFrame(scored)
        coverage = done["coverage"].map(
            lambda c: np.nanmean([v for v in (c or {}).values() if v is not None] or [np.nan])
        )
        rows.append(
            {
                "workload": workload,
                "cycles": len(done),
                "confident_share": float(done["confident"].mean()),
                "mean_coverage": float(coverage.mean()),
                "recommended_cores": float(done["request_cores"].mean()),
                "current_cores": float(done["current_cores"].mean()),
                "saving_share": float(1 - done["request_cores"].sum() / done["current_cores"].sum()),
                "short_share": short / slots,
                "peak_over_request": peaks,
            }
        )
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)
