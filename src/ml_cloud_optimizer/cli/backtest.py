"""`mlco backtest`: replay a trace under every autoscaling policy, each change charged alike.

Why a module of its own: the command carries the replay's rules (``--min-interval``,
``--startup-delay``, ``--in-place``: what a change costs every policy, ``optimizer.replay_rules``),
the split (``--replay-fraction``, ``--validation-steps``: settings and the recommended policy
are chosen on the validation window before the replay, ``optimizer.selection``) and the two
decision horizons, on top of the trace and price flags ``cli.optimize`` shares with the other
commands. The replay itself lives in ``optimizer.fleet_replay``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.cli.data import add_unit_arguments, trace_options
from ml_cloud_optimizer.cli.optimize import _guarded, _progress, add_price_arguments, default_out_dir, load_prices
from ml_cloud_optimizer.optimizer.memory import DEFAULT_MEM_GRANULARITY

__all__ = ["add_backtest_parser"]


def add_backtest_parser(subparsers, formats: list[str]) -> None:
    """Add ``backtest`` to ``subparsers``."""
    bt = subparsers.add_parser(
        "backtest", help="replay a trace under static, HPA, VPA, forecast-driven and hybrid scaling, changes charged"
    )
    bt.add_argument("--trace", required=True, help="a trace file or directory, or a saved fleet")
    bt.add_argument("--format", choices=formats, default=None, help="input format (default: detected)")
    bt.add_argument("--forecaster", default="lightgbm", help="model kind for the forecast-driven policy")
    bt.add_argument(
        "--replay-fraction", type=float, default=1 / 3, help="share of the sampled steps replayed (default 1/3)"
    )
    bt.add_argument(
        "--validation-steps",
        type=int,
        default=576,
        help="sampled steps before the replay on which settings and the recommended policy are chosen (default 576)",
    )
    bt.add_argument("--horizon", type=int, default=1, help="steps ahead capacity is decided (default 1)")
    bt.add_argument(
        "--long-horizon", type=int, default=12, help="a second decision horizon, replayed beside (default 12; 0: none)"
    )
    bt.add_argument(
        "--coverage",
        type=float,
        default=None,
        help="residual quantile added as margin (default: chosen on the validation window)",
    )
    bt.add_argument("--granularity", type=float, default=0.25, help="capacity step in cores (default 0.25)")
    bt.add_argument(
        "--min-interval", type=float, default=15.0, help="minutes between two changes of one workload (default 15)"
    )
    bt.add_argument("--startup-delay", type=float, default=2.0, help="minutes before added capacity serves (default 2)")
    bt.add_argument(
        "--in-place",
        action="store_true",
        help="resize pods in place (InPlacePodVerticalScaling) instead of evicting them on a vertical change",
    )
    bt.add_argument(
        "--mem-granularity", type=float, default=DEFAULT_MEM_GRANULARITY, help="memory step in GiB (default 64 MiB)"
    )
    bt.add_argument("--no-memory", action="store_true", help="replay CPU only, even when the trace has memory")
    add_price_arguments(bt)
    bt.add_argument(
        "--out", type=Path, default=None, help="directory for the summary, capacities and plots ($MLCO_HOME/backtest)"
    )
    add_unit_arguments(bt)
    bt.set_defaults(func=_guarded(_backtest))


def _new_forecaster(kind: str, horizon: int, long_horizon: int):
    """An unfitted forecaster of ``kind`` for the horizons the policies decide on, with a p90 head where it has one."""
    from ml_cloud_optimizer.optimizer.backtest import policy_forecaster

    try:
        return policy_forecaster(kind, horizon, long_horizon)
    except ValueError as exc:
        raise UserError(f"--forecaster: {exc}") from None


def _backtest(args) -> int:
    checks.existing(args.trace, "--trace")
    checks.model_kind(args.forecaster, "--forecaster")
    checks.share(args.replay_fraction, "--replay-fraction")
    checks.at_least(args.validation_steps, "--validation-steps", 1)
    checks.at_least(args.horizon, "--horizon", 1)
    checks.at_least(args.long_horizon, "--long-horizon", 0)
    checks.share(args.coverage, "--coverage")
    checks.at_least(args.granularity, "--granularity", 1e-9, "a number of cores")
    checks.at_least(args.mem_granularity, "--mem-granularity", 1e-9, "a number of GiB")
    checks.at_least(args.min_interval, "--min-interval", 0, "a number of minutes")
    checks.at_least(args.startup_delay, "--startup-delay", 0, "a number of minutes")
    checks.out_dir(args.out)
    prices = load_prices(args.prices)
    from ml_cloud_optimizer.data.io import read_fleet
    from ml_cloud_optimizer.optimizer.backtest import replay_fleet
    from ml_cloud_optimizer.optimizer.plots import backtest_summary_figure, capacity_figure, save_figure
    from ml_cloud_optimizer.optimizer.replay_rules import ReplayRules

    rules = ReplayRules(
        min_interval=pd.Timedelta(minutes=args.min_interval),
        startup_delay=pd.Timedelta(minutes=args.startup_delay),
        in_place=args.in_place,
    )
    # refuses a kind the policy cannot use, before reading the trace
    forecaster = _new_forecaster(args.forecaster, args.horizon, args.long_horizon)
    fleet = read_fleet(args.trace, args.format, **trace_options(args))
    try:
        result = replay_fleet(
            fleet,
            forecaster,
            replay_fraction=args.replay_fraction,
            calibration_steps=args.validation_steps,
            horizon=args.horizon,
            long_horizon=args.long_horizon,
            coverage=args.coverage,
            granularity=args.granularity,
            compare_persistence=forecaster.kind != "persistence",
            memory=False if args.no_memory else None,
            mem_granularity=args.mem_granularity,
            prices=prices,
            spot=args.spot,
            rules=rules,
            log=_progress,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out = args.out or default_out_dir("backtest")
    paths = result.save(out)
    capacity = result.capacity_frame()
    paths.append(save_figure(backtest_summary_figure(result.summary), out / "backtest_summary.png"))
    paths.append(save_figure(capacity_figure(capacity), out / "backtest_capacity.png"))
    print(result.summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(_rules_line(result.params))
    chosen = result.params["recommended"]
    print(
        f"forecast vs vpa: core-hours x{result.ratio(chosen, 'vpa', 'core_hours'):.3f},"
        f" under-provisioned x{result.ratio(chosen, 'vpa', 'underprovisioned_share'):.3f},"
        f" churn x{result.ratio(chosen, 'vpa', 'changes_per_workload_day'):.3f};"
        f" vs static: core-hours x{result.ratio(chosen, 'static', 'core_hours'):.3f}"
        f" (the recommended policy, {chosen}, chosen on the validation window)"
    )
    if result.memory_grid is not None:
        mem = result.params["memory_recommended"]
        kills = result.summary.set_index("policy")["oom_kills"]
        print(
            f"memory vs vpa: GiB-hours x{result.ratio(mem, 'vpa', 'mem_gib_hours'):.3f},"
            f" OOM kills {int(kills[mem])} against {int(kills['vpa'])}"
            f" (static {int(kills['static'])}, reactive_hpa {int(kills['reactive_hpa'])}),"
            f" churn x{result.ratio(mem, 'vpa', 'mem_changes_per_workload_day'):.3f}"
            f" (recommended for memory: {mem}); each kill is one restart"
        )
    elif not args.no_memory:
        print("memory: not replayed (the trace has no mem_util)")
    print(prices.describe(spot=args.spot))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _rules_line(params: dict) -> str:
    """The replay's rules in one line, as the run recorded them."""
    how = "in place" if params["in_place"] else "by eviction (a restart)"
    return (
        f"rules: changes at least {params['min_interval_minutes']:g} min apart, added capacity serving after"
        f" {params['startup_delay_minutes']:g} min, vertical changes {how}; validation from"
        f" {params['validation_start']}, replay from {params['replay_start']}"
    )
