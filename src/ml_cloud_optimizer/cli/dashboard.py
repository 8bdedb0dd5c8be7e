"""`mlco dashboard`: the operator dashboard (Streamlit) of one run, served until interrupted."""

from __future__ import annotations

import os
from pathlib import Path

from ml_cloud_optimizer.cli import UserError

__all__ = ["register"]


def register(subparsers) -> None:
    """Add ``dashboard`` to ``subparsers``."""
    dashboard = subparsers.add_parser(
        "dashboard",
        help="serve the dashboard: fleet, forecasts, leaderboard, recommendations, backtest, drift",
    )
    dashboard.add_argument(
        "--run-dir",
        default=None,
        help="run directory to show (default: $MLCO_RUN_DIR, else the newest run under "
        "$MLCO_HOME/runs, MLCO_HOME defaulting to ./.mlco)",
    )
    dashboard.add_argument("--port", type=int, default=8501, help="TCP port (default 8501)")
    dashboard.add_argument(
        "--address", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 to serve other machines)"
    )
    dashboard.set_defaults(func=_dashboard)


def _dashboard(args) -> int:
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be a TCP port in 1..65535, got {args.port}")
    if args.run_dir is not None and not Path(args.run_dir).is_dir():
        raise UserError(f"--run-dir {args.run_dir}: no such directory")
    try:
        import streamlit  # noqa: F401 - only to say what is missing before starting a subprocess
    except ImportError:
        raise UserError("the dashboard needs streamlit and plotly: pip install streamlit plotly") from None
    from ml_cloud_optimizer.dashboard import streamlit_command

    command = streamlit_command(args.run_dir, port=args.port, address=args.address)
    print(f"mlco dashboard: http://{args.address}:{args.port}/ (Ctrl-C stops it)", flush=True)
    # Streamlit takes this process over, so Ctrl-C and SIGTERM reach the server itself.
    os.execv(command[0], command)
    return 0  # not reached
