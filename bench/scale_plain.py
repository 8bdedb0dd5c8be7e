"""The plain passes bench/scale.py sets beside its stages, and its warehouse helpers (see scale.py's docstring)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def run_baseline(stage: str, size: int, work: Path) -> dict:
    """The plain pass of ``stage`` at ``size`` (module docstring); seconds of the timed part."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    if stage == "datagen":
        from ml_cloud_optimizer.data.schema import VALUE_COLUMNS

        started = time.perf_counter()
        frame = pd.DataFrame(rng.standard_normal((size, len(VALUE_COLUMNS))), columns=list(VALUE_COLUMNS))
        frame.to_parquet(work / "plain.parquet", index=False)
    elif stage == "olap_load":
        return plain_copy(work)
    elif stage == "features":
        import pyarrow.parquet as pq

        columns = len(pq.read_schema(work / "peak_rows" / "rows.parquet").names)
        started = time.perf_counter()
        fleet = pd.read_parquet(work / "fleet" / "metrics.parquet").sort_values(["entity_id", "ts"])
        cpu = fleet["cpu_util"].to_numpy()
        matrix = np.full((len(cpu), columns), np.nan)
        for k in range(columns):
            matrix[k + 1 :, k] = cpu[: len(cpu) - k - 1]
        pd.DataFrame(matrix, columns=[f"c{k}" for k in range(columns)]).to_parquet(work / "plain.parquet")
    elif stage == "smote":
        from imblearn.over_sampling import SMOTE

        rows = pd.read_parquet(work / "peak_rows" / "rows.parquet")
        fit = rows.loc[rows["part"] == "fit"]
        X = fit.drop(columns=["entity_id", "ts", "label", "part"])
        X = X.fillna(X.median()).fillna(0.0).to_numpy(dtype="float64")
        y = fit["label"].to_numpy(dtype=bool)
        started = time.perf_counter()
        SMOTE(random_state=0).fit_resample(X, y)
    else:
        import lightgbm as lgb

        meta = json.loads((work / "model" / "metadata.json").read_text())
        from ml_cloud_optimizer.models.tabular import LightGBMForecaster

        forecaster = LightGBMForecaster()
        cols = len(forecaster.feature_spec.columns)
        threads = int(os.environ.get("MLCO_THREADS") or os.cpu_count() or 1)
        params = {**forecaster.base_params(), "num_threads": threads, "verbose": -1}
        started = time.perf_counter()
        X = rng.standard_normal((min(size, forecaster.max_train_rows or size), cols), dtype=np.float32)
        for name, rounds in meta["rounds"].items():
            alpha = {"objective": "quantile", "alpha": 0.9} if name.startswith("p90") else {"objective": "l1"}
            lgb.train({**params, **alpha}, lgb.Dataset(X, X[:, 0] + rng.standard_normal(len(X))), rounds)
    return {"seconds": time.perf_counter() - started}


def fresh_database(server_url: str, name: str) -> str:
    from contextlib import closing

    from ml_cloud_optimizer.warehouse import apply_schema, connect, create_database, drop_database

    drop_database(server_url, name)
    dsn = create_database(server_url, name)
    with closing(connect(dsn)) as conn:
        apply_schema(conn)
    return dsn


def plain_copy(work: Path) -> dict:
    """The server's limit: ``COPY ... (FORMAT binary)`` of rows encoded beforehand, partitions made beforehand."""
    import io
    from contextlib import closing

    from ml_cloud_optimizer.data.io import read_fleet
    from ml_cloud_optimizer.data.schema import METRIC_COLUMNS, STEP
    from ml_cloud_optimizer.warehouse import connect, drop_database, encode_metrics_copy

    metrics = read_fleet(work / "fleet" / "metrics.parquet", fmt="canonical").metrics
    payload = io.BytesIO(b"".join(encode_metrics_copy(metrics)))
    first, last = metrics["ts"].min(), metrics["ts"].max()
    del metrics
    server = os.environ["MLCO_SCALE_SERVER"]
    dsn = fresh_database(server, "mlco_scale_plain")
    try:
        with closing(connect(dsn)) as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT ensure_metric_partitions(%s, %s)", (first, last + STEP))
        statement = f"COPY metrics ({', '.join(METRIC_COLUMNS)}) FROM STDIN WITH (FORMAT binary)"
        with closing(connect(dsn)) as conn:
            started = time.perf_counter()
            with conn, conn.cursor() as cur:
                cur.copy_expert(statement, payload, 1 << 20)
            return {"seconds": time.perf_counter() - started}
    finally:
        drop_database(server, "mlco_scale_plain")
