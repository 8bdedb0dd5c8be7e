"""`mlco train`: choose forecasters on validation, report them on a hold-out, export the champion.

The champion is the best on a validation window cut from the end of the training span; the
hold-out is scored once, for the report (``evaluation.holdout``). A fleet that cannot be
evaluated so (a snapshot, series shorter than the horizon) is refused in one line before
anything is trained.

``--target cpu,mem`` does all of it once per resource on the same data: a leaderboard and a
champion each. CPU's outputs keep their names (``champion/``, ``leaderboard.csv``); memory's
carry ``-mem`` (``champion-mem/``, ``leaderboard-mem.csv``), see ``resources.suffix``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.cli.data import add_unit_arguments, trace_options
from ml_cloud_optimizer.data.io import CANONICAL
from ml_cloud_optimizer.data.traces import FORMATS
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models.registry import TRAINABLE, build_forecaster, family
from ml_cloud_optimizer.resources import UTIL_COLUMN, as_target, parse_targets, suffix

__all__ = ["DEFAULT_MODELS", "build_candidates", "load_metrics", "register", "run"]

DEFAULT_MODELS = ",".join(TRAINABLE)

_log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``train`` to ``subparsers``."""
    train = subparsers.add_parser(
        "train",
        help="train forecasters, choose on a validation window, report on a hold-out, export the champion",
        description="Fits every model on the first part of the data, chooses the champion (and any blend) on "
        "a validation window that ends where the hold-out starts, refits and scores every model once on the "
        "hold-out beside persistence and seasonal naive, logs everything to MLflow and exports the champion.",
    )
    train.add_argument(
        "--source",
        default="synthetic",
        help="synthetic, warehouse, or a path to a saved fleet or trace (default synthetic)",
    )
    train.add_argument(
        "--format", choices=[CANONICAL, *FORMATS], default=None, help="format of a --source path (default: detected)"
    )
    train.add_argument(
        "--models", default=DEFAULT_MODELS, help=f"comma-separated model kinds (default {DEFAULT_MODELS})"
    )
    train.add_argument("--records", type=int, default=100_000, help="synthetic rows (default 100000)")
    train.add_argument("--trials", type=int, default=0, help="Optuna trials per tabular model (default 0: defaults)")
    train.add_argument("--epochs", type=int, default=None, help="epochs for lstm/gru (default: theirs)")
    train.add_argument(
        "--target",
        default="cpu",
        help="resource(s) to forecast: cpu, mem or cpu,mem; one leaderboard and champion each (default cpu)",
    )
    train.add_argument("--holdout", type=float, default=0.2, help="share of time held out (default 0.2)")
    train.add_argument(
        "--backtest",
        type=int,
        default=0,
        metavar="FOLDS",
        help="also run a rolling-origin backtest with this many folds (default 0: none)",
    )
    train.add_argument("--out", default=None, help="output directory (default $MLCO_HOME/train)")
    train.add_argument("--jobs", type=int, default=None, help="threads per model (default: all cores)")
    train.add_argument("--no-peak", action="store_true", help="do not bundle a peak classifier")
    train.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_unit_arguments(train)
    train.set_defaults(func=run)


def load_metrics(source: str, fmt: str | None = None, records: int = 100_000, seed: int = 0, **options):
    """The fleet named by ``--source``: generated, read from the warehouse, or read from a path.

    ``options`` are trace options (``time_unit``, ``cpu_unit``) for a path.
    """
    if source == "synthetic":
        from ml_cloud_optimizer.data.synthetic import generate_fleet

        return generate_fleet(records, seed=seed)
    if source == "warehouse":
        from contextlib import closing

        from ml_cloud_optimizer.warehouse import connect, read_metrics

        with closing(connect()) as conn:
            fleet = read_metrics(conn)
        if fleet.metrics.empty:
            raise UserError("the warehouse holds no metrics: load some with `mlco db load PATH` first")
        return fleet
    from ml_cloud_optimizer.data.io import read_fleet

    if checks.is_remote(source):
        return read_fleet(source, fmt, **options)
    path = Path(source)
    if not path.exists():
        raise UserError(f"--source {source}: no such file or directory (nor 'synthetic' or 'warehouse')")
    return read_fleet(path, fmt, **options)


def build_candidates(
    kinds: list[str], trials: int = 0, epochs: int | None = None, jobs: int | None = None, seed: int = 0, progress=None
) -> dict:
    """Unfitted forecasters for ``kinds``; sequence kinds are skipped (with a note) when not importable.

    An ensemble (``blend``) is not a kind to train: evaluation builds it from the others.
    """
    checks.model_kinds(",".join(kinds))
    candidates = {}
    for kind in kinds:
        sequence = family(kind) == "sequence"
        try:
            candidates[kind] = build_forecaster(kind, seed=seed, trials=trials, epochs=epochs, threads=jobs)
        except ImportError as exc:
            if not sequence:
                raise
            if progress:
                progress(f"[{kind}] skipped: sequence models unavailable ({exc})")
    if not candidates:
        raise UserError("--models: no usable model kinds")
    return candidates


