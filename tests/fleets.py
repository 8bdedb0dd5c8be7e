"""Small fleets the tests build and load: a synthetic one, and one whose answers are known by construction.

Plain functions, importable from any test folder (``tests/`` is on pytest's ``pythonpath``);
``conftest.py`` wraps ``make_small_fleet`` as the ``small_fleet`` fixture.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import ENTITY_COLUMNS, STEP, Fleet, validate_fleet


def make_small_fleet(records: int = 2_000, *, entities: int = 3, seed: int = 0, start: str = "2026-01-05") -> Fleet:
    """A validated synthetic fleet of about ``records`` rows over ``entities`` VMs."""
    from ml_cloud_optimizer.data.synthetic import generate_fleet

    return generate_fleet(records, entities=entities, seed=seed, start=start)


def make_known_fleet(days: int = 3, *, start: str = "2024-01-07", seed: int = 0) -> Fleet:
    """A fleet built straight from the data contract, whose answers are known by construction.

    Four entities over ``days`` days from ``start`` (a Sunday, so the data spans two weekly
    partitions), with dropped samples, missing memory readings and CPU spikes:

    * ``web-a``: 8 vCPUs busy 5-25% with memory at 10-30%, so one size down (4 vCPUs)
      still fits at 70% utilisation: over-provisioned; three spikes to 120% CPU.
    * ``web-b``: 4 vCPUs busy 30-90%: needs its size.
    * ``batch-a``: 4 vCPUs under 3%: idle. Reports no request rate at all.
    * ``db-é``: a non-ASCII id; 2 vCPUs, memory unknown for its first half day.
    """
    rng = np.random.default_rng(seed)
    entities = pd.DataFrame(
        [
            ("web-a", "web", "m.2xlarge", "eu-west-1", 8, 32.0, 0.40),
            ("web-b", "web", "m.xlarge", "us-east-1", 4, 16.0, 0.20),
            ("batch-a", "batch", "c.xlarge", "eu-west-1", 4, 8.0, 0.17),
            ("db-é", "db", "r.large", "us-east-1", 2, 16.0, 0.13),
        ],
        columns=list(ENTITY_COLUMNS),
    )
    cpu_range = {"web-a": (0.05, 0.25), "web-b": (0.3, 0.9), "batch-a": (0.0, 0.03), "db-é": (0.2, 0.6)}
    ts = pd.date_range(start, periods=days * 288, freq=STEP, tz="UTC")
    frames = []
    for entity_id, (low, high) in cpu_range.items():
        n = len(ts)
        frame = pd.DataFrame(
            {
                "entity_id": entity_id,
                "ts": ts,
                "cpu_util": rng.uniform(low, high, n),
                "mem_util": rng.uniform(0.1, 0.3, n),
                "net_in_kbps": rng.gamma(2.0, 50.0, n),
                "net_out_kbps": rng.gamma(2.0, 80.0, n),
                "disk_read_kbps": rng.gamma(1.5, 20.0, n),
                "disk_write_kbps": rng.gamma(1.5, 30.0, n),
                "request_rate": rng.gamma(3.0, 10.0, n),
                "is_peak": pd.array(rng.uniform(size=n) < 0.02, dtype="boolean"),
            }
        )
        frames.append(frame.loc[rng.uniform(size=n) > 0.02])  # about 2% of slots missing
    metrics = pd.concat(frames, ignore_index=True)
    web_a = metrics.index[metrics["entity_id"] == "web-a"]
    metrics.loc[web_a[[len(web_a) // 8, len(web_a) // 2, 7 * len(web_a) // 8]], "cpu_util"] = 1.2
    metrics.loc[metrics["entity_id"] == "batch-a", "request_rate"] = np.nan
    first_hours = metrics["ts"] < pd.Timestamp(start, tz="UTC") + pd.Timedelta(hours=12)
    metrics.loc[(metrics["entity_id"] == "db-é") & first_hours, "mem_util"] = np.nan
    metrics["is_peak"] = metrics["is_peak"].mask(metrics.index % 97 == 0)  # a few unknown labels
    return validate_fleet(Fleet(metrics=metrics, entities=entities, source="known"))


def server_home() -> Path:
    """A new directory for an embedded server's data, under the system temp dir.

    Not under pytest's ``tmp_path``: as root the server runs as another user, which must be
    able to traverse every parent, and pytest keeps resetting its base directory to 0700.
    """
    return Path(tempfile.mkdtemp(prefix="mlco-test-pg-"))


def demand_grid(demand, vcpus: float = 4.0):
    """A replay grid of hand-made demand in cores (steps, or steps x entities), every entity of ``vcpus``."""
    from ml_cloud_optimizer.optimizer.capacity import DemandGrid

    demand = np.asarray(demand, dtype="float64")
    demand = demand[:, None] if demand.ndim == 1 else demand
    steps, width = demand.shape
    return DemandGrid(
        ts=pd.date_range("2026-01-05T00:00:00Z", periods=steps, freq="5min", name="ts"),
        entity_ids=pd.Index([f"e{i}" for i in range(width)], name="entity_id"),
        vcpus=np.full(width, vcpus),
        price_per_core_hour=np.full(width, 0.04),
        demand=demand,
    )
