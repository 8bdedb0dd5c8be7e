"""Prometheus as a data source: pod CPU and memory from a live ``/api/v1/query_range``.

Why a reader of its own: a Kubernetes cluster already keeps the history this tool learns from
in Prometheus (cAdvisor usage, kube-state-metrics requests), so pointing ``mlco`` at it
saves an export step, and the source string ``prometheus://HOST:PORT?...`` works wherever a
trace path does (``mlco ingest``, ``mlco train --source``, ``read_fleet``).

URL: ``prometheus://HOST:PORT`` (plain HTTP) or ``prometheus+https://HOST:PORT``, then query
parameters ``start`` and ``end`` (RFC 3339 or unix seconds; default the last 14 days),
``step`` (only ``5m``, the canonical grid), ``namespace`` (optional filter), ``level`` (only
``pod`` so far) and ``window`` (the ``rate()`` window, default ``5m``: at least two scrapes).

Per pod (entity ``namespace/pod``), summed over its containers (``container!=""`` and not the
``POD`` sandbox): ``cpu_util`` is ``rate(container_cpu_usage_seconds_total[window])`` over the
CPU request, ``mem_util`` is ``container_memory_working_set_bytes`` over the memory request;
requests come from ``kube_pod_container_resource_requests``, limits standing in for a pod
that has none. Utilisation is clipped to ``[0, UTIL_MAX]`` (a log line says how many values
were). ``vcpus`` is a whole number in the schema, so a pod's largest CPU request is rounded up
(0.5 cores -> 1 vCPU); ``hourly_price`` is estimated from the unrounded request. A pod with
neither request nor limit cannot be given a utilisation and is left out (logged).

Range queries are cut into chunks of at most ``max_points`` (11,000, Prometheus's own cap)
points per series; connection errors and 5xx answers are retried with back-off.

Options: ``max_points``, ``retries``, ``backoff`` (seconds, doubled each retry), ``timeout``
(seconds per request), ``region``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import STEP_SECONDS, UTIL_MAX, DataValidationError, Fleet, estimate_hourly_price
from ml_cloud_optimizer.data.traces._stream import to_fleet
from ml_cloud_optimizer.errors import UserInputError

__all__ = ["SCHEMES", "is_url", "read", "sniff"]

log = logging.getLogger(__name__)

# Source strings with these prefixes are Prometheus servers, not paths.
SCHEMES = {"prometheus": "http", "prometheus+http": "http", "prometheus+https": "https"}
FILE_PREFIX = None
READS_CSV_DIRECTORY = False
MAX_POINTS = 11_000
DEFAULT_DAYS = 14
_PARAMS = ("start", "end", "step", "namespace", "level", "window")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_CONTAINERS = 'container!="",container!="POD"'


def is_url(source: object) -> bool:
    """Whether ``source`` is a ``prometheus://`` (or ``prometheus+https://``) source string."""
    return isinstance(source, str) and source.split("://", 1)[0].lower() in SCHEMES and "://" in source


def sniff(_path: Path, _line: str) -> bool:
    """Never a file: a Prometheus source is a URL, told by ``is_url``."""
    return False


def read(
    path: str,
    *,
    max_points: int = MAX_POINTS,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30.0,
    region: str = "k8s",
) -> Fleet:
    """Query the Prometheus named by the source string ``path`` and return the pod fleet."""
    query = _parse(path)
    if max_points < 2:
        raise UserInputError(f"max_points {max_points}: a chunk needs at least 2 points")
    ns = f',namespace="{_escape(query["namespace"])}"' if query["namespace"] else ""
    window = query["window"]
    by = "sum by (namespace, pod)"

    def provisioned(resource: str) -> str:
        sel = f'{{resource="{resource}"{ns}}}'
        return f"{by} (kube_pod_container_resource_requests{sel}) or {by} (kube_pod_container_resource_limits{sel})"

    promql = {
        "cores": f"{by} (rate(container_cpu_usage_seconds_total{{{_CONTAINERS}{ns}}}[{window}]))",
        "mem_bytes": f"{by} (container_memory_working_set_bytes{{{_CONTAINERS}{ns}}})",
        "cpu_request": provisioned("cpu"),
        "mem_request": provisioned("memory"),
    }
    began = time.perf_counter()
    with httpx.Client(base_url=query["base"], timeout=timeout) as client:
        api = _Api(client, path, retries, backoff)
        series = {name: api.range(expr, query["start"], query["end"], max_points) for name, expr in promql.items()}
    frame = pd.concat(series, axis=1)
    samples = int(sum(s.notna().sum() for s in series.values()))
    log.info(
        "prometheus: %d samples of %d pods in %.2f s",
        samples,
        frame.index.get_level_values(0).nunique(),
        time.perf_counter() - began,
    )
    return _to_fleet(frame, path, region)