def _progress(message: str) -> None:
    """Progress lines go to the log (stderr under ``mlco``; ``-q`` turns them off)."""
    _log.info("%s", message)


def _backtest(metrics, candidates: dict, folds: int, holdout: float, out: Path, target: str = "cpu") -> str:
    """Rolling-origin backtest of ``target``: per-fold 1-hour MAE of every model, saved as backtest.csv.

    Memory's is ``backtest-mem.csv``, and its table says so in its first line.
    """
    from ml_cloud_optimizer.evaluation import rolling_origin

    scores = rolling_origin(candidates, metrics, folds=folds, holdout=holdout, progress=_progress, target=target)
    scores.to_csv(out / f"backtest{suffix(target)}.csv", index=False)
    h = HEADLINE_HORIZON
    table = scores.loc[scores["horizon"] == h].pivot_table(index="model", columns="fold", values="mae")
    table.columns = [f"mae_h{h}_fold{c + 1}" for c in table.columns]
    table["vs_persistence"] = table.mean(axis=1) / table.loc["persistence"].mean()
    title = "rolling-origin backtest" + ("" if target == "cpu" else f" ({target}: {UTIL_COLUMN[target]})")
    return f"{title}:\n" + table.sort_values("vs_persistence").to_markdown(floatfmt=".4g")


def _check(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Every argument, before anything is imported, read, generated or trained; the model kinds and resources."""
    kinds = checks.model_kinds(args.models)
    try:
        targets = parse_targets(args.target)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    checks.share(args.holdout, "--holdout")
    if args.backtest < 0 or args.backtest == 1:
        raise UserError(f"--backtest {args.backtest}: expected 0 (none) or at least 2 folds")
    checks.at_least(args.records, "--records", 1)
    checks.at_least(args.trials, "--trials", 0)
    checks.at_least(args.epochs, "--epochs", 1)
    checks.at_least(args.jobs, "--jobs", 1)
    checks.at_least(args.seed, "--seed", 0)
    checks.source(args.source, "--source", ("synthetic", "warehouse"))
    checks.out_dir(args.out)
    return kinds, targets


def _check_data(metrics, targets: list[str], holdout: float = 0.2) -> None:
    """Every resource asked for has data that can be evaluated, before any training starts (one line if not)."""
    from ml_cloud_optimizer.evaluation import check_evaluable

    for target in targets:
        try:
            view = as_target(metrics, target)
        except ValueError as exc:
            raise UserError(f"--target {target}: {exc}") from None
        try:
            check_evaluable(view, holdout)
        except ValueError as exc:
            raise UserError(str(exc) if target == "cpu" else f"--target {target}: {exc}") from None


def _new_peak(no_peak: bool):
    """An unfitted peak classifier, or None (``--no-peak``, or its library absent)."""
    if no_peak:
        return None
    try:
        from ml_cloud_optimizer.models.peak import PeakClassifier

        return PeakClassifier()
    except ImportError as exc:
        _progress(f"[peak] skipped: {exc}")
        return None


def run(args: argparse.Namespace) -> int:
    """Body of ``mlco train``."""
    kinds, targets = _check(args)
    from ml_cloud_optimizer.evaluation import to_markdown
    from ml_cloud_optimizer.tracking import Tracker, mlco_home, train_and_export

    if args.trials:
        from ml_cloud_optimizer.logs import quiet_optuna

        quiet_optuna()
    fleet = load_metrics(args.source, args.format, args.records, args.seed, **trace_options(args))
    _progress(f"data: {fleet.source}, {fleet.metrics['entity_id'].nunique()} entities, {len(fleet.metrics):,} rows")
    _check_data(fleet.metrics, targets, args.holdout)
    candidates = build_candidates(kinds, args.trials, args.epochs, args.jobs, args.seed, _progress)
    out = Path(args.out) if args.out else mlco_home() / "train"
    tracker = None if args.no_tracking else Tracker()
    for target in targets:
        if len(targets) > 1:
            _progress(f"== {target}: forecasting {UTIL_COLUMN[target]}")
        result = train_and_export(
            fleet.metrics,
            candidates,
            out,
            holdout=args.holdout,
            tracker=tracker,
            peak=_new_peak(args.no_peak),
            source=str(fleet.source),
            progress=_progress,
            target=target,
        )
        print(f"leaderboard ({target}: {UTIL_COLUMN[target]}):")
        print(to_markdown(result.leaderboard))
        if args.backtest:
            print(_backtest(fleet.metrics, candidates, args.backtest, args.holdout, out, target))
        end = suffix(target)
        print(f"champion{end}: {result.champion}")
        print(f"champion{end} directory: {result.champion_dir}")
        print(f"leaderboard{end}: {result.leaderboard_paths[0]} and {result.leaderboard_paths[1]}")
        if result.registered_version is not None and tracker is not None:
            version = f"{result.registered_name} version {result.registered_version}"
            print(f"registered: {version} (alias champion) at {tracker.uri}")
    return 0
