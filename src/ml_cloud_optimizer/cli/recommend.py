"""`mlco recommend`: CPU and memory requests per entity and hour from the champions' forecasts, costed apart.

Why a module of its own: the command reads up to two models (``--model`` for CPU, ``--mem-model``
for memory, by default ``champion-mem`` beside the CPU model, where ``mlco train --target mem``
writes it), a price file, and writes a table, a CSV and a warehouse run that each name the prices
used. The sizing and pricing themselves live in ``optimizer.capacity``, ``optimizer.memory`` and
``optimizer.prices``; the shared flags and helpers in ``cli.optimize``; ``--emit`` (the table as
Kubernetes objects) in ``cli.emit``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.cli.emit import add_emit_arguments, check_emit_arguments, emit
from ml_cloud_optimizer.cli.optimize import (
    _check_target,
    _guarded,
    _last_metric_ts,
    _progress,
    _read_source,
    add_price_arguments,
    add_target_utilization,
    default_model_dir,
    default_out_dir,
    load_forecaster,
    load_prices,
)
from ml_cloud_optimizer.optimizer.memory import DEFAULT_MEM_GRANULARITY, DEFAULT_MEM_HEADROOM, DEFAULT_PEAK_LOOKBACK

__all__ = ["MEM_CHAMPION", "add_recommend_parser"]

# Where ``mlco train --target mem`` puts the memory champion: beside the CPU one (``resources.suffix``).
MEM_CHAMPION = "champion-mem"


def add_recommend_parser(subparsers, formats: list[str]) -> None:
    """Add ``recommend`` to ``subparsers`` (``cli.optimize.register`` calls this)."""
    rec = subparsers.add_parser("recommend", help="capacity per entity and hour from a model's p50/p90 forecasts")
    rec.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a model directory (default: the newest of mlco run's and mlco train's champions)",
    )
    rec.add_argument(
        "--target", default="cpu", help="resource(s) to recommend: cpu, mem or cpu,mem (default cpu); the other stays"
    )
    rec.add_argument(
        "--mem-model",
        type=Path,
        default=None,
        help="the memory model directory for --target mem (default: champion-mem beside the CPU model)",
    )
    rec.add_argument(
        "--source", default="warehouse", help="'warehouse' (default), a fleet/trace path or a prometheus:// URL"
    )
    rec.add_argument("--format", choices=formats, default=None, help="input format of --source (default: detected)")
    rec.add_argument("--hours", type=int, default=24, help="recommend for the last N hours of origins (default 24)")
    add_target_utilization(rec, help="CPU utilization the request is sized for, in (0, 1] (default 0.7)")
    rec.add_argument("--granularity", type=float, default=0.25, help="CPU request step in cores (default 0.25)")
    rec.add_argument(
        "--mem-headroom", type=float, default=DEFAULT_MEM_HEADROOM, help="share added to the memory p90 (default 0.15)"
    )
    rec.add_argument(
        "--mem-granularity",
        type=float,
        default=DEFAULT_MEM_GRANULARITY,
        help="memory request step in GiB (default 0.0625, i.e. 64 MiB)",
    )
    rec.add_argument(
        "--peak-lookback-hours",
        type=float,
        default=DEFAULT_PEAK_LOOKBACK / pd.Timedelta(hours=1),
        help="memory is never below the peak working set of this many hours (default 168)",
    )
    add_price_arguments(rec)
    rec.add_argument("--top", type=int, default=20, help="rows printed (the largest savings first)")
    rec.add_argument("--no-store", action="store_true", help="do not write the run to the warehouse")
    rec.add_argument("--out", type=Path, default=None, help="directory for recommendations.csv ($MLCO_HOME/recommend)")
    add_emit_arguments(rec)
    rec.set_defaults(func=_guarded(_recommend))


def _model_target(model, path: Path) -> str:
    """The resource a saved model forecasts: its own ``target``, else its ``bundle.json``'s, else cpu."""
    import contextlib
    import json

    from ml_cloud_optimizer.models.bundle import BUNDLE_FILE

    target = getattr(model, "target", None)
    if target in (None, "cpu") and (path / BUNDLE_FILE).is_file():
        with contextlib.suppress(ValueError, OSError):  # an unreadable bundle.json leaves the model's own word
            target = json.loads((path / BUNDLE_FILE).read_text()).get("target", target)
    return str(target or "cpu")


