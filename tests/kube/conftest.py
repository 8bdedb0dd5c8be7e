"""Fixtures of the Kubernetes-out tests: a small fleet of workloads and champions trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_cloud_optimizer.data import read_fleet, write_fleet
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.resources import as_target

WORKLOADS = ("shop/Deployment/web", "shop/StatefulSet/db")


@pytest.fixture(autouse=True)
def _runs_in_tmp(monkeypatch, tmp_path):
    """Keep every command's output (shadow logs, recommendations) under the test's own MLCO_HOME."""
    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def workload_fleet(tmp_path_factory) -> Path:
    """Ten days of two workloads (``WORKLOADS``), as a fleet file: the recommender's source in most tests."""
    from ml_cloud_optimizer.data.synthetic import generate_fleet

    fleet = generate_fleet(288 * 10 * len(WORKLOADS), entities=len(WORKLOADS), seed=11)
    names = dict(zip(sorted(fleet.entities["entity_id"].astype(str)), WORKLOADS, strict=True))
    fleet.entities["entity_id"] = fleet.entities["entity_id"].astype(str).map(names)
    fleet.metrics["entity_id"] = fleet.metrics["entity_id"].astype(str).map(names)
    path = tmp_path_factory.mktemp("workloads") / "fleet.parquet"
    write_fleet(fleet, path)
    return path


@pytest.fixture(scope="session")
def champions(tmp_path_factory, workload_fleet) -> Path:
    """``champion`` (CPU, with a p90 head) and ``champion-mem`` beside it, as ``mlco train --target cpu,mem`` does."""
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster

    fleet = read_fleet(workload_fleet)
    root = tmp_path_factory.mktemp("models")
    quick = {"horizons": (1, 12), "quantile": True, "refit": False, "n_estimators": 30, "n_jobs": 1}
    ModelBundle(LightGBMForecaster(**quick).fit(fleet.metrics, fleet.entities)).save(root / "champion")
    mem = LightGBMForecaster(**quick).fit(as_target(fleet.metrics, "mem"), fleet.entities)
    ModelBundle(mem, metadata={"target": "mem"}).save(root / "champion-mem")
    return root
