"""The model server in a child process on free local ports: what tests and benchmarks talk to.

A real server on a real port, started the way the ServingRuntime starts it
(``python -m ml_cloud_optimizer.serving``), so what is measured or tested is what is deployed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["LocalServer", "free_port"]


def free_port() -> int:
    """A TCP port nothing listens on at the moment of asking."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``python -m ml_cloud_optimizer.serving`` on free ports; the context opens once the model answers ready.

    Args:
        model_dir: the champion directory to serve.
        model_name: the name in the URLs.
        args: more flags for ``python -m ml_cloud_optimizer.serving``.
        log_path: where the server's stdout and stderr go (default: discarded).
        startup_timeout: seconds to wait for readiness.
        env: extra environment variables of the child.

    Example:
        >>> with LocalServer("model/", "forecaster") as server:
        ...     urllib.request.urlopen(server.http_url + "/v2/health/ready")
    """

    def __init__(
        self,
        model_dir: str | Path,
        model_name: str = "model",
        *,
        args: tuple[str, ...] = (),
        log_path: str | Path | None = None,
        startup_timeout: float = 90.0,
        env: dict | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.model_name = model_name
        self.args = tuple(args)
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.env = env or {}
        self.http_port = self.grpc_port = 0
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def __enter__(self) -> LocalServer:
        self.http_port, self.grpc_port = free_port(), free_port()
        command = [
            sys.executable,
            "-m",
            "ml_cloud_optimizer.serving",
            "--model_dir",
            str(self.model_dir),
            "--model_name",
            self.model_name,
            "--http_port",
            str(self.http_port),
            "--grpc_port",
            str(self.grpc_port),
            *self.args,
        ]
        log = open(self.log_path, "wb") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL if log is None else log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        finally:
            if log is not None:
                log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        url = f"{self.http_url}/v2/models/{self.model_name}/ready"
        deadline = time.monotonic() + self.startup_timeout
        process = self.process
        assert process is not None  # __enter__ started it
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"model server exited with status {process.returncode}{self._log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"model server not ready after {self.startup_timeout:.0f} s{self._log_tail()}")

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return ":\n" + self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 15 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