def _to_fleet(frame: pd.DataFrame, source: str, region: str) -> Fleet:
    """Utilisation per (pod, slot) and one entity row per pod, as a validated fleet."""
    if frame.empty or frame["cores"].notna().sum() == 0:
        raise DataValidationError(f"{source}: no container_cpu_usage_seconds_total samples in this range")
    frame = frame[frame["cores"].notna()]
    cpu_req = frame["cpu_request"].where(frame["cpu_request"] > 0)
    mem_req = frame["mem_request"].where(frame["mem_request"] > 0)
    no_request = frame.groupby(level=0)["cpu_request"].max()
    dropped = no_request[~(no_request > 0)].index
    if len(dropped):
        log.warning("prometheus: %d pods have no CPU request or limit, left out (first: %s)", len(dropped), dropped[0])
    util = pd.DataFrame({"cpu_util": frame["cores"] / cpu_req, "mem_util": frame["mem_bytes"] / mem_req})
    util = util[util["cpu_util"].notna()]
    values = util.to_numpy()
    finite = np.isfinite(values)
    clipped = int((finite & ((values < 0) | (values > UTIL_MAX))).sum())
    if clipped:
        log.warning("prometheus: %d utilisation values clipped to [0, %s]", clipped, UTIL_MAX)
    util[:] = np.where(finite, np.clip(values, 0.0, UTIL_MAX), np.nan)
    pods = util.index.get_level_values(0).unique()
    cores = frame["cpu_request"].groupby(level=0).max().reindex(pods)
    gib = (frame["mem_request"].groupby(level=0).max().reindex(pods) / 2**30).fillna(0.0)
    gib = gib.where(gib > 0, cores * 4.0)  # no memory request: assume 4 GiB per core, mem_util stays NaN
    vcpus = np.maximum(np.ceil(cores.to_numpy() - 1e-9), 1).astype("int64")  # schema: whole vCPUs
    entities = pd.DataFrame(
        {
            "entity_id": pd.array(pods, dtype="string"),
            "service": [p.split("/", 1)[0] for p in pods],
            "instance_type": [f"k8s-pod-{c:g}c-{g:.3g}g" for c, g in zip(cores, gib, strict=True)],
            "region": region,
            "vcpus": vcpus,
            "mem_gib": gib.to_numpy(),
            "hourly_price": estimate_hourly_price(cores.to_numpy(), gib.to_numpy()),
        }
    )
    slots = util.reset_index()
    slots.columns = ["entity_id", "slot", "cpu_util", "mem_util"]
    return to_fleet(slots, entities, f"prometheus:{source}")