def _recommend(args) -> int:
    from ml_cloud_optimizer.resources import parse_targets

    try:
        targets = parse_targets(args.target)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    checks.at_least(args.hours, "--hours", 1)
    _check_target(args.target_utilization)
    checks.at_least(args.granularity, "--granularity", 1e-9, "a number of cores")
    checks.at_least(args.mem_headroom, "--mem-headroom", 0, "a share")
    checks.at_least(args.mem_granularity, "--mem-granularity", 1e-9, "a number of GiB")
    checks.at_least(args.peak_lookback_hours, "--peak-lookback-hours", 1e-9, "a number of hours")
    checks.at_least(args.top, "--top", 1)
    checks.source(args.source, "--source", ("warehouse",))
    checks.existing_dir(args.model, "--model", "model directory", "train one with `mlco train`")
    checks.existing_dir(args.mem_model, "--mem-model", "model directory", "train one with `mlco train --target mem`")
    checks.out_dir(args.out)
    check_emit_arguments(args)
    prices = load_prices(args.prices)
    from ml_cloud_optimizer.optimizer.capacity import forecasts_long, recommend
    from ml_cloud_optimizer.optimizer.memory import peak_working_set
    from ml_cloud_optimizer.warehouse import connect, store_run

    model_dir = Path(args.model or default_model_dir())
    model = mem_model = None
    if "cpu" in targets:
        model = load_forecaster(model_dir)
        if _model_target(model, model_dir) != "cpu":
            raise UserError(f"--model {model_dir}: forecasts memory, not CPU; pass it as --mem-model")
    mem_dir = Path(args.mem_model or model_dir.parent / MEM_CHAMPION)
    if "mem" in targets:
        mem_model = load_forecaster(mem_dir, "--mem-model", "train one with `mlco train --target mem`")
        if _model_target(mem_model, mem_dir) != "mem":
            raise UserError(
                f"--mem-model {mem_dir}: forecasts CPU, not memory (train one with `mlco train --target mem`)"
            )
    lookback = pd.Timedelta(hours=args.peak_lookback_hours)
    needs = [int(getattr(m, "full_history", m.min_history)) for m in (model, mem_model) if m is not None]
    if mem_model is not None:
        needs.append(int(lookback / pd.Timedelta(minutes=5)))
    history_steps = max(needs) + args.hours * 12 + 12
    conn = connect() if (args.source == "warehouse" or not args.no_store) else None
    try:
        start = None
        if args.source == "warehouse":
            start = _last_metric_ts(conn) - pd.Timedelta(minutes=5 * history_steps)
        fleet = _read_source(args.source, args.format, conn, start)
        forecasts = mem_forecasts = peak = None
        if model is not None:
            _progress(f"forecasting CPU of {fleet.metrics['entity_id'].nunique()} entities with {model.kind}")
            forecasts = _recent(model.predict(fleet.metrics), args.hours, model, "CPU")
        if mem_model is not None:
            _progress(f"forecasting memory of {fleet.metrics['entity_id'].nunique()} entities with {mem_model.kind}")
            mem_forecasts = _recent(mem_model.predict(_memory_view(fleet.metrics)), args.hours, mem_model, "memory")
            peak = peak_working_set(fleet.metrics, fleet.entities, lookback)
        rates = prices.rates(fleet.entities, spot=args.spot)
        try:
            recs = recommend(
                forecasts,
                fleet.entities,
                target_utilization=args.target_utilization,
                granularity=args.granularity,
                mem_forecasts=mem_forecasts,
                peak_mem=peak,
                mem_headroom=args.mem_headroom,
                mem_granularity=args.mem_granularity,
                prices=prices,
                spot=args.spot,
            )
        except ValueError as exc:
            raise UserError(str(exc)) from None
        run_id = None
        if not args.no_store:
            params = {
                "hours": args.hours,
                "targets": targets,
                "target_utilization": args.target_utilization,
                "granularity": args.granularity,
                **prices.params(rates, spot=args.spot),
            }
            if mem_model is not None:
                params.update(
                    {
                        "mem_model": f"{mem_model.kind}:{mem_dir.resolve()}",
                        "mem_headroom": args.mem_headroom,
                        "mem_granularity_gib": args.mem_granularity,
                        "peak_lookback_hours": args.peak_lookback_hours,
                    }
                )
            # The forecasts table holds CPU forecasts (monitoring scores them against cpu_util); memory's stay out.
            run_id = store_run(
                conn,
                recs,
                forecasts_long(forecasts) if forecasts is not None else None,
                model=_model_label(model, model_dir, mem_model, mem_dir),
                source=args.source,
                params=params,
            )
    finally:
        if conn is not None:
            conn.close()

    out = args.out or default_out_dir("recommend")
    out.mkdir(parents=True, exist_ok=True)
    labels = pd.Series(prices.labels(rates), index=fleet.entities["entity_id"].astype(str).to_numpy())
    written = recs.assign(prices=recs["entity_id"].map(labels))  # which prices costed each row, in the file itself
    written.to_csv(out / "recommendations.csv", index=False)
    print(_recommendation_table(recs, args.top, targets))
    print(prices.describe(rates, spot=args.spot))
    where = f"warehouse run {run_id}, " if run_id is not None else ""
    print(f"wrote {len(recs)} recommendations ({where}{out / 'recommendations.csv'})")
    emit(args, recs, targets, out)
    return 0


