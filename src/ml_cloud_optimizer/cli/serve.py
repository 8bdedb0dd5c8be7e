"""`mlco serve`: serve the local champion with the project's KServe model server.

A thin wrapper over ``python -m ml_cloud_optimizer.serving`` (the entry point the ServingRuntime runs), with
the champion directory that ``mlco train`` exports (``$MLCO_HOME/train/champion``) as the
default model directory. It listens on this host only (``127.0.0.1``) unless ``--host`` says
otherwise; the container's entry point listens on every interface, as a pod must.
"""

from __future__ import annotations

from pathlib import Path

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.warehouse.server import mlco_home

__all__ = ["default_champion_dir", "register"]

DEFAULT_MODEL_NAME = "workload-forecaster"
DEFAULT_HOST = "127.0.0.1"


def default_champion_dir() -> Path:
    """The newest local champion, from ``mlco run`` or ``mlco train`` (see ``models.bundle``)."""
    from ml_cloud_optimizer.models.bundle import default_champion_dir as newest

    return newest(mlco_home())


def register(subparsers) -> None:
    """Add ``serve`` to ``subparsers``."""
    serve = subparsers.add_parser(
        "serve", help="serve the champion over KServe v1, v2 REST and v2 gRPC (health, readiness, /metrics)"
    )
    serve.add_argument(
        "--model_dir", default=None, help="champion directory (default: the newest of mlco run's and mlco train's)"
    )
    serve.add_argument(
        "--model_name",
        default=DEFAULT_MODEL_NAME,
        help=f"name in the URL, /v2/models/NAME/infer (default {DEFAULT_MODEL_NAME})",
    )
    serve.add_argument("--http_port", type=int, default=8080, help="REST port (default 8080)")
    serve.add_argument("--grpc_port", type=int, default=8081, help="gRPC port (default 8081)")
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}, this host only; 0.0.0.0 for every interface)",
    )
    serve.set_defaults(func=_serve)


def _serve(args) -> int:
    model_dir = Path(args.model_dir) if args.model_dir else default_champion_dir()
    if not (model_dir / "metadata.json").is_file():
        hint = "; run `make run` (or `mlco train`) first" if args.model_dir is None else ""
        raise UserError(f"{model_dir} holds no champion (no metadata.json){hint}")
    for name in ("http_port", "grpc_port"):
        checks.port(getattr(args, name), f"--{name}")
    from ml_cloud_optimizer.serving.__main__ import main as serve_main  # KServe is heavy: import it only to serve

    return serve_main(
        [
            "--model_dir",
            str(model_dir),
            "--model_name",
            args.model_name,
            "--http_port",
            str(args.http_port),
            "--grpc_port",
            str(args.grpc_port),
            "--host",
            args.host,
        ]
    )
