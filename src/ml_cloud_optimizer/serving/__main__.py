"""``python -m ml_cloud_optimizer.serving --model_dir DIR --model_name NAME``: serve a champion directory with KServe.

The parser extends KServe's own (``kserve.model_server.parser``), so every flag of KServe's
model server (``--http_port``, ``--grpc_port``, ``--enable_grpc``...) works here as it does
for KServe's lgbserver; ``--workers`` above 1 is refused (``ml_cloud_optimizer.serving.server.WORKERS_ERROR``):
one process per pod, more pods for more load.
"""

from __future__ import annotations

import argparse
import os
import sys

from kserve import model_server
from kserve.errors import ModelMissingError
from kserve.utils.utils import strtobool

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
    parser.add_argument("--max_body_mb", type=float, default=64.0, help="Larger request bodies are refused (413).")
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
    if not 0 < args.target_utilization <= 1:
        print(f"--target_utilization must be in (0, 1], got {args.target_utilization}", file=sys.stderr)
        return 2
    # Before the model libraries load: OpenMP reads it once. Many threads per tiny request only
    # fight each other (KServe's lgbserver defaults to one as well).
    os.environ.setdefault("OMP_NUM_THREADS", str(args.nthread))
    from ml_cloud_optimizer.serving.model import ForecastModel
    from ml_cloud_optimizer.serving.server import build_model_server
    from ml_cloud_optimizer.serving.types import RequestLimits

    model = ForecastModel(
        args.model_name,
        args.model_dir,
        limits=RequestLimits(max_entities=args.max_batch_entities, max_history_rows=args.max_history_rows),
        target_utilization=args.target_utilization,
        peak_threshold=args.peak_threshold,
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
        access_log=bool(args.enable_access_log),
        max_asyncio_workers=args.max_asyncio_workers,
    )
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