class _Api:
    """``query_range`` in chunks, with retries; every failure a one-line ``UserInputError``."""

    def __init__(self, client: httpx.Client, source: str, retries: int, backoff: float) -> None:
        self.client, self.source, self.retries, self.backoff = client, source, retries, backoff

    def range(self, expr: str, start: int, end: int, max_points: int) -> pd.Series:
        """One series indexed by (entity ``namespace/pod``, epoch second), all chunks together."""
        parts = []
        span = (max_points - 1) * STEP_SECONDS
        lo = start
        while lo <= end:
            hi = min(lo + span, end)
            parts.append(self._get(expr, lo, hi))
            lo = hi + STEP_SECONDS
        series = pd.concat(parts) if parts else pd.Series(dtype="float64")
        return series[~series.index.duplicated(keep="last")].sort_index()

    def _get(self, expr: str, start: int, end: int) -> pd.Series:
        params = {"query": expr, "start": str(start), "end": str(end), "step": f"{STEP_SECONDS}s"}
        for attempt in range(self.retries + 1):
            try:
                response = self.client.get("/api/v1/query_range", params=params)
            except httpx.HTTPError as exc:
                reason = f"cannot reach Prometheus at {self.client.base_url}: {type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500:
                    return self._parse(response)
                reason = f"Prometheus answered HTTP {response.status_code}: {_first_line(response.text)}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise UserInputError(f"{self.source}: {_first_line(reason)} (after {self.retries + 1} tries)")

    def _parse(self, response: httpx.Response) -> pd.Series:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            why = body.get("error") or _first_line(response.text) or f"HTTP {response.status_code}"
            raise UserInputError(f"{self.source}: Prometheus refused the query: {_first_line(str(why))}")
        data = body.get("data", {})
        if data.get("resultType") != "matrix":
            raise UserInputError(f"{self.source}: expected a matrix from query_range, got {data.get('resultType')}")
        keys: list[tuple[str, int]] = []
        chunks = []
        for item in data.get("result", []):
            labels = item.get("metric", {})
            entity = f"{labels.get('namespace', '')}/{labels.get('pod', '')}"
            values = np.asarray(item.get("values", []), dtype=object).reshape(-1, 2)
            stamps = values[:, 0].astype("float64").round().astype("int64")
            keys.extend((entity, int(t)) for t in stamps)
            chunks.append(values[:, 1].astype("float64"))
        index = pd.MultiIndex.from_tuples(keys, names=["entity_id", "slot"]) if keys else None
        return pd.Series(np.concatenate(chunks) if chunks else np.empty(0), index=index, dtype="float64")


def _parse(source: str) -> dict:
    """Base URL and query parameters of a source string; anything wrong is a one-line error."""
    try:
        parts = urlsplit(source)
        port = parts.port
    except ValueError as exc:
        raise UserInputError(f"{source}: not a Prometheus URL ({exc}); expected prometheus://HOST:PORT?...") from None
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise UserInputError(f"{source}: expected prometheus://HOST:PORT or prometheus+https://HOST:PORT")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise UserInputError(f"{source}: unknown parameter {', '.join(unknown)}; known: {', '.join(_PARAMS)}")
    level = params.get("level", "pod")
    if level != "pod":
        raise UserInputError(f"{source}: level={level}: only level=pod is supported so far")
    step = params.get("step", "5m")
    if _seconds(step, source, "step") != STEP_SECONDS:
        raise UserInputError(f"{source}: step={step}: the canonical grid is 5m; use step=5m")
    window = params.get("window", "5m")
    _seconds(window, source, "window")
    now = time.time()
    end = _instant(params["end"], source, "end") if params.get("end") else now
    start = _instant(params["start"], source, "start") if params.get("start") else end - DEFAULT_DAYS * 86400
    start_slot, end_slot = math.ceil(start / STEP_SECONDS) * STEP_SECONDS, int(end // STEP_SECONDS) * STEP_SECONDS
    if start_slot > end_slot:
        raise UserInputError(f"{source}: start is after end (or they share one 5-minute slot)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{scheme}://{host}{f':{port}' if port else ''}{parts.path.rstrip('/')}"
    return {
        "base": base,
        "start": start_slot,
        "end": end_slot,
        "namespace": params.get("namespace") or None,
        "window": window,
    }


def _seconds(text: str, source: str, name: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise UserInputError(f"{source}: {name}={text}: expected a duration such as 5m, 300s or 1h")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _instant(text: str, source: str, name: str) -> float:
    """Unix seconds from RFC 3339 or a number of seconds."""
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip())  # a "+" offset that URL decoding made a space
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise UserInputError(f"{source}: {name}={text}: expected RFC 3339 or unix seconds")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return stamp.timestamp()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
