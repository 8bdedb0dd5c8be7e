"""One-hour-ahead forecast accuracy of every model on a real trace, beside persistence and seasonal naive.

Trains every model on the first 80% of the trace's time span and scores the last 20% (one
global cut-off; features may read history across it, never the future). All models are scored
on the same rows. The last line on stdout is JSON: each model's 1-hour MAE, the baselines' MAE,
and ``champion_vs_persistence`` (champion MAE / persistence MAE; target <= 0.95).

Usage:
    .venv/bin/python bench/forecast_accuracy.py                      # the shared Bitbrains trace
    .venv/bin/python bench/forecast_accuracy.py --trace PATH [--format F]
    .venv/bin/python bench/forecast_accuracy.py --trace synthetic --records 200000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ml_cloud_optimizer.models.registry import TRAINABLE

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = REPO.parent / "shared" / "data" / "traces" / "bitbrains_rnd_2013_08"
TARGET = 0.95


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    from ml_cloud_optimizer.evaluation import evaluate_holdout, leaderboard, to_markdown
    from ml_cloud_optimizer.horizons import HEADLINE_HORIZON

    started = time.perf_counter()
    if args.trace != "synthetic" and not Path(args.trace).exists():
        _say(f"trace {args.trace} not found")
        return 2
    fleet = load_metrics(args.trace, args.format, args.records)
    metrics = fleet.metrics
    if args.max_entities and metrics["entity_id"].nunique() > args.max_entities:
        chosen = pd.Series(metrics["entity_id"].unique()).sample(args.max_entities, random_state=0)
        metrics = metrics.loc[metrics["entity_id"].isin(chosen)].reset_index(drop=True)
    _say(f"data: {fleet.source}: {metrics['entity_id'].nunique()} entities, {len(metrics):,} rows")
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    candidates = build_candidates(kinds, trials=args.trials, epochs=args.epochs, jobs=args.jobs, progress=_say)
    evaluation = evaluate_holdout(candidates, metrics, holdout=args.holdout, progress=_say)
    board = leaderboard(evaluation.scores)
    _say(to_markdown(board))

    h = HEADLINE_HORIZON
    mae = {row.model: round(float(getattr(row, f"mae_h{h}")), 6) for row in board.itertuples(index=False)}
    ratio = {row.model: round(float(getattr(row, f"vs_persistence_h{h}")), 4) for row in board.itertuples(index=False)}
    champion = str(board.loc[board["champion"], "model"].iloc[0])
    result = {
        "trace": str(fleet.source),
        "entities": int(metrics["entity_id"].nunique()),
        "rows": len(metrics),
        "holdout_cutoff": str(evaluation.cutoff),
        "scored_origins": int(board[f"n_h{h}"].iloc[0]),
        "horizon_steps": h,
        f"mae_h{h}": mae,
        f"vs_persistence_h{h}": ratio,
        f"persistence_mae_h{h}": mae["persistence"],
        f"seasonal_naive_mae_h{h}": mae["seasonal_naive"],
        "champion": champion,
        f"champion_mae_h{h}": mae[champion],
        "champion_vs_persistence": ratio[champion],
        "champion_vs_seasonal_naive": round(mae[champion] / mae["seasonal_naive"], 4),
        "target": TARGET,
        "meets_target": bool(ratio[champion] <= TARGET),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
