"""The leaderboard: one row per candidate, ranked on the one-hour MAE on validation, and the champion rule.

Champion: the lowest MAE at the headline horizon (one hour) on the validation window, when the
evaluation had one (``val_mae_h12``; ``evaluation.holdout``), else on the hold-out; among the
rows marked ``eligible`` when that column is there (references and a blend that did not beat
the best single model are not). The hold-out columns (``mae_h12``, ``vs_persistence_h12``...)
are what is reported: nothing is chosen on them. Candidates within ``TIE_TOLERANCE`` (0.1%,
relative) of the best are a tie, broken by the simpler model (the order of ``SIMPLICITY``:
baselines, then trees, then recurrent networks, then blends), then the faster fit, then the
name, so the choice is deterministic and never pays for noise with complexity.

A metric may be undefined on a trace (MASE needs a value a day earlier, which a trace of
separate days lacks): its column is then NaN, and ranking never needs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models import registry

__all__ = [
    "SIMPLICITY",
    "TIE_TOLERANCE",
    "choose_champion",
    "leaderboard",
    "ranking_column",
    "to_markdown",
    "write_leaderboard",
]

TIE_TOLERANCE = 0.001
# Simplest first, from each kind's rank in ``models.registry``; an unknown kind is the least simple.
SIMPLICITY = tuple(sorted(registry.FORECASTERS, key=registry.simplicity))
_simplicity = registry.simplicity
_HEADLINE = ("mae", "rmse", "wape", "mape", "mase", "vs_persistence", "vs_seasonal_naive", "n", "p90_cover")
_VALIDATION = ("val_mae", "val_vs_persistence", "val_p90_cover", "val_n")


def ranking_column(board: pd.DataFrame, headline: int = HEADLINE_HORIZON) -> str:
    """The column candidates are ranked and chosen on: validation MAE when there is one, else hold-out MAE."""
    val = f"val_mae_h{headline}"
    return val if val in board and board[val].notna().any() else f"mae_h{headline}"


def leaderboard(scores: pd.DataFrame, headline: int = HEADLINE_HORIZON) -> pd.DataFrame:
    """One row per model from evaluation ``scores``: headline metrics first, other horizons' MAE after.

    Hold-out columns keep their plain names (``mae_h12``), validation ones carry ``val_``.
    Sorted best first on ``ranking_column``; ``rank`` counts from 1 and ``champion`` marks the
    one chosen by the rule.
    """
    if scores.empty:
        raise ValueError("leaderboard: no scores")
    horizons = sorted(scores["horizon"].unique())
    if headline not in horizons:
        raise ValueError(f"leaderboard: no scores at the headline horizon {headline} (have {horizons})")
    # What the choice was made on first, then what is reported.
    metrics = [m for m in (*_VALIDATION[:2], *_HEADLINE, *_VALIDATION[2:]) if m in scores]
    # unstack, not pivot_table: a metric undefined everywhere (MASE without a day of history) stays a NaN column.
    wide = scores.drop_duplicates(["model", "kind", "horizon"]).set_index(["model", "kind", "horizon"])[metrics]
    wide = wide.unstack("horizon")
    board = pd.DataFrame(index=wide.index)
    for metric in metrics:
        column = (metric, headline)
        board[f"{metric}_h{headline}"] = wide.get(column, np.nan)
    for h in horizons:
        if h != headline:
            for metric in ("mae", "vs_persistence", "val_mae"):
                if (metric, h) in wide:
                    board[f"{metric}_h{h}"] = wide[(metric, h)]
    timing = scores.groupby(["model", "kind"])[["fit_s", "predict_s"]].first()
    board = board.join(timing)
    if "eligible" in scores:
        board = board.join(scores.groupby(["model", "kind"])["eligible"].all())
    board = board.reset_index()
    order = ranking_column(board, headline)
    board["_simplicity"] = board["kind"].map(_simplicity)
    board = board.sort_values([order, "_simplicity", "fit_s", "model"], na_position="last")
    board = board.drop(columns="_simplicity").reset_index(drop=True)
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    board["champion"] = board["model"] == choose_champion(board, headline)
    for n in (f"n_h{headline}", f"val_n_h{headline}"):
        if n in board:
            board[n] = board[n].astype("Int64")
    return board


def choose_champion(board: pd.DataFrame, headline: int = HEADLINE_HORIZON) -> str:
    """Name of the champion under the rule in the module doc."""
    col = ranking_column(board, headline)
    scored = board.loc[board[col].notna()]
    if "eligible" in scored:
        scored = scored.loc[scored["eligible"].astype(bool)]
    if scored.empty:
        raise ValueError(f"champion: no eligible model has a {col}")
    best = scored[col].min()
    tied = scored.loc[scored[col] <= best * (1 + TIE_TOLERANCE)].copy()
    tied["_simplicity"] = tied["kind"].map(_simplicity)
    return str(tied.sort_values(["_simplicity", "fit_s", "model"]).iloc[0]["model"])


def to_markdown(board: pd.DataFrame) -> str:
    """The leaderboard as a Markdown table (numbers rounded for reading)."""
    shown = board.copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    shown["champion"] = shown["champion"].map({True: "yes", False: ""})
    if "eligible" in shown:
        shown["eligible"] = shown["eligible"].map({True: "", False: "no"})
    return shown.to_markdown(index=False)


def write_leaderboard(board: pd.DataFrame, directory: str | Path, name: str = "leaderboard") -> tuple[Path, Path]:
    """Write ``{name}.csv`` and ``{name}.md`` into ``directory``; return their paths.

    ``name`` tells one resource's leaderboard from another's (``leaderboard-mem``, see
    ``resources.suffix``); CPU's keeps the plain name.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = directory / f"{name}.csv", directory / f"{name}.md"
    board.to_csv(csv_path, index=False)
    md_path.write_text(to_markdown(board) + "\n")
    return csv_path, md_path
