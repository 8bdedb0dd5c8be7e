"""What capping the majority before SMOTE costs the peak classifier, and what it saves.

``PeakClassifier(use_smote=True)`` keeps at most ``imbalance.MAJORITY_CAP`` ordinary training
rows (a seeded uniform sample) before SMOTE balances the classes 1:1. This fits it twice on the
training window of one generated fleet, capped and whole (``majority_cap=None``), each in a fresh
process so that its peak RSS is its own, and scores both on the hold-out as ``mlco``'s peak
report does (``models.peak_report``: PR-AUC, F1 at the chosen cut-off, recall at precision 0.5).

Ratios are capped / whole: below 1 for seconds and memory is the saving, near 1 for PR-AUC and
F1 is what the classifier kept.

Usage:
    nice -n 5 .venv/bin/python bench/smote_cap.py --records 1000000
Progress on stderr; one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

GIB = 1 << 30
VARIANTS = ("capped", "whole")


def _say(message: str) -> None:
    print(f"[smote_cap] {message}", file=sys.stderr, flush=True)


def fit_and_score(records: int, variant: str, cap: int, seed: int) -> dict:
    """One variant's hold-out row of the peak report, with the rows it trained on."""
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.models.peak import PeakClassifier
    from ml_cloud_optimizer.models.peak_report import peak_report

    metrics = generate_fleet(records, seed=seed).metrics
    model = PeakClassifier(use_smote=True, majority_cap=cap if variant == "capped" else None, seed=seed)
    row = peak_report(metrics, models={variant: model}, seed=seed).iloc[-1]
    return {
        "pr_auc": float(row["pr_auc"]),
        "f1": float(row["f1"]),
        "recall_at_precision": float(row["recall_at_precision"]),
        "fit_seconds": float(row["fit_seconds"]),
        "train_rows": int(model.n_train_rows_),
        "train_peaks": int(model.n_train_positives_),
        "rows_boosted": int(model.n_train_resampled_),
        "holdout_positives": int(row["positives"]),
    }


def spawn(records: int, variant: str, cap: int, seed: int) -> dict:
    """``fit_and_score`` in a child process; its result and the child's peak RSS."""
    command = [sys.executable, __file__, "--child", variant, "--records", str(records)]
    command += ["--cap", str(cap), "--seed", str(seed)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"smote_cap: the {variant} fit failed (exit status {os.waitstatus_to_exitcode(status)})")
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "peak_rss_gib": usage.ru_maxrss * 1024 / GIB, "wall_s": time.perf_counter() - started}


def main() -> None:
    from ml_cloud_optimizer.imbalance import MAJORITY_CAP

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--cap", type=int, default=MAJORITY_CAP, help=f"majority cap (default {MAJORITY_CAP:,})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fit_and_score(args.records, args.child, args.cap, args.seed)))
        return

    runs = {}
    for variant in VARIANTS:
        _say(f"{variant}: fitting on {args.records:,} records ...")
        runs[variant] = spawn(args.records, variant, args.cap, args.seed)
        r = runs[variant]
        _say(
            f"{variant}: PR-AUC {r['pr_auc']:.4f}, F1 {r['f1']:.4f}, {r['rows_boosted']:,} rows boosted, "
            f"fit {r['fit_seconds']:.1f} s, peak {r['peak_rss_gib']:.2f} GiB"
        )
    capped, whole = runs["capped"], runs["whole"]
    if capped["rows_boosted"] == whole["rows_boosted"]:
        _say(f"the majority is below the cap of {args.cap:,} at this size: both fits are the same")
    figures = {
        "records": args.records,
        "majority_cap": args.cap,
        **{f"{v}_{k}": round(x, 4) if isinstance(x, float) else x for v, r in runs.items() for k, x in r.items()},
        "pr_auc_ratio": round(capped["pr_auc"] / whole["pr_auc"], 4),
        "f1_ratio": round(capped["f1"] / whole["f1"], 4) if whole["f1"] else None,
        "fit_seconds_ratio": round(capped["fit_seconds"] / whole["fit_seconds"], 4),
        "rss_ratio": round(capped["peak_rss_gib"] / whole["peak_rss_gib"], 4),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
