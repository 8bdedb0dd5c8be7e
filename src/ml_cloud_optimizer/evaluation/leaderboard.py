"""The leaderboard: one row per candidate, ranked on the one-hour MAE, and the champion rule.

Champion: the lowest MAE at the headline horizon (one hour). Candidates within
``TIE_TOLERANCE`` (0.1%, relative) of the best are a tie, broken by the simpler model (the
order of ``SIMPLICITY``: baselines, then trees, then recurrent networks), then the faster fit,
then the name, so the choice is deterministic and never pays for noise with complexity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.horizons import HEADLINE_HORIZON
from ml_cloud_optimizer.models import registry

__all__ = ["SIMPLICITY", "TIE_TOLERANCE", "choose_champion", "leaderboard", "to_markdown", "write_leaderboard"]

TIE_TOLERANCE = 0.001
# Simplest first, from each kind's rank in ``models.registry``; an unknown kind is the least simple.
SIMPLICITY = tuple(sorted(registry.FORECASTERS, key=registry.simplicity))
_simplicity = registry.simplicity


def leaderboard(scores: pd.DataFrame, headline: int = HEADLINE_HORIZON) -> pd.DataFrame:
    """One row per model from evaluation ``scores``: headline metrics first, other horizons' MAE after.

    Sorted best first; ``rank`` counts from 1 and ``champion`` marks the one chosen by the rule.
    """
    if scores.empty:
        raise ValueError("leaderboard: no scores")
    horizons = sorted(scores["horizon"].unique())
    if headline not in horizons:
        raise ValueError(f"leaderboard: no scores at the headline horizon {headline} (have {horizons})")
    wide = scores.pivot_table(
        index=["model", "kind"],
        columns="horizon",
        values=["mae", "rmse", "wape", "mape", "mase", "vs_persistence", "vs_seasonal_naive", "n"],
        aggfunc="first",
    )
    board = pd.DataFrame(index=wide.index)
    for metric in ("mae", "rmse", "wape", "mape", "mase", "vs_persistence", "vs_seasonal_naive", "n"):
        board[f"{metric}_h{headline}"] = wide[(metric, headline)]
    for h in horizons:
        if h != headline:
            board[f"mae_h{h}"] = wide[("mae", h)]
            board[f"vs_persistence_h{h}"] = wide[("vs_persistence", h)]
    timing = scores.groupby(["model", "kind"])[["fit_s", "predict_s"]].first()
    board = board.join(timing).reset_index()
    board["_simplicity"] = board["kind"].map(_simplicity)
    board = board.sort_values([f"mae_h{headline}", "_simplicity", "fit_s", "model"], na_position="last")
    board = board.drop(columns="_simplicity").reset_index(drop=True)
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    board["champion"] = board["model"] == choose_champion(board, headline)
    board[f"n_h{headline}"] = board[f"n_h{headline}"].astype("Int64")
    return board


def choose_champion(board: pd.DataFrame, headline: int = HEADLINE_HORIZON) -> str:
    """Name of the champion under the rule in the module doc."""
    col = f"mae_h{headline}"
    scored = board.loc[board[col].notna()]
    if scored.empty:
        raise ValueError(f"champion: no model has a {col}")
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
