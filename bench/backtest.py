"""Autoscaling backtest on a real trace: forecast-driven capacity against static, HPA and VPA-style.

Usage:
    .venv/bin/python bench/backtest.py [--trace PATH] [--format F] [--forecaster lightgbm]

Replays the last third of the trace (the shared Bitbrains one by default) under every policy
of ``ml_cloud_optimizer.optimizer.policies``, the forecaster trained on the rest, and prints
one JSON line last: per policy its core-hours, slack and under-provisioned share, and the
ratios of the forecast-driven policy to the VPA-style and static ones measured in the same
run. Where the trace has memory, ``memory_policies`` adds each policy's GiB-hours, OOM kills
and the restarts they cost (the memory replay of ``optimizer.backtest``), beside CPU's
figures, which it leaves as they were; ``--no-memory`` skips it.

Target: forecast_vs_vpa_core_hours <= 0.85 with forecast_vs_vpa_underprovisioned <= 1, and
forecast_vs_static_core_hours <= 0.7.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ml_cloud_optimizer.data.io import read_fleet
from ml_cloud_optimizer.optimizer.backtest import policy_forecaster, replay_fleet

DEFAULT_TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces" / "bitbrains_rnd_2013_08"


def _log(message: str) -> None:
    print(f"[backtest] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="trace path (default: shared Bitbrains)")
    parser.add_argument("--format", default=None, help="trace format (default: detected)")
    parser.add_argument("--forecaster", default="lightgbm", help="model kind of the forecast-driven policy")
    parser.add_argument("--replay-fraction", type=float, default=1 / 3)
    parser.add_argument("--coverage", type=float, default=0.98)
    parser.add_argument("--out", type=Path, default=None, help="also save the summary and capacities here")
    parser.add_argument("--no-memory", action="store_true", help="replay CPU only")
    args = parser.parse_args(argv)
    if not args.trace.exists():
        parser.error(f"no trace at {args.trace}")

    clock = time.perf_counter()
    fleet = read_fleet(args.trace, args.format)
    _log(f"read {len(fleet.metrics):,} rows of {fleet.metrics['entity_id'].nunique()} entities from {args.trace}")
    forecaster = policy_forecaster(args.forecaster, 1)
    result = replay_fleet(
        fleet,
        forecaster,
        replay_fraction=args.replay_fraction,
        coverage=args.coverage,
        memory=False if args.no_memory else None,
        log=_log,
    )
    if args.out:
        result.save(args.out)
    print(result.summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"), file=sys.stderr)

    policies = {
        row.policy: {
            "core_hours": round(row.core_hours, 1),
            "slack": round(row.slack, 4),
            "underprovisioned_share": round(row.underprovisioned_share, 5),
            "slo_violation_minutes": round(row.slo_violation_minutes, 1),
        }
        for row in result.summary.itertuples()
    }
    figures = {
        "trace": str(args.trace),
        "entities": len(result.grid.entity_ids),
        "replay_steps": int(len(result.grid.ts) - result.start),
        "granularity_cores": result.params["granularity"],
        "forecaster": result.params["forecaster"],
        "policies": policies,
        "forecast_vs_vpa_core_hours": round(result.ratio("forecast", "vpa", "core_hours"), 4),
        "forecast_vs_vpa_underprovisioned": round(result.ratio("forecast", "vpa", "underprovisioned_share"), 4),
        "forecast_vs_static_core_hours": round(result.ratio("forecast", "static", "core_hours"), 4),
        "forecast_vs_static_underprovisioned": round(result.ratio("forecast", "static", "underprovisioned_share"), 4),
        "forecast_vs_persistence_forecast_core_hours": round(
            result.ratio("forecast", "forecast_persistence", "core_hours"), 4
        ),
    }
    if result.memory_grid is not None:
        figures["memory_policies"] = {
            row.policy: {
                "gib_hours": round(row.mem_gib_hours, 1),
                "oom_kills": int(row.oom_kills),
                "restarts": int(row.restarts),
                "cost_usd": round(row.mem_cost_usd, 2),
            }
            for row in result.summary.itertuples()
        }
        figures["memory_forecast_vs_vpa_gib_hours"] = round(result.ratio("forecast", "vpa", "mem_gib_hours"), 4)
        figures["prices"] = result.params["prices"]
    figures["seconds"] = round(time.perf_counter() - clock, 1)
    figures["target_met"] = bool(
        figures["forecast_vs_vpa_core_hours"] <= 0.85
        and figures["forecast_vs_vpa_underprovisioned"] <= 1.0
        and figures["forecast_vs_static_core_hours"] <= 0.7
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
