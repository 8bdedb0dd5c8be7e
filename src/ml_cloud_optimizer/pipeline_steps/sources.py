"""Where a run's data comes from: the synthetic generator, a real trace, or a live Prometheus, as one fleet.

A Prometheus source is a string, ``prometheus://HOST:PORT?start=...&end=...&level=...``
(``data.traces.prometheus``; a missing range is the last 14 days). Two shorter forms name the
cluster's own Prometheus, so that a pipeline parameter need not know its address: the bare word
``prometheus``, and a URL with no host (``prometheus://?level=pod&start=...``). Both take the
server from the setting ``MLCO_PROMETHEUS_URL`` (on a cluster the ``mlco-pipeline-settings``
ConfigMap, from ``manifests/base/pipeline-settings.env``; locally the environment), whose own
query parameters (``token_file``, ``ca_file``, ``namespace``) the source's parameters override.
The reader records what it read as the fleet's ``source``: server, resolved range and filters.
"""

from __future__ import annotations

import logging
import os
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ml_cloud_optimizer.data.io import read_fleet
from ml_cloud_optimizer.data.schema import Fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.data.traces.prometheus import is_url
from ml_cloud_optimizer.errors import UserInputError

__all__ = [
    "DEFAULT_PROMETHEUS_URL",
    "PROMETHEUS",
    "PROMETHEUS_SETTING",
    "SYNTHETIC",
    "acquire_fleet",
    "is_live",
    "resolve_source",
]

_log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
PROMETHEUS = "prometheus"
PROMETHEUS_SETTING = "MLCO_PROMETHEUS_URL"
# kube-prometheus (prometheus-operator's stack, and so most clusters that run Prometheus at all)
# names its server prometheus-k8s in the namespace monitoring and serves plain HTTP on 9090
# without authentication. Secured servers (OpenShift's 9091, Thanos) are set in the manifests.
# manifests/base/pipeline-settings.env says the same; tests/pipelines/test_prometheus_source.py
# keeps the two equal.
DEFAULT_PROMETHEUS_URL = "prometheus://prometheus-k8s.monitoring.svc:9090"
# What the setting may also be written as: the Service's own address.
_PLAIN_SCHEMES = {"http": "prometheus", "https": "prometheus+https"}


def is_live(source: str) -> bool:
    """Whether ``source`` names a Prometheus server (in any of the three forms), not a file."""
    return source == PROMETHEUS or is_url(source)


def resolve_source(source: str, *, setting: str | None = None) -> str:
    """The source string a reader opens: ``prometheus`` and host-less URLs become the configured server.

    Args:
        source: "synthetic", a path or a Prometheus URL with a host (all returned unchanged);
            ``prometheus``; or a Prometheus URL without a host, whose parameters are kept.
        setting: the configured server (default ``$MLCO_PROMETHEUS_URL``, then
            ``DEFAULT_PROMETHEUS_URL``); ``http://`` and ``https://`` addresses are accepted too.

    Returns:
        ``source``, or the setting's URL with the source's query parameters over its own.

    Raises:
        UserInputError: the setting is not a Prometheus address with a host.

    Example:
        >>> resolve_source("prometheus://?level=pod", setting="http://prom.monitoring:9090?level=node&ca_file=ca.pem")
        'prometheus://prom.monitoring:9090?level=pod&ca_file=ca.pem'
    """
    if not is_live(source):
        return source
    url = urlsplit(source)
    if source != PROMETHEUS and url.netloc:
        return source
    server = _setting(setting)
    params = dict(parse_qsl(server.query, keep_blank_values=True))
    params.update(parse_qsl(url.query, keep_blank_values=True))
    return urlunsplit(server._replace(query=urlencode(params, safe=":/,")))


def _setting(value: str | None):
    """The configured server as split URL parts, its scheme a ``prometheus`` one."""
    text = (os.environ.get(PROMETHEUS_SETTING, "") if value is None else value).strip() or DEFAULT_PROMETHEUS_URL
    url = urlsplit(text)
    url = url._replace(scheme=_PLAIN_SCHEMES.get(url.scheme.lower(), url.scheme))
    if not is_url(urlunsplit(url)) or not url.hostname:
        raise UserInputError(
            f"{PROMETHEUS_SETTING}={text}: expected the cluster's Prometheus as"
            " prometheus://HOST:PORT, prometheus+https://HOST:PORT or http(s)://HOST:PORT"
        )
    return url


def acquire_fleet(source: str, *, records: int, seed: int = 0) -> Fleet:
    """``source`` "synthetic": ``records`` generated rows; a live Prometheus (resolved first) or a trace path."""
    started = time.perf_counter()
    if source == SYNTHETIC:
        fleet = generate_fleet(records, seed=seed)
    else:
        resolved = resolve_source(source)
        if resolved != source:
            _log.info("data: source %s is %s (%s)", source, resolved, PROMETHEUS_SETTING)
        fleet = read_fleet(resolved)
    _log.info(
        "data: %s rows, %d entities from %s in %.1f s",
        f"{len(fleet.metrics):,}",
        len(fleet.entities),
        fleet.source,
        time.perf_counter() - started,
    )
    return fleet
