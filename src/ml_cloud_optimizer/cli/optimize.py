"""`mlco recommend | backtest | monitor | report`: forecasts turned into capacity, cost and checks.

Like ``mlco train`` (``$MLCO_HOME/train``), each command writes its files into its own
directory under ``$MLCO_HOME`` unless ``--out`` says otherwise: ``recommend/``, ``backtest/``,
``monitor/``. ``mlco report`` and the dashboard look for each part by file name below the run
directory (``$MLCO_RUN_DIR``, else the newest ``$MLCO_HOME/runs/*``, else ``$MLCO_HOME``), so
they find all of them. ``--model`` defaults to the champion that ``mlco train`` exported.

``mlco recommend --target cpu,mem`` also sizes memory with the memory champion (``--mem-model``,
by default ``champion-mem`` beside the CPU model). Costs price CPU and memory apart, at the
built-in list-price defaults or ``--prices FILE``; every table, CSV and stored run names which.
``mlco recommend`` itself lives in ``cli.recommend`` and ``mlco backtest`` in ``cli.backtest``; the
flags and helpers they share are here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import psycopg2

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.data.io import CANONICAL
from ml_cloud_optimizer.data.traces import FORMATS

__all__ = [
    "add_price_arguments",
    "add_target_utilization",
    "default_model_dir",
    "default_out_dir",
    "load_forecaster",
    "load_prices",
    "register",
]


class _DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: stores like the new one and says so, in one line on stderr."""

    def __init__(self, option_strings, dest, *, replacement: str, **kwargs):
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"mlco: {option_string} is deprecated; use {self.replacement}", file=sys.stderr, flush=True)
        setattr(namespace, self.dest, values)


def add_target_utilization(parser, *, help: str, default: float = 0.7) -> None:
    """``--target-utilization`` on ``parser`` (or an argument group), with the old ``--target-utilisation`` hidden.

    The old spelling still works (``args.target_utilization``) and prints a one-line deprecation note.
    """
    parser.add_argument("--target-utilization", type=float, default=default, help=help)
    parser.add_argument(
        "--target-utilisation",
        type=float,
        dest="target_utilization",
        default=argparse.SUPPRESS,
        action=_DeprecatedAlias,
        replacement="--target-utilization",
        help=argparse.SUPPRESS,
    )


def add_price_arguments(parser) -> None:
    """``--prices FILE`` and ``--spot``: what a core-hour and a GiB-hour cost (``optimizer.prices``)."""
    parser.add_argument(
        "--prices",
        type=Path,
        default=None,
        help="OpenCost custom pricing JSON, or a CSV of instance prices (Kubecost's layout or"
        " instance_type,region,on_demand_hourly,spot_hourly); default: built-in list-price defaults",
    )
    parser.add_argument("--spot", action="store_true", help="cost at spot prices instead of on demand")


def load_prices(path: Path | None):
    """The ``Prices`` of ``--prices`` (the built-in defaults when None); a bad file is a one-line error."""
    from ml_cloud_optimizer.optimizer.prices import DEFAULT_PRICES, read_prices

    if path is None:
        return DEFAULT_PRICES
    try:
        return read_prices(path)
    except ValueError as exc:
        raise UserError(f"--prices {exc}") from None


def register(subparsers) -> None:
    """Add ``recommend``, ``backtest``, ``monitor`` and ``report`` to ``subparsers``."""
    formats = [CANONICAL, *FORMATS]

    from ml_cloud_optimizer.cli.recommend import add_recommend_parser

    add_recommend_parser(subparsers, formats)

    from ml_cloud_optimizer.cli.backtest import add_backtest_parser

    add_backtest_parser(subparsers, formats)

    mon = subparsers.add_parser("monitor", help="feature drift and forecast accuracy; says whether to retrain")
    mon.add_argument(
        "--model", type=Path, default=None, help="the model directory in service (default: the newest local champion)"
    )
    mon.add_argument("--source", default="warehouse", help="'warehouse' (default) or a fleet/trace path")
    mon.add_argument("--format", choices=formats, default=None, help="input format of --source")
    mon.add_argument("--recent-hours", type=int, default=24, help="the recent window (default 24 h)")
    mon.add_argument("--reference-days", type=float, default=7, help="the reference window before it (default 7 d)")
    mon.add_argument(
        "--out", type=Path, default=None, help="directory for monitoring.json and drift.csv ($MLCO_HOME/monitor)"
    )
    mon.set_defaults(func=_guarded(_monitor_checked))

    rep = subparsers.add_parser("report", help="one HTML file with the last run's leaderboard, forecasts, backtest")
    rep.add_argument("--run-dir", type=Path, default=None, help="run directory to report (default: the newest)")
    rep.add_argument("--out", type=Path, default=None, help="HTML file to write (default RUN_DIR/report.html)")
    rep.set_defaults(func=_guarded(_report))


