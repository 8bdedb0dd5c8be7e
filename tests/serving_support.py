"""What the serving tests share: a tiny champion trained with the real classes, and request builders.

The champion is trained once per test session (a LightGBM forecaster with p90 boosters
plus a LightGBM peak classifier on a generated fleet) and saved with ``ModelBundle``, the
way ``mlco train`` exports one.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import numpy as np
import pandas as pd
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.features import build_features
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.models.peak import PeakClassifier
from ml_cloud_optimizer.models.tabular import LightGBMForecaster

__all__ = [
    "MODEL_NAME",
    "champion",
    "feature_rows",
    "history_sample",
    "infer",
    "v1_features",
    "v1_history",
    "v2_history",
]

MODEL_NAME = "forecaster"
HISTORY_STEPS = 48


@functools.cache
def champion(base: Path) -> Path:
    """A small LightGBM champion directory under ``base`` (trained on the first call only)."""
    fleet = generate_fleet(4 * 288 * 6, entities=4, seed=3)
    forecaster = LightGBMForecaster(n_estimators=40, max_train_rows=10_000, n_jobs=1).fit(fleet.metrics)
    peak = PeakClassifier(n_estimators=20, early_stopping_rounds=5).fit(fleet.metrics)
    return ModelBundle(forecaster, peak, {"source": "tests"}).save(base / "champion")


@functools.cache
def _unseen_fleet():
    """Fleet the champion never saw: other seed, later days."""
    return generate_fleet(5 * 288 * 2, entities=5, seed=17, start="2026-03-02T00:00:00Z").metrics


def history_sample(entities: int = 3, steps: int = HISTORY_STEPS) -> pd.DataFrame:
    """The last ``steps`` samples of ``entities`` unseen entities, canonical columns."""
    metrics = _unseen_fleet()
    keep = metrics["entity_id"].isin(metrics["entity_id"].unique()[:entities])
    rows = metrics.loc[keep].groupby("entity_id").tail(steps)
    return rows[["entity_id", "ts", *VALUE_COLUMNS]].reset_index(drop=True)


def _epoch(ts: pd.Series) -> list[int]:
    return (pd.to_datetime(ts, utc=True).astype("int64") // 10**9).tolist()


def v1_history(history: pd.DataFrame, **extra) -> dict:
    """A v1 body with one instance per entity of ``history``."""
    instances = []
    for entity, rows in history.groupby("entity_id", sort=False):
        series = {"ts": _epoch(rows["ts"]), **{c: rows[c].tolist() for c in VALUE_COLUMNS}}
        instances.append({"entity_id": str(entity), "history": series, "vcpus": 4, "replicas": 2})
    return {"instances": instances, **extra}


def v2_history(history: pd.DataFrame) -> dict:
    """A v2 JSON body with the history as long tensors."""
    n = len(history)
    inputs = [
        {"name": "entity_id", "datatype": "BYTES", "shape": [n], "data": history["entity_id"].astype(str).tolist()},
        {"name": "ts", "datatype": "INT64", "shape": [n], "data": _epoch(history["ts"])},
    ]
    inputs += [{"name": c, "datatype": "FP64", "shape": [n], "data": history[c].tolist()} for c in VALUE_COLUMNS]
    return {"inputs": inputs}


def feature_rows(model_dir: Path, history: pd.DataFrame) -> pd.DataFrame:
    """The last feature row per entity, built by the core's own feature function."""
    spec = ModelBundle.load(model_dir).forecaster.feature_spec
    rows = build_features(history, spec)
    return rows.sort_values(["entity_id", "ts"]).groupby("entity_id").tail(1).reset_index(drop=True)


def v1_features(rows: pd.DataFrame, columns: list[str]) -> dict:
    """A v1 body of feature rows (lists in feature order, NaN as null)."""
    matrix = rows[columns].to_numpy(dtype="float64")
    values = [[None if np.isnan(v) else float(v) for v in row] for row in matrix]
    return {"instances": [{"entity_id": str(e), "features": v} for e, v in zip(rows["entity_id"], values, strict=True)]}


def infer(model, body):
    """``model``'s answer to ``body`` through KServe's stages (preprocess -> predict -> postprocess)."""
    response, _headers = asyncio.run(model(body))
    return response


def grpc_history(history: pd.DataFrame) -> list:
    """The history as v2 gRPC input tensors (``ModelInferRequest.inputs``)."""
    n = len(history)
    tensor, contents = pb.ModelInferRequest.InferInputTensor, pb.InferTensorContents
    tensors = [
        tensor(
            name="entity_id",
            datatype="BYTES",
            shape=[n],
            contents=contents(bytes_contents=[e.encode() for e in history["entity_id"]]),
        ),
        tensor(
            name="ts",
            datatype="INT64",
            shape=[n],
            contents=contents(int64_contents=(history["ts"].astype("int64") // 10**9).tolist()),
        ),
    ]
    return tensors + [
        tensor(name=c, datatype="FP64", shape=[n], contents=contents(fp64_contents=history[c].tolist()))
        for c in VALUE_COLUMNS
    ]
