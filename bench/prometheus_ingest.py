"""How fast ``read_fleet("prometheus://...")`` ingests, beside a plain ``query_range`` loop on the same server.

A real Prometheus (Debian's, started as the tests start it, ``tests/prometheus_support.py``) is
backfilled with ``write_openmetrics`` from the shared Bitbrains trace (or ``--records N`` rows
of synthetic data) and read at pod level. The baseline, measured in the same run against the
same server and series, is the client anyone would write first: ``httpx``, one
``query_range`` per metric per chunk of at most 11,000 points, the JSON walked into a list of
dicts, a ``DataFrame`` of it pivoted to one column per metric, then utilisation divided out.
Samples are the values returned for all series of the four queries (CPU rate, working set,
CPU and memory requests); both sides should count the same.

Usage: .venv/bin/python bench/prometheus_ingest.py [--trace PATH | --records N] [--window 5m] [--repeat R]
Prints progress on stderr and one JSON line last on stdout: ``samples_per_s``,
``baseline_samples_per_s`` and their ``ratio`` (best of ``--repeat`` each).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the one way every Prometheus here is started

from ml_cloud_optimizer.data.io import read_fleet  # noqa: E402
from ml_cloud_optimizer.data.openmetrics import write_openmetrics  # noqa: E402
from ml_cloud_optimizer.data.schema import STEP_SECONDS, Fleet  # noqa: E402
from ml_cloud_optimizer.data.synthetic import generate_fleet  # noqa: E402
from prometheus_support import running_prometheus  # noqa: E402

DEFAULT_TRACE = REPO.parent / "shared" / "data" / "traces" / "bitbrains_rnd_2013_08"
MAX_POINTS = 11_000


def _log(message: str) -> None:
    print(f"[prometheus_ingest] {message}", file=sys.stderr, flush=True)


class _SampleCount(logging.Handler):
    """The reader's own count of returned samples, from its ``prometheus: N samples`` log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.samples: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"prometheus: (\d+) samples", record.getMessage())
        if found:
            self.samples = int(found.group(1))


def _baseline(base: str, start: int, end: int, window: str) -> tuple[int, pd.DataFrame]:
    """The plain loop: (samples returned, utilisation per pod and slot)."""
    by = "sum by (namespace, pod)"
    queries = {
        "cores": f'{by} (rate(container_cpu_usage_seconds_total{{container!=""}}[{window}]))',
        "mem_bytes": f'{by} (container_memory_working_set_bytes{{container!=""}})',
        "cpu_request": f'{by} (kube_pod_container_resource_requests{{resource="cpu"}})',
        "mem_request": f'{by} (kube_pod_container_resource_requests{{resource="memory"}})',
    }
    rows = []
    with httpx.Client(base_url=base, timeout=300) as client:
        for metric, query in queries.items():
            lo = start
            while lo <= end:
                hi = min(lo + (MAX_POINTS - 1) * STEP_SECONDS, end)
                params: dict[str, str | int] = {"query": query, "start": lo, "end": hi, "step": f"{STEP_SECONDS}s"}
                response = client.get("/api/v1/query_range", params=params)
                response.raise_for_status()
                for series in response.json()["data"]["result"]:
                    pod = f"{series['metric']['namespace']}/{series['metric']['pod']}"
                    for stamp, value in series["values"]:
                        rows.append({"pod": pod, "ts": int(stamp), "metric": metric, "value": float(value)})
                lo = hi + STEP_SECONDS
    wide = pd.DataFrame(rows).pivot_table(index=["pod", "ts"], columns="metric", values="value")
    util = pd.DataFrame(
        {"cpu_util": wide["cores"] / wide["cpu_request"], "mem_util": wide["mem_bytes"] / wide["mem_request"]}
    ).dropna(subset=["cpu_util"])
    return len(rows), util


def _fleet(args: argparse.Namespace) -> Fleet:
    if args.records:
        return generate_fleet(args.records, seed=1)
    if not args.trace.exists():
        raise SystemExit(f"no trace at {args.trace}; pass --trace PATH or --records N")
    return read_fleet(args.trace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="trace path (default: shared Bitbrains)")
    parser.add_argument("--records", type=int, default=None, help="synthetic rows instead of a trace")
    parser.add_argument("--window", default="5m", help="rate() window (default 5m)")
    parser.add_argument("--repeat", type=int, default=2, help="timed reads of each side; the best counts")
    args = parser.parse_args(argv)

    fleet = _fleet(args)
    seconds = fleet.metrics["ts"].astype("int64") // 10**9
    start, end = int(seconds.min()), int(seconds.max())
    _log(f"{len(fleet.metrics):,} rows of {fleet.metrics['entity_id'].nunique()} entities ({fleet.source})")
    with tempfile.TemporaryDirectory(prefix="prometheus_ingest_") as tmp:
        root = Path(tmp)
        clock = time.perf_counter()
        write_openmetrics(fleet, root / "trace.om")
        _log(f"wrote OpenMetrics in {time.perf_counter() - clock:.1f} s")
        clock = time.perf_counter()
        backfill = ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=744h", "-q"]
        subprocess.run([*backfill, str(root / "trace.om"), str(root / "data")], check=True, capture_output=True)
        _log(f"promtool backfilled in {time.perf_counter() - clock:.1f} s")
        with running_prometheus(root) as hostport:
            url = f"prometheus://{hostport}?start={start}&end={end}&step=5m&level=pod&window={args.window}"
            counter = _SampleCount()
            logging.getLogger("ml_cloud_optimizer").addHandler(counter)
            logging.getLogger("ml_cloud_optimizer").setLevel(logging.INFO)
            best, best_baseline, rows, baseline_samples = float("inf"), float("inf"), 0, 0
            for i in range(args.repeat):
                clock = time.perf_counter()
                rows = len(read_fleet(url).metrics)
                best = min(best, time.perf_counter() - clock)
                _log(f"read_fleet run {i + 1}/{args.repeat}: {time.perf_counter() - clock:.2f} s, {rows:,} rows")
                clock = time.perf_counter()
                baseline_samples, util = _baseline(f"http://{hostport}", start, end, args.window)
                best_baseline = min(best_baseline, time.perf_counter() - clock)
                _log(f"baseline run {i + 1}/{args.repeat}: {time.perf_counter() - clock:.2f} s, {len(util):,} rows")
    samples = counter.samples if counter.samples is not None else baseline_samples
    print(
        json.dumps(
            {
                "source": "synthetic" if args.records else str(args.trace.name),
                "rows": rows,
                "window": args.window,
                "samples": samples,
                "baseline_samples": baseline_samples,
                "seconds": round(best, 2),
                "baseline_seconds": round(best_baseline, 2),
                "samples_per_s": round(samples / best),
                "baseline_samples_per_s": round(baseline_samples / best_baseline),
                "ratio": round((samples / best) / (baseline_samples / best_baseline), 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