def default_out_dir(command: str) -> Path:
    """Where ``command`` writes by default: ``$MLCO_HOME/<command>``."""
    from ml_cloud_optimizer.warehouse.server import mlco_home

    return mlco_home() / command


def default_model_dir() -> Path:
    """The newest local champion, from ``mlco run`` or ``mlco train``."""
    from ml_cloud_optimizer.models.bundle import default_champion_dir
    from ml_cloud_optimizer.warehouse.server import mlco_home

    return default_champion_dir(mlco_home())


def load_forecaster(path: str | Path, flag: str = "--model", hint: str = "train one with `mlco train`"):
    """The fitted forecaster saved in ``path`` (any registered kind)."""
    from ml_cloud_optimizer.models.base import Forecaster

    path = Path(path) if path is not None else default_model_dir()
    if not path.is_dir():
        raise UserError(f"{flag} {path}: no such model directory ({hint})")
    try:
        return Forecaster.load(path)
    except (ValueError, KeyError, OSError, ImportError) as exc:  # ImportError: the kind's library is absent
        raise UserError(f"{flag} {path}: {exc}") from None


def _read_source(source: str, fmt: str | None, conn=None, start=None):
    """A Fleet from the warehouse (from ``start`` on) or from a file."""
    if source == "warehouse":
        from ml_cloud_optimizer.warehouse import read_metrics

        return read_metrics(conn, start=start)
    from ml_cloud_optimizer.data.io import read_fleet

    return read_fleet(source, fmt)


def _last_metric_ts(conn) -> pd.Timestamp:
    from ml_cloud_optimizer.warehouse import transaction

    with transaction(conn), conn.cursor() as cur:
        cur.execute("SELECT max(ts) FROM metrics")
        (last,) = cur.fetchone()
    if last is None:
        raise UserError("the warehouse holds no metrics; load some with `mlco db load PATH`")
    return pd.Timestamp(last).tz_convert("UTC")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_target(value: float) -> None:
    if not (0 < value <= 1):  # also refuses NaN
        raise UserError(f"--target-utilization {value}: target utilization must be a share in (0, 1]")


def _monitor(args) -> int:
    from functools import partial

    from ml_cloud_optimizer.optimizer.monitoring import monitor
    from ml_cloud_optimizer.warehouse import connect, stored_accuracy

    model = load_forecaster(args.model)
    conn = connect() if args.source == "warehouse" else None
    try:
        start = None
        if conn is not None:
            window = pd.Timedelta(hours=args.recent_hours) + pd.Timedelta(days=args.reference_days)
            start = _last_metric_ts(conn) - window - pd.Timedelta(minutes=5 * model.min_history)
        fleet = _read_source(args.source, args.format, conn, start)
        try:
            report = monitor(
                fleet.metrics,
                model,
                stored=partial(stored_accuracy, conn) if conn is not None else None,
                recent=pd.Timedelta(hours=args.recent_hours),
                reference=pd.Timedelta(days=args.reference_days),
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
    finally:
        if conn is not None:
            conn.close()
    out = args.out or default_out_dir("monitor")
    paths = report.save(out)
    print(report.describe())
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _monitor_checked(args) -> int:
    checks.at_least(args.recent_hours, "--recent-hours", 1)
    checks.at_least(args.reference_days, "--reference-days", 1e-9, "a number of days")
    checks.source(args.source, "--source", ("warehouse",))
    checks.existing_dir(args.model, "--model", "model directory", "train one with `mlco train`")
    checks.out_dir(args.out)
    return _monitor(args)


def _report(args) -> int:
    checks.existing_dir(args.run_dir, "--run-dir", "run directory", "run `mlco train` or `mlco backtest` first")
    from ml_cloud_optimizer.dashboard.data import default_run_dir
    from ml_cloud_optimizer.report import build_report

    run_dir = args.run_dir or default_run_dir()
    if not run_dir.is_dir():
        raise UserError(f"no run directory at {run_dir}; run `mlco train` or `mlco backtest` first")
    path = build_report(run_dir, args.out)
    print(f"wrote {path}")
    return 0


def _guarded(func):
    """Database failures become one-line user errors, like any other mistake."""

    def run(args) -> int:
        try:
            return func(args)
        except psycopg2.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"warehouse: {first}") from None

    run.__doc__ = func.__doc__
    return run
