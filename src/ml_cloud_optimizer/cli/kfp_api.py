"""The KFP API side of `mlco submit`, `schedule` and `runs`: client, parameters, package, errors.

Each function imports ``pipelines`` (and the KFP client) only when called, so ``mlco --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ml_cloud_optimizer.cli import UserError

if TYPE_CHECKING:
    import tempfile

__all__ = ["api_message", "connect", "package", "params", "server_errors"]


def connect(args: argparse.Namespace):
    """The kfp.Client for ``--host`` with the credentials the flags and the environment give."""
    from ml_cloud_optimizer.pipelines.runners import remote

    try:
        return remote.connect(
            args.host, namespace=args.namespace, token=args.token, service_account_token=args.sa_token
        )
    except remote.AuthError as exc:
        raise UserError(str(exc)) from None


def params(pairs: list[str], package: Path) -> dict:
    from ml_cloud_optimizer.pipelines.runners.remote import ParameterError, parse_params

    try:
        return parse_params(pairs, package)
    except ParameterError as exc:
        raise UserError(str(exc)) from None


class package:
    """The given compiled pipeline, or one compiled now into a temporary directory."""

    def __init__(self, path: Path | None, pipeline: str = "workload") -> None:
        self._path = path
        self._pipeline = pipeline
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if self._path is not None:
            if not self._path.is_file():
                raise UserError(f"--package {self._path}: no such file")
            return self._path
        import tempfile

        from ml_cloud_optimizer.pipelines.runners.compile import compile_pipeline

        self._tmp = tempfile.TemporaryDirectory()
        return compile_pipeline(Path(self._tmp.name) / "pipeline.yaml", self._pipeline)

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class server_errors:
    """Turn an unreachable host or an API refusal into one readable line."""

    def __init__(self, host: str) -> None:
        self._host = host

    def __enter__(self) -> None:
        import logging

        # urllib3 logs each connection retry as a warning; the failure is reported once below.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc is None:
            return False
        import kfp_server_api
        import urllib3

        if isinstance(exc, kfp_server_api.ApiException):
            detail = api_message(exc)
            hint = ""
            if exc.status in (401, 403):
                hint = (
                    " (multi-user Kubeflow: give --token or $MLCO_KFP_TOKEN, or --sa-token in a pod, and --namespace)"
                )
            raise UserError(f"the KFP API at {self._host} refused the request: {exc.status} {detail}{hint}") from None
        if isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
            raise UserError(f"cannot reach the KFP API at {self._host}: {type(exc).__name__}") from None
        if isinstance(exc, ValueError):  # kfp.Client's own refusals: "No experiment is found with name ..."
            raise UserError(str(exc)) from None
        return False


def api_message(exc) -> str:
    import json

    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason or "")
    return str(body.get("error_message") or body.get("message") or exc.reason or "")
