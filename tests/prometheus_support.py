"""A real Prometheus for tests: Debian's ``prometheus`` binary on a loopback port.

Shared by every test that talks to Prometheus (ingest, the live scrape, the exporter), so each
starts it the same way: optional backfill of an OpenMetrics text with ``promtool tsdb
create-blocks-from openmetrics``, a long retention (backfilled samples are years old and would
otherwise be dropped at once), and a readiness wait that shows the server's log on failure.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

__all__ = ["RecordingPrometheus", "free_port", "running_prometheus", "secured_web_config"]


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
    ``ready_url`` should say how to reach ``/-/ready`` (default plain HTTP, no auth); ``{port}``
    in it stands for the port, which is chosen here, e.g.
    ``"https://alice:secret@127.0.0.1:{port}/-/ready"`` (see ``secured_web_config``).
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
            _wait_ready(proc, (ready_url or "http://127.0.0.1:{port}/-/ready").replace("{port}", str(port)), log_path)
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


def secured_web_config(root: Path, users: dict[str, str]) -> tuple[str, Path]:
    """A ``--web.config.file`` text for TLS and basic auth, and the CA file that verifies the server.

    A throwaway CA signs a certificate for 127.0.0.1 (``cryptography``); each user's password is
    stored as the bcrypt hash Prometheus's web config asks for (cost 4: the lowest, tests only).
    """
    import bcrypt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def certificate(subject: str, key, issuer: str, signer, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("mlco test CA", ca_key, "mlco test CA", ca_key, ca=True)
    server_cert = certificate("127.0.0.1", server_key, "mlco test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (root / "server.pem").write_bytes(server_cert.public_bytes(pem))
    (root / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    hashed = {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode() for u, p in users.items()}
    text = (
        "tls_server_config:\n"
        f"  cert_file: {root / 'server.pem'}\n"
        f"  key_file: {root / 'server.key'}\n"
        "basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in hashed.items())
    )
    return text, root / "ca.pem"


class RecordingPrometheus:
    """A stand-in Prometheus that answers every ``query_range`` and records each request's headers.

    Prometheus itself cannot check a bearer token (its web config knows only basic auth and
    client certificates; tokens are checked by a proxy in front of it, or by Thanos, Mimir or
    an OpenShift oauth-proxy), so whether ``mlco`` sends the token is seen here instead. Every
    query gets one series, pod ``ns/p``, value 1 at each step, so a pod-level read succeeds.
    """

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.headers.append(dict(self.headers))
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                start, end = int(float(query["start"])), int(float(query["end"]))
                step = int(query["step"].rstrip("s"))
                values = [[t, "1"] for t in range(start, end + 1, step)]
                result = [{"metric": {"namespace": "ns", "pod": "p"}, "values": values}]
                body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.hostport = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingPrometheus:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()
