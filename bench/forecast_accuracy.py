"""One-hour-ahead forecast accuracy of every model on a real trace, chosen on validation, reported on a hold-out.

The last 20% of the trace's time span is the hold-out; the last 20% of the span before it is the
validation window (one global cut-off each; features may read history across them, never the
future). Every model is fitted before the validation window and scored on it: the champion, any
blend of the best candidates and the p90 margins are chosen there, and inside each tabular model
the target (level or change) and the feature set (rich or plain lags) are chosen on the last part
of its own training rows. Every model is then refitted on the whole training span and scored once
on the hold-out, on the same rows. A plain LightGBM on lags of the level, untuned, is scored beside
them as a reference (never chosen).

The trace's layout is detected (the shared Bitbrains and PlanetLab traces read without flags), and
a trace that cannot be evaluated is refused in one line before anything is fitted.

The last line on stdout is JSON: each model's 1-hour MAE on validation and on the hold-out,
``champion_vs_persistence`` (hold-out MAE of the champion chosen on validation over persistence's;
target <= 0.95), ``sequence_vs_persistence`` (the better of LSTM and GRU on the hold-out) and
``champion_vs_reference``.

Usage:
    .venv/bin/python bench/forecast_accuracy.py                      # the shared Bitbrains trace
    .venv/bin/python bench/forecast_accuracy.py --trace ../shared/data/traces/planetlab_2011
    .venv/bin/python bench/forecast_accuracy.py --trace PATH [--format F] [--models lightgbm,gru]
    .venv/bin/python bench/forecast_accuracy.py --trace synthetic --records 200000
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

from ml_cloud_optimizer.models.registry import TRAINABLE, kinds

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO.parent / "shared" / "data" / "traces" / "bitbrains_rnd_2013_08"
TARGET = 0.95
REFERENCE = "ref_lightgbm_level_lags"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _number(value, digits: int = 6):
    """A JSON number, or null where the metric is undefined (NaN) on this trace."""
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=str(DEFAULT_TRACE), help="trace path, or 'synthetic' (default: Bitbrains)")
    parser.add_argument("--format", default=None, help="trace format (default: detected)")
    parser.add_argument("--records", type=int, default=200_000, help="rows of generated data with --trace synthetic")
    parser.add_argument("--models", default=",".join(TRAINABLE), help="model kinds to train (default: every trainable)")
    parser.add_argument("--trials", type=int, default=0, help="Optuna trials per tabular model (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for lstm/gru (default: theirs)")
    parser.add_argument("--holdout", type=float, default=0.2, help="held-out share of the time span")
    parser.add_argument("--jobs", type=int, default=1, help="threads per model (default 1: the machine is shared)")
    parser.add_argument("--no-reference", action="store_true", help="leave out the plain LightGBM reference")
    parser.add_argument(
        "--max-entities",
        type=int,
        default=0,
        help="score a seeded random subset of this many entities (default 0: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)

    import pandas as pd

    from ml_cloud_optimizer.cli.train import build_candidates, load_metrics
    from ml_cloud_optimizer.errors import UserInputError
    from ml_cloud_optimizer.evaluation import check_evaluable, evaluate_holdout, leaderboard, to_markdown
    from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster

    started = time.perf_counter()
    if args.trace != "synthetic" and not Path(args.trace).exists():
        _say(f"trace {args.trace} not found")
        return 2
    try:
        fleet = load_metrics(args.trace, args.format, args.records)
        metrics = fleet.metrics
        if args.max_entities and metrics["entity_id"].nunique() > args.max_entities:
            chosen = pd.Series(metrics["entity_id"].unique()).sample(args.max_entities, random_state=0)
            metrics = metrics.loc[metrics["entity_id"].isin(chosen)].reset_index(drop=True)
        _say(f"data: {fleet.source}: {metrics['entity_id'].nunique()} entities, {len(metrics):,} rows")
        check_evaluable(metrics, args.holdout)
    except UserInputError as exc:
        _say(f"forecast_accuracy: {exc}")
        return 2
    kinds_asked = [k.strip() for k in args.models.split(",") if k.strip()]
    candidates = build_candidates(kinds_asked, trials=args.trials, epochs=args.epochs, jobs=args.jobs, progress=_say)
    references = {}
    if not args.no_reference:
        references[REFERENCE] = LightGBMForecaster(target_mode="level", feature_set="lags", n_jobs=args.jobs)
    evaluation = evaluate_holdout(candidates, metrics, holdout=args.holdout, progress=_say, references=references)
    board = leaderboard(evaluation.scores)
    _say(to_markdown(board))

    h = HEADLINE_HORIZON
    rows = {row.model: row for row in board.itertuples(index=False)}
    val_mae = {m: _number(getattr(r, f"val_mae_h{h}")) for m, r in rows.items()}
    mae = {m: _number(getattr(r, f"mae_h{h}")) for m, r in rows.items()}
    ratio = {m: _number(getattr(r, f"vs_persistence_h{h}"), 4) for m, r in rows.items()}
    val_ratio = {m: _number(getattr(r, f"val_vs_persistence_h{h}"), 4) for m, r in rows.items()}
    champion = str(board.loc[board["champion"], "model"].iloc[0])
    sequences = [ratio[m] for m in kinds("sequence") if ratio.get(m) is not None]
    configs = {
        name: f"{model.target_mode_}/{model.feature_set_}"
        for name, model in evaluation.models.items()
        if hasattr(model, "feature_set_")
    }
    result = {
        "trace": str(fleet.source),
        "entities": int(metrics["entity_id"].nunique()),
        "rows": len(metrics),
        "validation_cutoff": str(evaluation.validation_cutoff),
        "holdout_cutoff": str(evaluation.cutoff),
        "scored_origins": int(board[f"n_h{h}"].iloc[0]),
        "validation_origins": int(board[f"val_n_h{h}"].iloc[0]),
        "horizon_steps": h,
        f"val_mae_h{h}": val_mae,
        f"mae_h{h}": mae,
        f"val_vs_persistence_h{h}": val_ratio,
        f"vs_persistence_h{h}": ratio,
        "tabular_configs": configs,
        "choices": evaluation.notes,
        f"persistence_mae_h{h}": mae["persistence"],
        f"seasonal_naive_mae_h{h}": mae["seasonal_naive"],
        "champion": champion,
        f"champion_mae_h{h}": mae[champion],
        "champion_val_vs_persistence": val_ratio[champion],
        "champion_vs_persistence": ratio[champion],
        "champion_p90_cover": _number(getattr(rows[champion], f"p90_cover_h{h}"), 4),
        "sequence_vs_persistence": min(sequences) if sequences else None,
        "reference": REFERENCE if references else None,
        "reference_vs_persistence": ratio.get(REFERENCE),
        "champion_vs_reference": _number(mae[champion] / mae[REFERENCE], 4) if mae.get(REFERENCE) else None,
        "target": TARGET,
        "meets_target": bool(ratio[champion] is not None and ratio[champion] <= TARGET),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
