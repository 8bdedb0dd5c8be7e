"""Where the memory of one LightGBM fit goes: RSS sampled through ``train_tabular`` with the line it was at.

Writes a generated fleet's training window (the first 80% of its span, as the pipeline's split)
as a fleet artifact, then, in a fresh process, runs the ``train_tabular`` component function on
it (``kind="lightgbm"``, ``trials=0``: what the pipeline and ``mlco train --models lightgbm``
fit). A thread samples this process's RSS every ``--interval`` seconds together with the main
thread's stack; each sample is charged to the innermost line of ``ml_cloud_optimizer`` code.

Reported: the peak and the stack at the peak; per line, the most RSS seen while it ran and the
RSS it added (the rise from the line before it, summed over its samples); per phase (reading the
artifact, ``build_features``, ``make_targets``, the design matrix, the boosters), the RSS on
entry and the peak inside. Bytes per input row say how the figures scale.

Usage:
    nice -n 5 .venv/bin/python bench/fit_memory.py --records 1000000
Progress on stderr; one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

GIB = 1 << 30
_PAGE = os.sysconf("SC_PAGE_SIZE")
PACKAGE = f"{os.sep}ml_cloud_optimizer{os.sep}"
PHASES = {  # function name -> phase, the outermost one on the stack wins
    "read_fleet": "read the artifact",
    "build_features": "build_features",
    "build_feature_rows": "build_features",
    "make_targets": "make_targets",
    "_design": "design matrix (float32)",
    "_anchor": "design matrix (float32)",
    "fit_booster": "boosters",
    "save": "save",
}


def _say(message: str) -> None:
    print(f"[fit_memory] {message}", file=sys.stderr, flush=True)


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def prepare(records: int, directory: Path) -> int:
    """The training window of a generated fleet, saved as the ``features`` step saves ``train``."""
    import pandas as pd

    from ml_cloud_optimizer.data.schema import Fleet
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.pipeline_steps.artifacts import save_fleet

    fleet = generate_fleet(records, seed=0)
    ts = fleet.metrics["ts"]
    cutoff = (ts.min() + (ts.max() - ts.min()) * 0.8).floor("5min")
    metrics = fleet.metrics.loc[ts < cutoff].reset_index(drop=True)
    entities = fleet.entities.loc[fleet.entities["entity_id"].isin(pd.unique(metrics["entity_id"]))]
    save_fleet(Fleet(metrics=metrics, entities=entities.reset_index(drop=True), source="synthetic"), directory)
    return len(metrics)


class Sampler(threading.Thread):
    """RSS and the main thread's innermost ``ml_cloud_optimizer`` line, every ``interval`` seconds."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.samples, self.stop = interval, [], threading.Event()
        self.main = threading.main_thread().ident

    def run(self) -> None:
        while not self.stop.is_set():
            frame = sys._current_frames().get(self.main)
            where, phase, stack = None, None, []
            while frame is not None:
                code = frame.f_code
                if PACKAGE in code.co_filename:
                    short = code.co_filename.split(PACKAGE, 1)[1]
                    location = f"{short}:{frame.f_lineno} ({code.co_name})"
                    where = where or location
                    stack.append(location)
                    phase = PHASES.get(code.co_name, phase)
                frame = frame.f_back
            self.samples.append((time.perf_counter(), rss(), where, phase, stack))
            time.sleep(self.interval)


def profile(directory: Path, interval: float) -> dict:
    import lightgbm  # noqa: F401  (imports before the first sample, as a task's are)
    from kfp import dsl

    from ml_cloud_optimizer.components.train_tabular import train_tabular
    from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS
    from ml_cloud_optimizer.pipeline_steps import artifacts, training  # noqa: F401

    train = dsl.Dataset(name="train", uri=str(directory), metadata={})
    model = dsl.Model(name="model", uri=str(directory.parent / "model"), metadata={})
    start_rss = rss()
    sampler = Sampler(interval)
    sampler.start()
    started = time.perf_counter()
    train_tabular.python_func(
        kind="lightgbm", train=train, horizons=list(DEFAULT_HORIZONS), trials=0, seed=0, model=model
    )
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    return summarise(sampler.samples, start_rss, seconds)


