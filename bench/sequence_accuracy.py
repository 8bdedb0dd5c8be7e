"""One-hour accuracy of the LSTM and GRU against persistence on a real trace, with a development mode.

Scores like ``bench/forecast_accuracy.py`` (the same ``evaluate_holdout``: fit before one global
cut-off at 80% of the time span, score after it, every model on the same rows), for the two
things that bench does not do:

* ``--dev`` never touches the hold-out: it drops the last 20% of the span first, then fits on
  the first 85% of what is left and scores the last 15% of the *training* span. Every choice
  of inputs, sizes and schedule was made on this number; the hold-out was read once at the end.
* Traces the readers do not detect yet: the PlanetLab 2011 copy (``timestamp``, ``entity_id``,
  ``cpu_util`` in percent) is read with the long-CSV reader and its options named explicitly.

``--set name=value`` overrides a constructor parameter of every sequence model (``hidden=64``),
so an experiment is one command line. The last stdout line is JSON with each model's 1-hour MAE,
its ratio to persistence on the same rows and its fit seconds.

Usage:
    nice -n 5 .venv/bin/python bench/sequence_accuracy.py --trace PATH [--dev] [--models lstm,gru]
    nice -n 5 .venv/bin/python bench/sequence_accuracy.py --trace PATH --dev --set hidden=64 --set window=96
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import pandas as pd

from ml_cloud_optimizer.data.schema import DataValidationError
from ml_cloud_optimizer.evaluation import evaluate_holdout, holdout_cutoff
from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models.registry import build_forecaster

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO.parent / "shared" / "data" / "traces" / "bitbrains_rnd_2013_08"
DEV_SHARE = 0.15  # of the training span, scored in --dev mode


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_metrics(path: Path) -> pd.DataFrame:
    """Canonical metrics of the trace at ``path``: the detected reader, else a long CSV in percent."""
    from ml_cloud_optimizer.data.io import read_fleet

    try:
        return read_fleet(path).metrics
    except DataValidationError:
        files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
        data = [f for f in files if f.name != "entities.csv"]
        if len(data) != 1:
            raise
        # PlanetLab 2011 as the shared copy holds it (README: epoch seconds, integer percent).
        return read_fleet(data[0], "long", columns={"ts": "timestamp"}, cpu_unit="percent", time_unit="s").metrics


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=str(DEFAULT_TRACE), help="trace directory or file (default: Bitbrains)")
    parser.add_argument("--models", default="lstm,gru", help="sequence kinds to train (persistence is always scored)")
    parser.add_argument("--dev", action="store_true", help="score the end of the training span, not the hold-out")
    parser.add_argument("--holdout", type=float, default=0.2, help="held-out share of the time span")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the models')")
    parser.add_argument("--jobs", type=int, default=1, help="torch threads per model (default 1: a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-entities", type=int, default=0, help="a seeded random subset of entities (0: all)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a model parameter")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    metrics = read_metrics(Path(args.trace))
    if args.max_entities and metrics["entity_id"].nunique() > args.max_entities:
        chosen = pd.Series(metrics["entity_id"].unique()).sample(args.max_entities, random_state=0)
        metrics = metrics.loc[metrics["entity_id"].isin(chosen)].reset_index(drop=True)
    share = args.holdout
    if args.dev:
        metrics = metrics.loc[metrics["ts"] < holdout_cutoff(metrics, args.holdout)].reset_index(drop=True)
        share = DEV_SHARE
    overrides = dict(item.split("=", 1) for item in args.set)
    candidates = {}
    for kind in [k.strip() for k in args.models.split(",") if k.strip() and k.strip() != "persistence"]:
        model = build_forecaster(kind, seed=args.seed, epochs=args.epochs, threads=args.jobs)
        if kind in ("lstm", "gru"):
            model.set_params(**{k: _value(v) for k, v in overrides.items()})
        candidates[kind] = model
    _say(f"data: {args.trace}: {metrics['entity_id'].nunique()} entities, {len(metrics):,} rows, dev={args.dev}")
    evaluation = evaluate_holdout(candidates, metrics, holdout=share, progress=_say)
    # The scores themselves, not the leaderboard: on a gappy trace the seasonal scale behind MASE can be
    # undefined, and this bench reads only MAE and the ratio to persistence.
    scores = evaluation.scores.set_index(["model", "horizon"])
    h = HEADLINE_HORIZON
    for (model, horizon), row in scores.sort_index().iterrows():
        ratio = row["vs_persistence"]
        _say(f"  {model:15s} h{horizon:<3d} MAE {row['mae']:.5f}  vs persistence {ratio:.4f}  n {row['n']:,}")
    at = scores.xs(h, level="horizon")
    result = {
        "trace": args.trace,
        "dev": args.dev,
        "cutoff": str(evaluation.cutoff),
        "entities": int(metrics["entity_id"].nunique()),
        "scored_origins": int(at.loc["persistence", "n"]),
        "overrides": overrides,
        f"mae_h{h}": {m: round(float(v), 6) for m, v in at["mae"].items()},
        f"vs_persistence_h{h}": {m: round(float(v), 4) for m, v in at["vs_persistence"].items()},
        "vs_persistence_h1": {
            m: round(float(v), 4) for m, v in scores.xs(1, level="horizon")["vs_persistence"].items()
        },
        "coverage": {m: round(float(v), 4) for m, v in at["coverage"].items()},
        "fit_seconds": {
            name: round(float(m.fit_seconds_), 1) for name, m in evaluation.models.items() if hasattr(m, "fit_seconds_")
        },
        "best_epoch": {name: int(m.best_epoch_) for name, m in evaluation.models.items() if hasattr(m, "best_epoch_")},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