def _memory_view(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` as a memory model reads it (``resources.as_target``); no memory is a one-line error."""
    from ml_cloud_optimizer.resources import as_target

    try:
        return as_target(metrics, "mem")
    except ValueError as exc:
        raise UserError(f"--target mem: {exc}") from None


def _recent(forecasts: pd.DataFrame, hours: int, model, what: str) -> pd.DataFrame:
    """The forecasts of the last ``hours`` of origins; none at all means too little history."""
    if not forecasts.empty:
        recent = forecasts["ts"] > forecasts["ts"].max() - pd.Timedelta(hours=hours)
        forecasts = forecasts.loc[recent].reset_index(drop=True)
    if forecasts.empty:
        raise UserError(
            f"not enough history for the {what} model {model.kind} (needs {model.min_history} steps per entity)"
        )
    return forecasts


def _model_label(model, model_dir: Path, mem_model, mem_dir: Path) -> str:
    """How the run names its models: ``kind:dir`` for CPU as before, memory's after ``mem=``."""
    parts = []
    if model is not None:
        parts.append(f"{model.kind}:{model_dir.resolve()}")
    if mem_model is not None:
        parts.append(f"mem={mem_model.kind}:{mem_dir.resolve()}")
    return "; ".join(parts)


def _recommendation_table(recs: pd.DataFrame, top: int, targets: list[str] | tuple[str, ...] = ("cpu",)) -> str:
    """The latest hour per entity, largest saving first, and the fleet's total for that hour, CPU and memory apart."""
    latest = recs.sort_values("hour").groupby("entity_id", observed=True).tail(1)
    shown = latest.sort_values("hourly_saving", ascending=False).head(top)
    cpu = ["p90_cores", "request_cores", "current_cores"]
    mem = ["p90_mem_gib", "peak_mem_gib", "request_mem_gib", "current_mem_gib"]
    if "mem" not in targets:
        mem = ["request_mem_gib"]  # unchanged: the current request
    if "cpu" not in targets:
        cpu = ["request_cores"]
    columns = ["entity_id", "hour", *cpu, *mem, "cpu_hourly_cost", "mem_hourly_cost", "hourly_cost"]
    columns += ["current_hourly_cost", "hourly_saving"]
    table = shown[columns].to_string(index=False, float_format=lambda x: f"{x:.3f}")
    current, recommended = latest["current_hourly_cost"].sum(), latest["hourly_cost"].sum()
    share = (current - recommended) / current if current else 0.0
    return (
        f"{table}\n"
        f"next hour, {len(latest)} entities: current ${current:.2f}/h, recommended ${recommended:.2f}/h,"
        f" saving ${current - recommended:.2f}/h ({share:.1%}); recommended CPU"
        f" ${latest['cpu_hourly_cost'].sum():.2f}/h + memory ${latest['mem_hourly_cost'].sum():.2f}/h"
        f" ({'/'.join(targets)} recommended; the rest stays as provisioned)"
    )
