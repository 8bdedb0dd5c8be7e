"""``python -m ml_cloud_optimizer.serving --model_dir DIR --model_name NAME``: serve a champion directory with KServe.

The parser extends KServe's own (``kserve.model_server.parser``), so every flag of KServe's
model server (``--http_port``, ``--grpc_port``, ``--enable_grpc``...) works here as it does
for KServe's lgbserver; ``--workers`` above 1 is refused (``ml_cloud_optimizer.serving.server.WORKERS_ERROR``):
one process per pod, more pods for more load. KServe's ``--timeout-keep-alive`` closes idle
keep-alive connections; the flags below bound the rest of a connection's life (headers, body),
the bytes and the requests in flight, and the listening address.
"""

from __future__ import annotations

import argparse
import os
import sys

from kserve import model_server
from kserve.errors import ModelMissingError
from kserve.utils.utils import strtobool

from ml_cloud_optimizer.serving.pool import DEFAULT_QUEUE, DEFAULT_WORKERS

ALL_INTERFACES = "0.0.0.0"  # as runtime.ALL_INTERFACES, without importing the server to parse flags

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """KServe's model server flags plus the forecaster's."""
    parser = argparse.ArgumentParser(
        prog="python -m ml_cloud_optimizer.serving",
        parents=[model_server.parser],
        description="Serve a workload-forecaster champion directory over KServe v1, v2 REST and v2 gRPC.",
    )
    parser.add_argument("--model_dir", required=True, help="The champion directory (metadata.json and model files).")
    parser.add_argument(
        "--max_batch_entities", type=int, default=1000, help="Most entities (or feature rows) answered in one request."
    )
    parser.add_argument(
        "--max_history_rows",
        type=int,
        default=250_000,
        help="Most history samples in one request, over all its entities.",
    )
    parser.add_argument(
        "--max_body_mb", type=float, default=64.0, help="Larger request bodies (and gRPC messages) are refused (413)."
    )
    parser.add_argument(
        "--max_inflight_body_mb",
        type=float,
        default=128.0,
        help="Request bodies being served at once hold at most this much; one more is refused (503, Retry-After)."
        " Parsing costs about five times a body's size in memory. At least --max_body_mb.",
    )
    parser.add_argument(
        "--body_timeout", type=float, default=60.0, help="Seconds from a request's headers to its last body byte (408)."
    )
    parser.add_argument(
        "--header_timeout",
        type=float,
        default=30.0,
        help="Seconds for a request's headers to arrive, from the connection or the request's first byte.",
    )
    parser.add_argument(
        "--predict_workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="Threads that decode requests and run the model, off the event loop that answers probes.",
    )
    parser.add_argument(
        "--predict_queue",
        type=int,
        default=DEFAULT_QUEUE,
        help="Requests that may wait for a worker; beyond workers + queue a request is refused (503, Retry-After).",
    )
    parser.add_argument(
        "--host",
        default=ALL_INTERFACES,
        help="Address REST and gRPC listen on (default every interface, as a pod must; 127.0.0.1: this host only).",
    )
    parser.add_argument(
        "--target_utilization",
        type=float,
        default=0.7,
        help="Utilisation the capacity recommendation aims at unless a request says otherwise.",
    )
    parser.add_argument(
        "--peak_threshold",
        type=float,
        default=0.5,
        help="Peak probability from which a forecast row counts as a predicted peak.",
    )
    parser.add_argument(
        "--nthread",
        type=int,
        default=1,
        help="Threads per prediction (OpenMP: LightGBM, XGBoost, torch). One per process serves"
        " concurrent small requests best; raise it for large batches on idle cores.",
    )
    parser.add_argument(
        "--enable_access_log",
        type=strtobool,
        default=False,
        help="Log one line per request (uvicorn access log, KServe timing and gRPC lines).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers > 1:
        from ml_cloud_optimizer.serving.server import WORKERS_ERROR

        print(WORKERS_ERROR.format(workers=args.workers), file=sys.stderr)
        return 2
    # Before the model libraries (and numpy's BLAS) load: OpenMP reads it once. Many threads per
    # tiny request only fight each other (KServe's lgbserver defaults to one as well).
    os.environ.setdefault("OMP_NUM_THREADS", str(args.nthread))
    problem = _limits_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from ml_cloud_optimizer.serving.model import ForecastModel
    from ml_cloud_optimizer.serving.pool import WorkerPool
    from ml_cloud_optimizer.serving.server import build_model_server
    from ml_cloud_optimizer.serving.types import RequestLimits

    pool = WorkerPool(workers=args.predict_workers, queue=args.predict_queue)
    model = ForecastModel(
        args.model_name,
        args.model_dir,
        limits=RequestLimits(max_entities=args.max_batch_entities, max_history_rows=args.max_history_rows),
        target_utilization=args.target_utilization,
        peak_threshold=args.peak_threshold,
        pool=pool,
    )
    try:
        model.load()
    except ModelMissingError as exc:
        print(f"no model to serve: {exc}", file=sys.stderr)
        return 2
    server = build_model_server(
        model_names=(args.model_name,),
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        workers=args.workers,
        max_threads=args.max_threads,
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_inflight_body_bytes=int(args.max_inflight_body_mb * 2**20),
        body_timeout_s=args.body_timeout,
        header_timeout_s=args.header_timeout,
        timeout_keep_alive=args.timeout_keep_alive,
        host=args.host,
        pool=pool,
        access_log=bool(args.enable_access_log),
        max_asyncio_workers=args.max_asyncio_workers,
    )
    server.start([model])
    return 0


def _limits_problem(args: argparse.Namespace) -> str | None:
    """The first flag out of range, as one line; None when all are in range."""
    from ml_cloud_optimizer.serving.types import MAX_TARGET_UTILIZATION, MIN_TARGET_UTILIZATION

    if not MIN_TARGET_UTILIZATION <= args.target_utilization <= MAX_TARGET_UTILIZATION:
        bounds = f"[{MIN_TARGET_UTILIZATION}, {MAX_TARGET_UTILIZATION}]"
        return f"--target_utilization must be in {bounds}, got {args.target_utilization}"
    if not 0 <= args.peak_threshold <= 1:
        return f"--peak_threshold is a probability in [0, 1], got {args.peak_threshold}"
    if args.predict_workers < 1 or args.predict_queue < 0:
        return (
            f"--predict_workers must be >= 1 and --predict_queue >= 0, got {args.predict_workers}, {args.predict_queue}"
        )
    for flag in ("max_body_mb", "body_timeout", "header_timeout"):
        if not getattr(args, flag) > 0:
            return f"--{flag} must be above 0, got {getattr(args, flag)}"
    if args.max_inflight_body_mb < args.max_body_mb:
        return (
            f"--max_inflight_body_mb ({args.max_inflight_body_mb}) must be at least --max_body_mb ({args.max_body_mb})"
        )
    return None


if __name__ == "__main__":
    sys.exit(main())
