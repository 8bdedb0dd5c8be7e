"""The forecaster behind KServe: a ``kserve.Model`` that serves a champion directory.

``load`` reads the directory with ``ModelBundle.load``, which dispatches on its metadata to
the LightGBM, XGBoost, CatBoost, LSTM or GRU forecaster (plus the peak classifier where
the bundle has one). ``predict`` goes request -> ``RequestParser`` -> bundle -> capacity ->
response, in one vectorised pass over every entity of the request, for v1 bodies and v2
requests (REST and gRPC) alike.

Answer per entity (or feature row): ``p50_h{h}`` for each horizon asked for (and
``p90_h{h}`` where the model has quantiles), ``peak_prob``, and the capacity that keeps
utilisation at the target under the highest forecast: ``recommended_vcpus`` and
``recommended_replicas``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import kserve
import numpy as np
import pandas as pd
from kserve.errors import InferenceError, ModelMissingError
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
from ml_cloud_optimizer.models.base import Forecaster, forecast_column
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.models.tabular import TabularForecaster
from serving.capacity import recommend_capacity
from serving.metrics import ERRORS, LATENCY, PEAKS, REQUESTS, ROWS, claim_error
from serving.schema import ForecastRequest, RequestError, RequestLimits, RequestParser

__all__ = ["ForecastModel"]

_CAPACITY = ("recommended_vcpus", "recommended_replicas")


class ForecastModel(kserve.Model):
    """Serves one champion directory under ``name``.

    Args:
        name: the model name in the URL (``/v1/models/NAME:predict``).
        model_dir: the champion directory (``metadata.json`` plus model files).
        limits: bounds on one request.
        target_utilization: default utilisation the capacity recommendation aims at.
        peak_threshold: peak probability from which a row counts as a predicted peak.
    """

    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        *,
        limits: RequestLimits = RequestLimits(),
        target_utilization: float = 0.7,
        peak_threshold: float = 0.5,
    ):
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.limits = limits
        self.target_utilization = target_utilization
        self.peak_threshold = peak_threshold
        self.bundle: ModelBundle | None = None
        self.parser: RequestParser | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def load(self) -> bool:
        """Load the champion; a directory without ``metadata.json`` is ``ModelMissingError``."""
        if not (self.model_dir / Forecaster.METADATA_FILE).is_file():
            raise ModelMissingError(f"{self.model_dir} holds no {Forecaster.METADATA_FILE}: not a champion directory")
        _register_forecasters()
        self.bundle = ModelBundle.load(self.model_dir)
        self.horizons = tuple(int(h) for h in self.bundle.horizons)
        self.has_quantiles = "p90" in self.bundle.quantiles
        # Tabular forecasters also take ready-made feature rows; sequence models read history only.
        forecaster = self.bundle.forecaster
        self.feature_names = forecaster.feature_spec.columns if isinstance(forecaster, TabularForecaster) else []
        self.parser = RequestParser(
            feature_names=self.feature_names, horizons=self.horizons, min_history=self.bundle.min_history,
            output_names=self.output_names, limits=self.limits, target_utilization=self.target_utilization,
        )
        self.ready = True
        return self.ready

    @property
    def output_names(self) -> list[str]:
        names = ["entity_id", "ts"]
        names += [forecast_column(h) for h in self.horizons]
        if self.has_quantiles:
            names += [forecast_column(h, "p90") for h in self.horizons]
        return names + ["peak_prob", *_CAPACITY]

    # -- v2 model metadata ------------------------------------------------------------------

    def get_input_types(self) -> list[dict]:
        """History tensors (one element per sample), then the feature-row form: ``features [rows, n]``."""
        history = [
            {"name": "entity_id", "datatype": "BYTES", "shape": [-1]},
            {"name": "ts", "datatype": "INT64", "shape": [-1]},
            *({"name": c, "datatype": "FP64", "shape": [-1]} for c in VALUE_COLUMNS),
            {"name": "vcpus", "datatype": "FP64", "shape": [-1]},
            {"name": "replicas", "datatype": "INT64", "shape": [-1]},
        ]
        if self.feature_names:
            history.append({"name": "features", "datatype": "FP64", "shape": [-1, len(self.feature_names)]})
        return history

    def get_output_types(self) -> list[dict]:
        types = {"entity_id": "BYTES", "ts": "INT64", "recommended_replicas": "INT64"}
        return [{"name": n, "datatype": types.get(n, "FP64"), "shape": [-1]} for n in self.output_names]

    # -- inference --------------------------------------------------------------------------

    def predict(self, payload, headers: dict | None = None) -> dict | InferResponse:
        """Forecast for every entity of the request; client mistakes raise ``RequestError`` (400)."""
        started = time.perf_counter()
        protocol = _protocol(payload)
        try:
            if isinstance(payload, InferRequest):
                request = self.parser.parse_v2(payload)
                answer = self.forecast(request)
                response = self._v2_response(payload, request, answer)
            else:
                request = self.parser.parse_v1(payload)
                answer = self.forecast(request)
                response = self._v1_response(answer)
        except RequestError as exc:
            ERRORS.labels(model_name=self.name, kind=exc.kind).inc()
            claim_error()
            raise
        except Exception as exc:
            ERRORS.labels(model_name=self.name, kind="internal").inc()
            claim_error()
            raise InferenceError(f"forecast failed: {type(exc).__name__}: {exc}") from exc
        REQUESTS.labels(model_name=self.name, protocol=protocol, input=request.form).inc()
        ROWS.labels(model_name=self.name, protocol=protocol).inc(len(answer))
        peaks = int((answer["peak_prob"].to_numpy() >= self.peak_threshold).sum())
        if peaks:
            PEAKS.labels(model_name=self.name).inc(peaks)
        LATENCY.labels(model_name=self.name, protocol=protocol).observe(time.perf_counter() - started)
        return response

    def forecast(self, request: ForecastRequest) -> pd.DataFrame:
        """The answer frame: one row per entity (or feature row) of ``request``, in its order."""
        if request.history is not None:
            raw = self.bundle.predict(request.history)
            raw = raw.drop_duplicates("entity_id", keep="last").set_index("entity_id")
            raw = raw.reindex(pd.Index(request.entity_id, dtype=raw.index.dtype, name="entity_id"))
            if raw[forecast_column(self.horizons[0])].isna().any():
                missing = raw.index[raw[forecast_column(self.horizons[0])].isna()][0]
                raise RequestError("history", f"entity {missing!r} has no forecastable last sample", "history_too_short")
            answer = raw.reset_index()
        else:
            answer = self._forecast_features(request)
        keep = [forecast_column(h) for h in request.horizons]
        if self.has_quantiles:
            keep += [forecast_column(h, "p90") for h in request.horizons]
        upper = [forecast_column(h, "p90" if self.has_quantiles else "p50") for h in request.horizons]
        peak_util = answer[upper].to_numpy(dtype="float64").max(axis=1)
        vcpus, replicas = recommend_capacity(peak_util, request.vcpus, request.replicas, request.target_utilization)
        out = answer[[c for c in ("entity_id", "ts") if c in answer.columns] + keep + ["peak_prob"]].copy()
        out["recommended_vcpus"] = vcpus
        out["recommended_replicas"] = replicas
        return out

    def _forecast_features(self, request: ForecastRequest) -> pd.DataFrame:
        """Forecasts from ready-made feature rows, through the forecaster's own ``predict_features``.

        The bundle's peak classifier reads history (it adds per-entity threshold features), so
        feature-row answers carry ``peak_prob`` NaN (JSON null).
        """
        anchor = self.feature_names.index(self.bundle.forecaster.feature_spec.target)
        missing = np.isnan(request.features[:, anchor])
        if missing.any():
            row = int(np.argmax(missing))
            raise RequestError(f"features[{row}].{self.feature_names[anchor]}",
                               "missing; the forecast starts from the current value", "missing_field")
        keys = np.arange(len(request.features)).astype(str)
        rows = pd.DataFrame(request.features, columns=self.feature_names)
        rows.insert(0, "ts", request.ts.to_numpy() if request.ts is not None else pd.Timestamp(0, tz="UTC"))
        rows.insert(0, "entity_id", keys)
        raw = self.bundle.forecaster.predict_features(rows, check_history=False).set_index("entity_id").loc[keys]
        answer = raw.reset_index(drop=True).drop(columns="ts")
        answer.insert(0, "entity_id", request.entity_id)
        if request.ts is not None:
            answer.insert(1, "ts", request.ts.to_numpy())
        answer["peak_prob"] = np.nan
        return answer

    def _v1_response(self, answer: pd.DataFrame) -> dict:
        records = answer.copy()
        if "ts" in records.columns:
            records["ts"] = pd.to_datetime(records["ts"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        records["entity_id"] = records["entity_id"].astype(object)
        return {"predictions": records.to_dict(orient="records")}

    def _v2_response(self, payload: InferRequest, request: ForecastRequest, answer: pd.DataFrame) -> InferResponse:
        n = len(answer)
        outputs = []
        for name in answer.columns:
            if request.outputs is not None and name not in request.outputs:
                continue
            values = answer[name]
            if name == "entity_id":
                data, datatype = values.to_numpy(dtype=object), "BYTES"
            elif name == "ts":
                data, datatype = pd.to_datetime(values, utc=True).astype("int64").to_numpy() // 10**9, "INT64"
            elif name == "recommended_replicas":
                data, datatype = values.to_numpy(dtype=np.int64), "INT64"
            else:
                data, datatype = values.to_numpy(dtype=np.float64), "FP64"
            outputs.append(InferOutput(name=name, shape=[n], datatype=datatype, data=data))
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def _register_forecasters() -> None:
    """Import every forecaster module, so that ``Forecaster.load`` knows each kind a champion may be."""
    import ml_cloud_optimizer.models.baselines  # noqa: F401
    import ml_cloud_optimizer.models.sequence  # noqa: F401
    import ml_cloud_optimizer.models.tabular  # noqa: F401


def _protocol(payload) -> str:
    if isinstance(payload, InferRequest):
        return "v2-grpc" if payload.from_grpc else "v2-rest"
    return "v1"
