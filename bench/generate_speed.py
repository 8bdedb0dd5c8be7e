"""How fast the synthetic generator makes a million rows, beside a plain numpy fill of the same shape.

The baseline, ``rng.standard_normal`` filling a (records x value columns) array, is the
least any generator of that many numbers must spend; the ratio says how much the
structure (seasonality, runs, bursts, validation, the pandas frame) costs on top.

Usage: .venv/bin/python bench/generate_speed.py [--records N] [--repeat R]
Prints progress on stderr and one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ml_cloud_optimizer.data.schema import VALUE_COLUMNS
from ml_cloud_optimizer.data.synthetic import generate_fleet


def _best_of(repeat: int, label: str, work) -> float:
    best = float("inf")
    for i in range(repeat):
        start = time.perf_counter()
        work()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        print(f"{label} run {i + 1}/{repeat}: {elapsed:.3f} s", file=sys.stderr)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows = len(generate_fleet(args.records).metrics)  # warm-up, and the row count actually produced
    seconds = _best_of(args.repeat, "generate_fleet", lambda: generate_fleet(args.records, seed=1))
    rng = np.random.default_rng(1)
    numpy_seconds = _best_of(args.repeat, "numpy fill", lambda: rng.standard_normal((args.records, len(VALUE_COLUMNS))))
    print(
        json.dumps(
            {
                "records": args.records,
                "rows": rows,
                "seconds": round(seconds, 3),
                "records_per_s": round(args.records / seconds),
                "numpy_fill_seconds": round(numpy_seconds, 4),
                "ratio_to_numpy_fill": round(seconds / numpy_seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
