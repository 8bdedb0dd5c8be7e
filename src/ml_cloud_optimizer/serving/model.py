"""The forecaster behind KServe: a ``kserve.Model`` that serves a champion directory.

``load`` reads the directory with ``ModelBundle.load``, which dispatches on its metadata to
the LightGBM, XGBoost, CatBoost, LSTM or GRU forecaster (plus the peak classifier where
the bundle has one) and imports only the modules of the kinds it names: a tabular champion
with a boosted peak classifier loads without torch, imbalanced-learn, pyarrow or psycopg2,
which the lean predictor image does not have (``tests/serving/test_serving_imports.py``).

A request goes through KServe's own stages (``kserve.Model.__call__``), each timed by its
histogram (``request_preprocess_seconds``, ``request_predict_seconds``,
``request_postprocess_seconds``), for v1 bodies and v2 requests (REST and gRPC) alike:

* ``preprocess``: body -> ``RequestParser`` -> ``ForecastRequest``; client mistakes raise here;
* ``predict``: ``ForecastRequest`` -> bundle -> capacity -> ``Forecast``, in one vectorised
  pass over every entity of the request;
* ``postprocess``: ``Forecast`` -> v1 body or v2 ``InferResponse``, and the request counters.

Each stage of a history or a large request runs on the worker pool (``serving.pool``), not on
KServe's event loop, which stays free for probes and other connections; a few feature rows are
answered on the loop, faster than a thread hop. ``__call__`` holds one place of the pool throughout.

Answer per entity (or feature row): ``p50_h{h}`` for each horizon asked for (and
``p90_h{h}`` where the model has quantiles), ``peak_prob``, and the capacity that keeps
utilisation at the target under the highest forecast: ``recommended_vcpus`` and
``recommended_replicas``.

A memory bundle (``ModelBundle.target == "mem"``) is served the same way: the forecasts and
``peak_prob`` are about ``mem_util``, which every history must carry; a request gives
``mem_gib`` (GiB of one replica) instead of ``vcpus`` and ``replicas``, and the answer's capacity
is ``recommended_mem_gib`` (``capacity.recommend_memory``). Its feature rows are declared and
read by the names canonical data gives them (``resources.data_names``: ``mem_util_lag_1``).
The v2 model metadata's ``platform`` names the resource: ``mlco-forecast/cpu`` or ``mlco-forecast/mem``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kserve
import numpy as np
import pandas as pd
from kserve.errors import InferenceError, ModelMissingError
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
from ml_cloud_optimizer.models.base import Forecaster, forecast_column
from ml_cloud_optimizer.models.bundle import ModelBundle
from ml_cloud_optimizer.models.tabular import TabularForecaster
from ml_cloud_optimizer.resources import DEFAULT_RESOURCE, UTIL_COLUMN, data_names
from ml_cloud_optimizer.serving.capacity import recommend_capacity, recommend_memory
from ml_cloud_optimizer.serving.errors import ErrorKind, RequestError
from ml_cloud_optimizer.serving.metrics import ERRORS, LATENCY, PEAKS, REQUESTS, ROWS, claim_error
from ml_cloud_optimizer.serving.parser import RequestParser
from ml_cloud_optimizer.serving.pool import INLINE_BODY_BYTES, INLINE_ROWS, WorkerPool
from ml_cloud_optimizer.serving.types import (
    CAPACITY_INPUTS,
    CAPACITY_OUTPUTS,
    Forecast,
    ForecastRequest,
    RequestLimits,
)

__all__ = ["PLATFORM", "ForecastModel"]

PLATFORM = "mlco-forecast/{resource}"  # the v2 model metadata's platform: what the model forecasts
_INPUT_TYPES = {"vcpus": "FP64", "replicas": "INT64", "mem_gib": "FP64"}


class ForecastModel(kserve.Model):
    """Serves one champion directory under ``name``.

    Args:
        name: the model name in the URL (``/v1/models/NAME:predict``).
        model_dir: the champion directory (``metadata.json`` plus model files).
        limits: bounds on one request.
        target_utilization: default utilisation the capacity recommendation aims at.
        peak_threshold: peak probability from which a row counts as a predicted peak.
        pool: the threads the stages run on, off KServe's event loop (``serving.pool``).
    """

    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        *,
        limits: RequestLimits = RequestLimits(),
        target_utilization: float = 0.7,
        peak_threshold: float = 0.5,
        pool: WorkerPool | None = None,
    ):
        super().__init__(name)
        self.pool = pool if pool is not None else WorkerPool()
        self.model_dir = Path(model_dir)
        self.limits = limits
        self.target_utilization = target_utilization
        self.peak_threshold = peak_threshold
        self.bundle: ModelBundle | None = None
        self.tabular: TabularForecaster | None = None
        self.parser: RequestParser | None = None
        self.horizons: tuple[int, ...] = ()
        self.has_quantiles = False
        self.feature_names: list[str] = []
        self.output_names: list[str] = []
        self.resource = DEFAULT_RESOURCE
        self.capacity_outputs: tuple[str, ...] = CAPACITY_OUTPUTS[DEFAULT_RESOURCE]

    @property
    def platform(self) -> str:
        """The v2 metadata's ``platform`` (``runtime.ServingDataPlane``): the resource forecast."""
        return PLATFORM.format(resource=self.resource)

    # -- lifecycle --------------------------------------------------------------------------

    def load(self) -> bool:
        """Load the champion; a directory without ``metadata.json`` is ``ModelMissingError``."""
        if not (self.model_dir / Forecaster.METADATA_FILE).is_file():
            raise ModelMissingError(f"{self.model_dir} holds no {Forecaster.METADATA_FILE}: not a champion directory")
        self.bundle = ModelBundle.load(self.model_dir)
        self.resource = self.bundle.target
        self.capacity_outputs = CAPACITY_OUTPUTS[self.resource]
        self.horizons = tuple(int(h) for h in self.bundle.horizons)
        self.has_quantiles = "p90" in self.bundle.quantiles
        # Tabular forecasters also take ready-made feature rows; sequence models read history only.
        forecaster = self.bundle.forecaster
        self.tabular = forecaster if isinstance(forecaster, TabularForecaster) else None
        self.feature_names = data_names(list(self.tabular.feature_columns_), self.resource) if self.tabular else []
        self.output_names = self._output_names()
        self.parser = RequestParser(
            feature_names=self.feature_names,
            horizons=self.horizons,
            min_history=self.bundle.min_history,
            output_names=self.output_names,
            limits=self.limits,
            target_utilization=self.target_utilization,
            resource=self.resource,
        )
        self.ready = True
        return self.ready

    def _output_names(self) -> list[str]:
        """Every v2 output tensor, in answer order."""
        names = ["entity_id", "ts"]
        names += [forecast_column(h) for h in self.horizons]
        if self.has_quantiles:
            names += [forecast_column(h, "p90") for h in self.horizons]
        return [*names, "peak_prob", *self.capacity_outputs]

    # -- v2 model metadata ------------------------------------------------------------------

    def get_input_types(self) -> list[dict]:
        """History tensors (one element per sample), then the feature-row form: ``features [rows, n]``."""
        history = [
            {"name": "entity_id", "datatype": "BYTES", "shape": [-1]},
            {"name": "ts", "datatype": "INT64", "shape": [-1]},
            *({"name": c, "datatype": "FP64", "shape": [-1]} for c in VALUE_COLUMNS),
            *({"name": c, "datatype": _INPUT_TYPES[c], "shape": [-1]} for c in CAPACITY_INPUTS[self.resource]),
        ]
        if self.feature_names:
            history.append({"name": "features", "datatype": "FP64", "shape": [-1, len(self.feature_names)]})
        return history

    def get_output_types(self) -> list[dict]:
        types = {"entity_id": "BYTES", "ts": "INT64", "recommended_replicas": "INT64"}
        return [{"name": n, "datatype": types.get(n, "FP64"), "shape": [-1]} for n in self.output_names]

    # -- inference --------------------------------------------------------------------------

    async def __call__(self, body, headers=None, verb=InferenceVerb.PREDICT):
        """KServe's stages (``kserve.Model.__call__``), inside one place of the worker pool.

        The place is taken before the first stage and held to the last, so a full pool refuses a
        request (``pool.Overloaded``) before any of its work starts, never halfway through.
        """
        with self.pool.admitted():
            return await super().__call__(body, headers, verb)

    async def preprocess(self, payload: dict | InferRequest, headers: dict | None = None) -> ForecastRequest:
        """Stage one: the decoded body (v1 dict, v2 ``InferRequest``) as a checked ``ForecastRequest``.

        On the pool unless the body is small.

        Client mistakes raise ``RequestError`` (400) here, counted by kind.
        """
        received = time.perf_counter()
        request = await self.pool.run(self._parse, payload, inline=_small_body(headers))
        request.received_s = received
        return request

    def _parse(self, payload: dict | InferRequest) -> ForecastRequest:
        assert self.parser is not None, "load() first"
        with self._errors_counted():
            return self.parser.parse(payload)

    def validate(self, payload: ForecastRequest) -> ForecastRequest:
        """Passes the request on: ``preprocess`` checked it.

        KServe's own ``validate`` looks into a dict (``"inputs" in payload`` under the v2
        protocol), which is a ``TypeError`` on a ``ForecastRequest``.
        """
        return payload

    async def predict(self, payload: ForecastRequest, headers: dict | None = None) -> Forecast:
        """Stage two: the forecast and capacity of every entity (or feature row); on the pool unless light."""
        return await self.pool.run(self._predict, payload, inline=_light(payload))

    def _predict(self, payload: ForecastRequest) -> Forecast:
        with self._errors_counted():
            return Forecast(payload, self.forecast(payload))

    async def postprocess(
        self, result: Forecast, headers: dict | None = None, response_headers: dict | None = None
    ) -> dict | InferResponse:
        """Stage three: the answer in the request's protocol, with its counters; on the pool unless light."""
        return await self.pool.run(self._answer, result, inline=_light(result.request))

    def _answer(self, result: Forecast) -> dict | InferResponse:
        request, answer = result.request, result.columns
        with self._errors_counted():
            response = _v1_response(answer) if request.protocol == "v1" else self._v2_response(request, answer)
        protocol = request.protocol
        REQUESTS.labels(model_name=self.name, protocol=protocol, input=request.form).inc()
        ROWS.labels(model_name=self.name, protocol=protocol).inc(len(request.entity_id))
        peaks = int(np.count_nonzero(answer["peak_prob"] >= self.peak_threshold))
        if peaks:
            PEAKS.labels(model_name=self.name).inc(peaks)
        if request.received_s is not None:
            LATENCY.labels(model_name=self.name, protocol=protocol).observe(time.perf_counter() - request.received_s)
        return response

    @contextmanager
    def _errors_counted(self) -> Iterator[None]:
        """Count a failing stage's error by kind; what is not a client mistake becomes ``InferenceError``."""
        try:
            yield
        except RequestError as exc:
            ERRORS.labels(model_name=self.name, kind=exc.kind.value).inc()
            claim_error()
            raise
        except Exception as exc:
            ERRORS.labels(model_name=self.name, kind="internal").inc()
            claim_error()
            raise InferenceError(f"forecast failed: {type(exc).__name__}: {exc}") from exc

    def forecast(self, request: ForecastRequest) -> dict[str, np.ndarray]:
        """The answer, column by column: one row per entity (or feature row) of ``request``, in its order.

        Columns: ``entity_id``, ``ts`` (the origin, where known), ``p50_h{h}`` and ``p90_h{h}``
        for the horizons asked for, ``peak_prob``, ``recommended_vcpus``, ``recommended_replicas``
        (a memory model: ``recommended_mem_gib``).
        """
        wanted = set(request.outputs) if request.outputs is not None else set(self.output_names)
        capacity = bool(wanted & set(self.capacity_outputs))
        p90_asked = any(forecast_column(h, "p90") in wanted for h in request.horizons)
        quantiles = ("p50", "p90") if self.has_quantiles and (capacity or p90_asked) else ("p50",)
        if request.history is not None:
            forecast = self._forecast_history(request)
        else:
            forecast = self._forecast_features(request, quantiles)
        answer = {"entity_id": request.entity_id}
        if "ts" in forecast:
            answer["ts"] = forecast["ts"]
        for quantile in quantiles:
            for h in request.horizons:
                answer[forecast_column(h, quantile)] = forecast[forecast_column(h, quantile)]
        answer["peak_prob"] = forecast["peak_prob"]
        if capacity:
            upper = np.column_stack([answer[forecast_column(h, quantiles[-1])] for h in request.horizons])
            if self.resource == "mem":
                assert request.mem_gib is not None, "the parser gives a memory model's requests mem_gib"
                answer["recommended_mem_gib"] = recommend_memory(
                    upper.max(axis=1), self._observed_peak(request), request.mem_gib, request.target_utilization
                )
            else:
                answer["recommended_vcpus"], answer["recommended_replicas"] = recommend_capacity(
                    upper.max(axis=1), request.vcpus, request.replicas, request.target_utilization
                )
        return answer

    def _observed_peak(self, request: ForecastRequest) -> np.ndarray:
        """Per answer row, the highest utilisation of the resource the request shows.

        A history's highest sample; a feature row's current value (its only sample).
        """
        if request.history is not None:
            column = UTIL_COLUMN[self.resource]
            highest = request.history.groupby("entity_id", observed=True)[column].max()
            return highest.reindex(request.entity_id).to_numpy(dtype="float64", na_value=np.nan)
        assert self.tabular is not None and request.features is not None
        return request.features[:, self.tabular.target_index_]

    def _forecast_history(self, request: ForecastRequest) -> dict[str, np.ndarray]:
        """The bundle's own forecast from history (features, boosters and peak classifier), in request order."""
        assert self.bundle is not None, "load() first"
        raw = self.bundle.predict(request.history).drop_duplicates("entity_id", keep="last")
        raw = raw.set_index(raw["entity_id"].astype(str)).reindex(request.entity_id)
        first = forecast_column(self.horizons[0])
        if raw[first].isna().any():
            missing = raw.index[raw[first].isna()][0]
            raise RequestError(
                "history", f"entity {missing!r} has no forecastable last sample", ErrorKind.HISTORY_TOO_SHORT
            )
        out = {c: raw[c].to_numpy(dtype="float64") for c in raw.columns if c not in ("entity_id", "ts")}
        out["ts"] = raw["ts"].to_numpy()
        return out

    def _forecast_features(self, request: ForecastRequest, quantiles: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Forecasts from ready-made feature rows, for the horizons and quantiles asked only.

        ``TabularForecaster.predict_matrix`` runs the boosters on the request's matrix as it is,
        with no frame around it, and gives what ``predict_features`` gives, bit for bit. The
        bundle's peak classifier reads history (it adds per-entity threshold features), so
        feature-row answers carry ``peak_prob`` NaN (JSON null).
        """
        assert self.tabular is not None, "feature rows need a tabular forecaster; load() sets it"
        assert request.features is not None, "the parser gives feature rows or history"
        anchor = self.tabular.target_index_
        missing = np.isnan(request.features[:, anchor])
        if missing.any():
            row = int(np.argmax(missing))
            raise RequestError(
                f"features[{row}].{self.feature_names[anchor]}",
                "missing; the forecast starts from the current value",
                ErrorKind.MISSING_FIELD,
            )
        out = self.tabular.predict_matrix(request.features, request.horizons, quantiles)
        out["peak_prob"] = np.full(len(request.features), np.nan)
        if request.ts is not None:
            out["ts"] = request.ts.to_numpy()
        return out

    def _v2_response(self, request: ForecastRequest, answer: dict[str, np.ndarray]) -> InferResponse:
        """The answer as v2 tensors (those the client asked for), always with an id."""
        wanted = None if request.request_outputs is None else {o.name for o in request.request_outputs}
        outputs = []
        for name, values in answer.items():
            if wanted is not None and name not in wanted:
                continue
            if name == "entity_id":
                data, datatype = np.asarray(values, dtype=object), "BYTES"
            elif name == "ts":
                data, datatype = _epoch_seconds(values), "INT64"
            elif name == "recommended_replicas":
                data, datatype = np.asarray(values, dtype=np.int64), "INT64"
            else:
                data, datatype = np.asarray(values, dtype=np.float64), "FP64"
            outputs.append(InferOutput(name=name, shape=[len(data)], datatype=datatype, data=data))
        return InferResponse(
            response_id=request.response_id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=request.binary_outputs,
            requested_outputs=request.request_outputs,
        )


def _v1_response(answer: dict[str, np.ndarray]) -> dict:
    """``{"predictions": [{column: value, ...}, ...]}``, timestamps as ISO-8601 UTC, NaN as null."""
    columns: dict[str, list] = {}
    for name, values in answer.items():
        if name == "ts":
            columns[name] = [f"{t}Z" for t in np.datetime_as_string(_epoch_seconds(values).astype("datetime64[s]"))]
        elif name == "entity_id":
            columns[name] = list(values)
        else:
            array = np.asarray(values)
            columns[name] = (
                array.tolist()
                if array.dtype.kind != "f" or not np.isnan(array).any()
                else [None if np.isnan(v) else v for v in array.tolist()]
            )
    names = list(columns)
    return {"predictions": [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]}


def _epoch_seconds(values) -> np.ndarray:
    """Timestamps (UTC datetimes of any resolution) as int64 epoch seconds."""
    stamps = pd.to_datetime(pd.Series(values), utc=True)
    return (stamps.astype("int64") // 10**9).to_numpy()


def _small_body(headers: dict | None) -> bool:
    """Whether the request's body is small enough to parse on the loop (REST only: gRPC has no length)."""
    length = (headers or {}).get("content-length")
    return length is not None and str(length).isdigit() and int(length) <= INLINE_BODY_BYTES


def _light(request: ForecastRequest) -> bool:
    """A few feature rows; a history builds its features, far heavier than its size says."""
    return request.form != "history" and len(request.entity_id) <= INLINE_ROWS
