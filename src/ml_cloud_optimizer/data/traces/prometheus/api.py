"""Prometheus's HTTP API: authentication, chunked ``query_range`` calls in parallel, retries, progress.

Why chunks: Prometheus refuses a range query of more than 11,000 points per series, so a long
range is cut into spans of at most ``max_points`` steps and the pieces joined. Why parallel:
each chunk is a round trip in which the server evaluates and we decode JSON; a few in flight
(``concurrency``, default 4) keep both busy. Why these retries: connection failures, 429 (a
Thanos or Mimir front end throttling) and 5xx pass with time, so they are retried with doubling
back-off; a 4xx, a refused certificate or a bad query will not, so they fail at once with a
one-line ``UserInputError`` (401 and 403 name the credentials to check).

Auth (Thanos, Mimir and VictoriaMetrics take the same headers): a bearer token from
``token_file`` (``serviceaccount`` names the pod's Kubernetes service-account token) or else
``MLCO_PROMETHEUS_TOKEN``; basic auth for ``user`` with the password from ``password_file`` or
``MLCO_PROMETHEUS_PASSWORD``; ``ca_file`` verifies an https server signed by a private CA.
The service-account token is sent only when asked for: a credential goes only where the user
said to send it, never to whatever https URL happens to be given inside a pod.
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd

from ml_cloud_optimizer.data.traces.prometheus.source import Source
from ml_cloud_optimizer.errors import UserInputError

__all__ = ["PASSWORD_ENV", "SERVICEACCOUNT_TOKEN", "TOKEN_ENV", "Api", "Query", "client"]

log = logging.getLogger(__name__)

TOKEN_ENV = "MLCO_PROMETHEUS_TOKEN"
PASSWORD_ENV = "MLCO_PROMETHEUS_PASSWORD"
SERVICEACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_RETRIED = {429} | set(range(500, 600))


@dataclass(frozen=True)
class Query:
    """One PromQL range query: its expression, the labels that key its series, its step in seconds."""

    expr: str
    by: tuple[str, ...]
    step: int = 300


def client(src: Source, timeout: float) -> httpx.Client:
    """An HTTP client for ``src``: base URL, credentials and certificate check as the source asks."""
    headers, auth = {}, None
    token_file = src.token_file
    if token_file and src.user:
        raise UserInputError(f"{src.label}: both token_file and user given; choose bearer token or basic auth")
    if src.user:
        auth = httpx.BasicAuth(src.user, _password(src))
    elif token_file:
        path = SERVICEACCOUNT_TOKEN if token_file == "serviceaccount" else token_file
        headers["Authorization"] = f"Bearer {_secret(path, 'token_file', src.label)}"
    elif os.environ.get(TOKEN_ENV, "").strip():
        headers["Authorization"] = f"Bearer {os.environ[TOKEN_ENV].strip()}"
    if (auth or headers) and not src.https:
        log.warning("prometheus: sending credentials over plain HTTP to %s; use prometheus+https://", src.base)
    verify: ssl.SSLContext | bool = True
    if src.ca_file:
        if not Path(src.ca_file).is_file():
            raise UserInputError(f"{src.label}: ca_file {src.ca_file}: no such file")
        try:
            verify = ssl.create_default_context(cafile=src.ca_file)
        except ssl.SSLError as exc:
            raise UserInputError(f"{src.label}: ca_file {src.ca_file}: not a PEM certificate ({exc})") from None
    return httpx.Client(base_url=src.base, timeout=timeout, headers=headers, auth=auth, verify=verify)


def _password(src: Source) -> str:
    if src.password_file:
        return _secret(src.password_file, "password_file", src.label)
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise UserInputError(
            f"{src.label}: user={src.user} needs a password: set {PASSWORD_ENV} or pass password_file="
        )
    return password


def _secret(path: str, name: str, label: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise UserInputError(f"{label}: {name} {path}: cannot read it ({exc.strerror or exc})") from None
    if not text:
        raise UserInputError(f"{label}: {name} {path}: the file is empty")
    return text


class Api:
    """``query_range`` over ``[start, end]`` for several queries at once, chunked, retried, with progress."""

    def __init__(
        self, http: httpx.Client, label: str, *, max_points: int, retries: int, backoff: float, concurrency: int
    ) -> None:
        if max_points < 2:
            raise UserInputError(f"max_points {max_points}: a chunk needs at least 2 points")
        if concurrency < 1:
            raise UserInputError(f"concurrency {concurrency}: at least one request must be in flight")
        self.http, self.label = http, label
        self.max_points, self.retries, self.backoff, self.concurrency = max_points, retries, backoff, concurrency

    def fetch(self, queries: dict[str, Query], start: int, end: int) -> dict[str, pd.DataFrame]:
        """Per query a long frame: its ``by`` labels, ``slot`` (epoch s) and ``value``; chunks joined, unsorted."""
        jobs = [(name, lo, hi) for name, q in queries.items() for lo, hi in self._chunks(start, end, q.step)]
        parts: dict[str, list[pd.DataFrame]] = {name: [] for name in queries}
        progress = _Progress(len(jobs))
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._get, queries[name], lo, hi): name for name, lo, hi in jobs}
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        parts[futures[future]].append(future.result())  # raises the first failure
                        progress.advance()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
            finally:
                progress.close()
        return {name: pd.concat(parts[name], ignore_index=True) for name in queries}  # chunks never overlap

    def _chunks(self, start: int, end: int, step: int) -> Iterator[tuple[int, int]]:
        """Spans of at most ``max_points`` points from ``start``; the last point is at or past ``end``."""
        span = (self.max_points - 1) * step
        last = start + -(-(end - start) // step) * step
        lo = start
        while lo <= last:
            hi = min(lo + span, last)
            yield lo, hi
            lo = hi + step

    def _get(self, query: Query, start: int, end: int) -> pd.DataFrame:
        params = {"query": query.expr, "start": str(start), "end": str(end), "step": f"{query.step}s"}
        for attempt in range(self.retries + 1):
            try:
                response = self.http.get("/api/v1/query_range", params=params)
            except httpx.HTTPError as exc:
                if _tls_refused(exc):
                    raise UserInputError(
                        f"{self.label}: TLS: the server's certificate was refused ({_first_line(str(exc))});"
                        " pass ca_file= with the CA that signed it"
                    ) from None
                reason = f"cannot reach Prometheus at {self.http.base_url}: {type(exc).__name__}: {exc}"
            else:
                if response.status_code not in _RETRIED:
                    return self._parse(response, query.by)
                reason = f"Prometheus answered HTTP {response.status_code}: {_first_line(response.text)}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise UserInputError(f"{self.label}: {_first_line(reason)} (after {self.retries + 1} tries)")

    def _parse(self, response: httpx.Response, by: tuple[str, ...]) -> pd.DataFrame:
        status = response.status_code
        if status in (401, 403):
            what = "Unauthorized" if status == 401 else "Forbidden"
            raise UserInputError(
                f"{self.label}: Prometheus answered HTTP {status} {what}: check the user and password"
                f" (password_file= or {PASSWORD_ENV}) or the bearer token (token_file= or {TOKEN_ENV})"
            )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = {}
        if not isinstance(body, dict) or status != 200 or body.get("status") != "success":
            why = (body.get("error") if isinstance(body, dict) else None) or _first_line(response.text)
            raise UserInputError(f"{self.label}: Prometheus refused the query (HTTP {status}): {_first_line(why)}")
        data = body.get("data") or {}
        if data.get("resultType") != "matrix":
            raise UserInputError(f"{self.label}: expected a matrix from query_range, got {data.get('resultType')}")
        result = data.get("result") or []
        series = [item.get("values") or [] for item in result]
        lengths = np.array([len(values) for values in series], dtype="int64")
        codes = np.repeat(np.arange(len(result)), lengths)
        columns = {
            label: np.array([item.get("metric", {}).get(label, "") for item in result], dtype=object)[codes]
            for label in by
        }
        # fromiter per series: the quickest way found from JSON pairs [t, "v"] to two float arrays
        stamps = [np.fromiter((p[0] for p in values), "float64", len(values)) for values in series]
        values = [np.fromiter((p[1] for p in values), "float64", len(values)) for values in series]
        columns["slot"] = np.concatenate([np.empty(0), *stamps]).round().astype("int64")
        columns["value"] = np.concatenate([np.empty(0), *values])
        return pd.DataFrame(columns)


class _Progress:
    """A one-line bar on stderr while chunks arrive: only on a terminal, and only when INFO lines show (not -q)."""

    def __init__(self, total: int) -> None:
        stream = sys.stderr
        self.on = total > 1 and stream.isatty() and logging.getLogger("ml_cloud_optimizer").isEnabledFor(logging.INFO)
        self.total, self.done, self.drawn, self.began = total, 0, 0.0, time.monotonic()
        self.lock = threading.Lock()

    def advance(self) -> None:
        with self.lock:
            self.done += 1
            now = time.monotonic()
            if self.on and (now - self.drawn > 0.1 or self.done == self.total):
                self.drawn = now
                filled = int(30 * self.done / self.total)
                bar = "#" * filled + "." * (30 - filled)
                sys.stderr.write(
                    f"\r[mlco] prometheus [{bar}] {self.done}/{self.total} chunks, {now - self.began:.1f} s"
                )
                sys.stderr.flush()

    def close(self) -> None:
        if self.on and self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _tls_refused(exc: BaseException) -> bool:
    """Whether a connection failed on the certificate check (retrying cannot help)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
