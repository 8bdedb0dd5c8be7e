"""Prometheus as a data source: CPU and memory per pod, workload or node from ``/api/v1/query_range``.

Why a reader of its own: a Kubernetes cluster already keeps the history this tool learns from
in Prometheus (cAdvisor usage, kube-state-metrics requests and owners, node_exporter), so
pointing ``mlco`` at it saves an export step, and the source string works wherever a trace path
does (``mlco ingest``, ``mlco train --source``, ``mlco run --source``, ``mlco recommend
--source``, ``mlco db load``, ``read_fleet``). Thanos, Mimir and VictoriaMetrics answer the same
API and take the same credentials.

URL: ``prometheus://HOST:PORT`` (plain HTTP) or ``prometheus+https://HOST:PORT`` (a path after
the port is kept, for a server behind a prefix), then query parameters, each also a keyword of
``read`` (which overrides the string) and a flag of ``mlco ingest``:

* ``start``, ``end``: RFC 3339 or unix seconds; default the last 14 days.
* ``step``: ``5m``, the canonical grid (default), or a step that divides it (``15s``, ``1m``...)
  whose samples are averaged into the slot of the five minutes they end in, as a 5m step's
  ``rate()`` covers the five minutes ending at its slot. ``window``: the ``rate()`` window
  (default ``5m``; with a finer step, a window of two scrape intervals or so).
* ``level``: ``pod``, ``workload`` (the default) or ``node``; what each reads is in ``levels``.
* ``namespace``: one namespace (not for nodes). ``selector``: more PromQL label matchers, such as
  ``pod=~"web-.*",container!="istio-proxy"``; URL-encode it inside the string (``+`` would
  otherwise read as a space, ``&`` end it), or give it with ``--selector``.
* ``token_file``: a file holding a bearer token; ``token_file=serviceaccount`` is the pod's own
  Kubernetes service-account token (sent only when asked for). Without it,
  ``MLCO_PROMETHEUS_TOKEN`` is the token when set.
* ``user`` (or ``prometheus+https://USER@HOST``): basic auth; the password comes from
  ``password_file`` or ``MLCO_PROMETHEUS_PASSWORD``, never from the URL (refused there: the
  string is logged and stored as the fleet's source).
* ``ca_file``: PEM file of the CA that signed an https server's certificate.

Example: ``prometheus+https://prom.example:9090?level=workload&namespace=shop&ca_file=ca.pem&user=mlco``.

The fleet's ``source`` is the canonical string (range resolved, overrides applied), so a fleet
says exactly what was read. Range queries are cut into chunks of at most ``max_points`` (11,000,
Prometheus's own cap) points per series, a few in flight at once, retried with back-off, with a
progress bar on a terminal (``api``). Options besides the parameters: ``max_points``,
``retries``, ``backoff`` (seconds, doubled each retry), ``timeout`` (seconds per request),
``concurrency`` (requests in flight), ``region``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.data.traces.prometheus import api, levels, source
from ml_cloud_optimizer.data.traces.prometheus.source import SCHEMES, is_url

__all__ = ["SCHEMES", "is_url", "read", "sniff"]

log = logging.getLogger(__name__)

FILE_PREFIX = None
READS_CSV_DIRECTORY = False
MAX_POINTS = 11_000


def sniff(_path: Path, _line: str) -> bool:
    """Never a file: a Prometheus source is a URL, told by ``is_url``."""
    return False


def read(
    path: str,
    *,
    start: str | float | None = None,
    end: str | float | None = None,
    step: str | None = None,
    level: str | None = None,
    namespace: str | None = None,
    selector: str | None = None,
    window: str | None = None,
    token_file: str | None = None,
    user: str | None = None,
    password_file: str | None = None,
    ca_file: str | None = None,
    max_points: int = MAX_POINTS,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30.0,
    concurrency: int = 4,
    region: str = "k8s",
) -> Fleet:
    """Query the Prometheus named by the source string ``path`` and return the fleet of its level.

    Args:
        path: ``prometheus://HOST:PORT?...`` (see the module docstring).
        start, end, step, level, namespace, selector, window, token_file, user, password_file,
            ca_file: override the string's parameter of that name when not None.
        max_points, retries, backoff, timeout, concurrency: how the HTTP API is asked.
        region: the entities' region.

    Returns:
        The validated fleet, ``gaps`` set, ``source`` the canonical string.

    Raises:
        UserInputError: a bad string or option, an unreachable or refusing server, bad credentials.
        DataValidationError: no usage samples in the range.
    """
    overrides = {
        "start": start,
        "end": end,
        "step": step,
        "level": level,
        "namespace": namespace,
        "selector": selector,
        "window": window,
        "token_file": token_file,
        "user": user,
        "password_file": password_file,
        "ca_file": ca_file,
    }
    src = source.parse(path, overrides)
    plan = levels.queries(src)
    began = time.perf_counter()
    with api.client(src, timeout) as http:
        fetcher = api.Api(
            http, src.label, max_points=max_points, retries=retries, backoff=backoff, concurrency=concurrency
        )
        results = fetcher.fetch(plan, src.start, src.end)
    seconds = time.perf_counter() - began
    samples = sum(len(frame) for frame in results.values())
    wide = levels.combine(src, results)
    log.info(
        "prometheus: %d samples (%d queries) in %.2f s, %.0f samples/s; %d %ss",
        samples,
        len(plan),
        seconds,
        samples / max(seconds, 1e-9),
        wide.index.get_level_values(0).nunique(),
        src.level,
    )
    return levels.to_fleet(wide, src.label, region, src.level)
