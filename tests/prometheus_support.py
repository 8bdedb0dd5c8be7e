"""A real Prometheus for tests: Debian's ``prometheus`` binary on a loopback port.

Shared by every test that talks to Prometheus (ingest, the live scrape, the exporter), so each
starts it the same way: optional backfill of an OpenMetrics text with ``promtool tsdb
create-blocks-from openmetrics``, a long retention (backfilled samples are years old and would
otherwise be dropped at once), and a readiness wait that shows the server's log on failure.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

__all__ = ["free_port", "running_prometheus"]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binaries() -> tuple[str, str]:
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not binary or not promtool:
        pytest.fail("prometheus and promtool are needed and missing: apt-get install prometheus (.ci/run does)")
    return binary, promtool


@contextmanager
def running_prometheus(
    root: Path,
    openmetrics: str | None = None,
    config: str = "global:\n  scrape_interval: 1m\n",
    web_config: str | None = None,
    ready_url: str | None = None,
) -> Iterator[str]:
    """Yield ``127.0.0.1:PORT`` of a Prometheus with its data under ``root``; stopped on exit.

    ``openmetrics`` (text ending in ``# EOF``) is backfilled before start; ``config`` is its
    ``prometheus.yml``; ``web_config`` its ``--web.config.file`` (TLS, basic auth), in which case
    ``ready_url`` should say how to reach ``/-/ready`` (default plain HTTP, no auth).
    """
    binary, promtool = _binaries()
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    if openmetrics is not None:
        source = root / "trace.om"
        source.write_text(openmetrics)
        done = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            pytest.fail(f"promtool could not backfill: {done.stderr[-2000:]}")
    (root / "prometheus.yml").write_text(config)
    args = [
        binary,
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=100y",
        f"--config.file={root / 'prometheus.yml'}",
    ]
    if web_config is not None:
        (root / "web.yml").write_text(web_config)
        args.append(f"--web.config.file={root / 'web.yml'}")
    port = free_port()
    args.append(f"--web.listen-address=127.0.0.1:{port}")
    log_path = root / "prometheus.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, ready_url or f"http://127.0.0.1:{port}/-/ready", log_path)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=2, verify=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"prometheus did not become ready: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)