def design_rows(directory: Path, block_entities: int) -> dict:
    """The training rows' float32 design matrix, built whole (0) or per block of entities; seconds and peak RSS.

    The rows are chosen first, as ``TabularForecaster._training_rows`` chooses them (a known
    target and current value, at most ``max_train_rows`` evenly spaced in time, per horizon),
    from the targets and ``cpu_util`` alone. Whole: ``build_features`` on every row, then the
    rows taken (today's order). Per block: ``build_features`` on ``block_entities`` entities at
    a time, keeping only their chosen rows: features are per entity, so the rows are the same.
    """
    import numpy as np
    import pandas as pd

    from ml_cloud_optimizer.features.tabular import FeatureSpec, build_features
    from ml_cloud_optimizer.features.targets import make_targets, target_column
    from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster
    from ml_cloud_optimizer.pipeline_steps.artifacts import load_fleet

    metrics = load_fleet(directory).metrics
    model, spec = LightGBMForecaster(), FeatureSpec()
    started, start_rss = time.perf_counter(), rss()
    targets = make_targets(metrics, DEFAULT_HORIZONS)
    anchor = metrics[spec.target].to_numpy(dtype="float64", na_value=np.nan)
    chosen = set()
    for h in DEFAULT_HORIZONS:
        y = targets[target_column(h)].to_numpy(dtype="float64", na_value=np.nan)
        chosen.update(model._training_rows(y, anchor, metrics["ts"]).tolist())
    rows = np.array(sorted(chosen), dtype=np.int64)
    del targets
    peak = [rss()]
    if block_entities <= 0:
        features = build_features(metrics, spec)
        peak.append(rss())
        X = features[spec.columns].to_numpy(dtype="float32", na_value=np.nan)[rows]
    else:
        keep = np.zeros(len(metrics), dtype=bool)
        keep[rows] = True
        ids = metrics["entity_id"].to_numpy()
        parts, order = [], []
        unique = pd.unique(ids)
        for i in range(0, len(unique), block_entities):
            block = np.flatnonzero(np.isin(ids, unique[i : i + block_entities]))
            features = build_features(metrics.iloc[block], spec)
            mine = keep[block]
            parts.append(features[spec.columns].to_numpy(dtype="float32", na_value=np.nan)[mine])
            order.append(block[mine])
            peak.append(rss())
        X = np.concatenate(parts)[np.argsort(np.concatenate(order), kind="stable")]
    seconds = time.perf_counter() - started
    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()[:16]  # equal matrices, equal digests
    return {
        "rows": len(metrics),
        "design_rows": len(X),
        "columns": X.shape[1],
        "seconds": round(seconds, 2),
        "start_rss_gib": round(start_rss / GIB, 3),
        "sampled_peak_rss_gib": round(max(peak) / GIB, 3),
        "digest": digest,
    }


def summarise(samples: list, start_rss: int, seconds: float) -> dict:
    _, peak, _, peak_phase, peak_stack = max(samples, key=lambda s: s[1])
    by_line: dict[str, dict] = defaultdict(lambda: {"max_rss_gib": 0.0, "added_gib": 0.0, "samples": 0})
    phases: dict[str, dict] = {}
    previous = start_rss
    for _, now, where, phase, _ in samples:
        entry = by_line[where or "(outside ml_cloud_optimizer)"]
        entry["max_rss_gib"] = max(entry["max_rss_gib"], now / GIB)
        entry["added_gib"] += (now - previous) / GIB
        entry["samples"] += 1
        if phase:
            p = phases.setdefault(phase, {"entry_rss_gib": previous / GIB, "peak_rss_gib": 0.0})
            p["peak_rss_gib"] = max(p["peak_rss_gib"], now / GIB)
        previous = now
    top = sorted(by_line.items(), key=lambda kv: kv[1]["added_gib"], reverse=True)[:12]
    return {
        "seconds": round(seconds, 1),
        "start_rss_gib": round(start_rss / GIB, 3),
        "peak_rss_gib": round(peak / GIB, 3),
        "peak_phase": peak_phase,
        "peak_stack": peak_stack[:6],
        "phases": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in phases.items()},
        "top_lines": [{"line": k, **{kk: round(vv, 3) for kk, vv in v.items()}} for k, v in top],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between samples")
    parser.add_argument(
        "--blocks",
        type=int,
        default=0,
        help="also build the training rows' design matrix per block of this many entities, beside whole",
    )
    parser.add_argument("--no-profile", action="store_true", help="only the design-matrix comparison (--blocks)")
    parser.add_argument("--profile", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--design", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile and args.design is not None:
        print(json.dumps(design_rows(args.profile, args.design)))
        return 0
    if args.profile:
        print(json.dumps(profile(args.profile, args.interval)))
        return 0
    with tempfile.TemporaryDirectory(prefix="mlco-fit-memory-") as scratch:
        directory = Path(scratch) / "train"
        rows = prepare(args.records, directory)
        _say(f"{rows:,} training rows of {args.records:,} records; profiling train_tabular(lightgbm) ...")
        result = {}
        if not args.no_profile:
            command = [sys.executable, __file__, "--profile", str(directory), "--interval", str(args.interval)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-3000:])
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
        if args.blocks:
            design = {}
            for label, block in (("whole", 0), (f"blocks_of_{args.blocks}", args.blocks)):
                _say(f"design matrix of the training rows, {label} ...")
                command = [sys.executable, __file__, "--profile", str(directory), "--design", str(block)]
                child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                out = child.stdout.read()
                _, _, usage = os.wait4(child.pid, 0)
                design[label] = {
                    **json.loads(out.strip().splitlines()[-1]),
                    "peak_rss_gib": usage.ru_maxrss / (1 << 20),
                }
            result["design_matrix"] = design
    result = {"records": args.records, "training_rows": rows, **result}
    if "peak_rss_gib" in result:
        result["peak_bytes_per_row"] = round((result["peak_rss_gib"] - result["start_rss_gib"]) * GIB / rows)
    for line in result.get("top_lines", [])[:8]:
        _say(f"{line['added_gib']:+7.3f} GiB  max {line['max_rss_gib']:.2f}  {line['line']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
