"""Scale: the pipeline's data stages and one LightGBM fit at growing sizes; seconds, peak memory, growth.

Each stage is the pipeline's own component function (``components.<name>.python_func``, what
kfp's executor calls), run in a fresh Python process per (stage, size) so that its peak RSS
(``ru_maxrss`` of that process, from ``wait4``) is its own; it reads what the stage before it
wrote, as in a pipeline run:

* ``datagen``: ``generate_fleet(N)`` and the fleet artifact (Parquet);
* ``olap_load``: the artifact into the warehouse (COPY, one transaction, the hourly view refreshed);
* ``features``: the window read back from the warehouse, split by time, and the peak classifier's
  feature rows (``features`` component);
* ``smote``: SMOTE on the peak rows (``smote`` component);
* ``train_lightgbm``: ``train_tabular(kind="lightgbm", trials=0)`` on the training window, the
  forecaster ``mlco train --models lightgbm`` fits (feature building included), ``--threads`` threads.

Seconds are the component call alone (imports done before, untimed). Beside each, in its own
process, a plain pass of the same size: ``datagen`` a numpy fill of the value columns written to
Parquet; ``olap_load`` a binary COPY of pre-encoded rows (the server's limit); ``features`` the
fleet read and a float64 matrix of as many lag columns as the peak rows have, written to Parquet;
``smote`` imbalanced-learn's SMOTE on the same ready numpy matrix; ``train_lightgbm``
``lightgbm.train`` on a float32 matrix of the same width, the same rows per booster and the same
rounds as ours. ``ratio`` = ours / plain (seconds); ``rss_ratio`` likewise for peak RSS.

``growth_exponent`` (target <= 1.1) is the worst over stages of log(w2/w1)/log(n2/n1) between
consecutive sizes, where w is the stage's work in CPU seconds: the component process's (all its
threads) plus the PostgreSQL server's meanwhile (``server_cpu_s``: its processes and the backends
it reaped). On a shared 2-core machine wall time mostly measures the other jobs; the same
exponents on wall seconds are ``growth_exponents_wall`` (worst: ``growth_exponent_wall``).
``peak_rss_gib`` (target <= 16 at 10M) is the largest peak. A stage whose peak,
projected from its per-row slope (``_scaling.project``), would pass ``--max-rss-gib`` (or what the
machine has free, less 2 GiB) is not run at that size, unless ``--run-all``: it is reported as
skipped with the projection. A watchdog kills a stage that passes the limit anyway. ``fleet_86m`` projects every
stage to 10,000 workloads x 30 days (86.4M rows).

Usage:
    nice -n 5 .venv/bin/python bench/scale.py --sizes 100000,1000000,10000000
Progress on stderr; one JSON line last on stdout. Uses DATABASE_URL's server, else an embedded one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _scaling import growth_exponents, project
from scale_plain import fresh_database, run_baseline

STAGES = ("datagen", "olap_load", "features", "smote", "train_lightgbm")
NEEDS = {"olap_load": "datagen", "features": "olap_load", "smote": "features", "train_lightgbm": "features"}
GIB = 1 << 30
GROWTH_TARGET, RSS_TARGET_GIB, FLEET_ROWS = 1.1, 16.0, 10_000 * 30 * 288


def _say(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- child: one stage, one size
def _artifacts(work: Path):
    from kfp import dsl

    def a(kind, name):
        return kind(name=name, uri=str(work / name), metadata={})

    return dsl, a


def run_stage(stage: str, size: int, work: Path) -> dict:
    """The component function of ``stage`` on the outputs already in ``work``; seconds of the call alone."""
    from ml_cloud_optimizer.components.datagen import datagen
    from ml_cloud_optimizer.components.features import features
    from ml_cloud_optimizer.components.olap_load import olap_load
    from ml_cloud_optimizer.components.smote import smote
    from ml_cloud_optimizer.components.train_tabular import train_tabular
    from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS, PEAK_HORIZON

    # The modules the components import inside, imported here so that the timed call does not.
    from ml_cloud_optimizer.pipeline_steps import artifacts, peak_training, sources, training, warehouse_io  # noqa: F401

    if stage in ("smote", "train_lightgbm"):
        import imblearn.over_sampling  # noqa: F401  (lazy imports of the steps, made here untimed)
        import lightgbm  # noqa: F401
    dsl, a = _artifacts(work)
    loaded = json.loads((work / "olap_load.json").read_text()) if (work / "olap_load.json").exists() else {}
    calls = {
        "datagen": lambda: datagen.python_func(source="synthetic", records=size, seed=0, fleet=a(dsl.Dataset, "fleet")),
        "olap_load": lambda: olap_load.python_func(fleet=a(dsl.Dataset, "fleet"), load_report=a(dsl.Metrics, "load")),
        "features": lambda: features.python_func(
            fleet=a(dsl.Dataset, "fleet"),
            start=loaded["start"],
            end=loaded["end"],
            holdout_fraction=0.2,
            peak_horizon=PEAK_HORIZON,
            seed=0,
            train=a(dsl.Dataset, "train"),
            history=a(dsl.Dataset, "history"),
            peak_rows=a(dsl.Dataset, "peak_rows"),
        ),
        "smote": lambda: smote.python_func(
            peak_rows=a(dsl.Dataset, "peak_rows"),
            seed=0,
            balanced=a(dsl.Dataset, "balanced"),
            balance=a(dsl.Metrics, "b"),
        ),
        "train_lightgbm": lambda: train_tabular.python_func(
            kind="lightgbm",
            train=a(dsl.Dataset, "train"),
            horizons=list(DEFAULT_HORIZONS),
            trials=0,
            seed=0,
            model=a(dsl.Model, "model"),
        ),
    }
    rss_before = psutil.Process().memory_info().rss
    started, cpu_started = time.perf_counter(), time.process_time()
    out = calls[stage]()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if stage == "olap_load":
        (work / "olap_load.json").write_text(json.dumps({"start": out.start, "end": out.end}))
    return {"seconds": seconds, "cpu_s": cpu, "rss_before_gib": rss_before / GIB}


# ----------------------------------------------------------------- parent: processes, limits, report
def _watch(process: subprocess.Popen, limit_bytes: float, state: dict) -> None:
    try:
        proc = psutil.Process(process.pid)
        while process.poll() is None:
            rss = proc.memory_info().rss
            if rss > limit_bytes:
                state["killed_at_gib"] = rss / GIB
                process.kill()
                return
            time.sleep(0.2)
    except psutil.NoSuchProcess:
        return


def spawn(mode: str, stage: str, size: int, work: Path, env: dict, limit_bytes: float) -> dict:
    """One child process; its JSON result, peak RSS (GiB) and wall seconds, or why it did not finish."""
    command = [sys.executable, __file__, f"--{mode}", stage, "--size", str(size), "--work", str(work)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    state: dict = {}
    watcher = threading.Thread(target=_watch, args=(process, limit_bytes, state), daemon=True)
    watcher.start()
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    watcher.join()
    result = {"peak_rss_gib": usage.ru_maxrss * 1024 / GIB, "wall_s": time.perf_counter() - started}
    if "killed_at_gib" in state:
        return {**result, "failed": f"killed by the watchdog at {state['killed_at_gib']:.1f} GiB"}
    if process.returncode != 0:
        return {**result, "failed": f"exit status {process.returncode}"}
    return {**result, **json.loads(stdout.strip().splitlines()[-1])}


def server_cpu(postmaster: psutil.Process | None) -> float:
    """CPU seconds of the PostgreSQL server so far: its live processes and the backends it has reaped."""
    if postmaster is None:
        return 0.0
    time.sleep(1.0)  # a backend whose client just left is reaped first, its CPU then in children_*
    times, live = postmaster.cpu_times(), 0.0
    for child in postmaster.children():
        try:
            live += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return times.user + times.system + times.children_user + times.children_system + live


def _postmaster(server_url: str) -> psutil.Process | None:
    """The server's main process when it runs on this machine (a backend's parent), else None."""
    from contextlib import closing

    from ml_cloud_optimizer.warehouse import connect

    with closing(connect(server_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    try:
        return psutil.Process(backend).parent()
    except psutil.Error:
        return None


def limit_gib(requested: float) -> float:
    return min(requested, psutil.virtual_memory().available / GIB - 2.0)


def measure(
    sizes: list[int],
    server_url: str,
    scratch: Path,
    max_rss: float,
    baselines: bool,
    threads: int | None,
    run_all: bool = False,
) -> dict:
    from ml_cloud_optimizer.warehouse import drop_database

    report: dict = {s: {"runs": {}} for s in STAGES}
    postmaster = _postmaster(server_url)
    for size in sizes:
        work = scratch / f"n{size}"
        work.mkdir()
        dsn = fresh_database(server_url, f"mlco_scale_{size}")
        env = {**os.environ, "DATABASE_URL": dsn, "MLCO_SCALE_SERVER": server_url}
        env.pop("MLCO_THREADS", None)
        if threads:
            env["MLCO_THREADS"] = str(threads)  # what `mlco run` sets for its training tasks
        for stage in STAGES:
            runs = report[stage]["runs"]
            done = [r for r in runs.values() if "seconds" in r]
            points = [(n, r["peak_rss_gib"]) for n, r in runs.items() if "seconds" in r]
            projected = project(points, size, floor=min(r["rss_before_gib"] for r in done)) if done else None
            cap = limit_gib(max_rss)
            need = NEEDS.get(stage)
            if need and "seconds" not in report[need]["runs"].get(size, {}):
                runs[size] = {"skipped": f"its input ({need}) was not produced", "projected_rss_gib": projected}
            elif projected is not None and projected > cap and not run_all:
                runs[size] = {
                    "skipped": f"projected {projected:.1f} GiB > limit {cap:.1f} GiB",
                    "projected_rss_gib": projected,
                }
            else:
                _say(f"{stage} at {size:,} (limit {cap:.1f} GiB) ...")
                server_before = server_cpu(postmaster)
                runs[size] = spawn("stage", stage, size, work, env, cap * GIB)
                if "cpu_s" in runs[size]:  # the work is the task's CPU and the server's on its behalf
                    runs[size]["server_cpu_s"] = server_cpu(postmaster) - server_before
                    runs[size]["work_cpu_s"] = runs[size]["cpu_s"] + runs[size]["server_cpu_s"]
                if baselines and "seconds" in runs[size]:
                    plain = spawn("baseline", stage, size, work, env, cap * GIB)
                    if "seconds" in plain:
                        runs[size].update(
                            baseline_s=plain["seconds"],
                            baseline_rss_gib=plain["peak_rss_gib"],
                            ratio=runs[size]["seconds"] / plain["seconds"],
                            rss_ratio=runs[size]["peak_rss_gib"] / plain["peak_rss_gib"],
                        )
            r = runs[size]
            _say(
                f"  {stage} {size:,}: "
                + (
                    f"{r['seconds']:.1f} s, {r['peak_rss_gib']:.2f} GiB"
                    if "seconds" in r
                    else r.get("skipped") or r.get("failed")
                )
            )
            if projected is not None:
                r["projected_rss_gib"] = projected
        drop_database(server_url, f"mlco_scale_{size}")
    return report


def finish(report: dict, sizes: list[int]) -> dict:
    """Exponents, slopes, projections and the headline figures from the measured runs."""
    worst, worst_stage, worst_wall, peak, peak_stage, stages = 0.0, "", 0.0, 0.0, "", {}
    skipped = {
        f"{stage} at {n:,}": round(r["projected_rss_gib"], 1) if r.get("projected_rss_gib") is not None else None
        for stage, entry in report.items()
        for n, r in entry["runs"].items()
        if "seconds" not in r
    }
    for stage, entry in report.items():
        done = {n: r for n, r in entry["runs"].items() if "seconds" in r}
        times = [(n, r["seconds"]) for n, r in done.items()]
        work = [(n, r["work_cpu_s"]) for n, r in done.items()]
        rss = [(n, r["peak_rss_gib"]) for n, r in done.items()]
        floor = min((r["rss_before_gib"] for r in done.values()), default=0.0)
        exponents = growth_exponents(work) if len(work) > 1 else []
        wall = growth_exponents(times) if len(times) > 1 else []
        if exponents and max(exponents) > worst:
            worst, worst_stage = max(exponents), stage
        worst_wall = max([worst_wall, *wall])
        for n, r in done.items():
            if r["peak_rss_gib"] > peak:
                peak, peak_stage = r["peak_rss_gib"], f"{stage} at {n:,}"
        slope = (rss[-1][1] - rss[-2][1]) / (rss[-1][0] - rss[-2][0]) if len(rss) > 1 else None
        stages[stage] = {
            "runs": {
                str(n): {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
                for n, r in entry["runs"].items()
            },
            "growth_exponents": [round(e, 3) for e in exponents],
            "growth_exponents_wall": [round(e, 3) for e in wall],
            "rss_growth_exponents": [round(e, 3) for e in growth_exponents(rss)] if len(rss) > 1 else [],
            "rss_bytes_per_row": round(slope * GIB) if slope is not None else None,
            "fleet_86m": {
                "projected_rss_gib": round(project(rss, FLEET_ROWS, floor=floor), 1) if rss else None,
                "projected_seconds": round(project(times, FLEET_ROWS)) if times else None,
            },
        }
    return {
        "sizes": sizes,
        "growth_exponent": round(worst, 3),
        "growth_exponent_stage": worst_stage,
        "growth_exponent_wall": round(worst_wall, 3),
        "growth_target": GROWTH_TARGET,
        "peak_rss_gib": round(peak, 2),
        "peak_rss_stage": peak_stage,
        "peak_rss_target_gib": RSS_TARGET_GIB,
        # A stage not run at a size cannot meet a target there: its projected peak is listed instead.
        "not_run_projected_rss_gib": skipped,
        "meets_targets": worst <= GROWTH_TARGET and peak <= RSS_TARGET_GIB and not skipped,
        "fleet_rows": FLEET_ROWS,
        "stages": stages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="comma-separated records")
    parser.add_argument("--max-rss-gib", type=float, default=14.0, help="most a stage may hold (default 14)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the plain passes")
    parser.add_argument(
        "--run-all",
        action="store_true",
        help="run a stage even where its projected peak passes the limit (the watchdog still stops it there)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="training threads (MLCO_THREADS; default: the model's own)"
    )
    parser.add_argument("--stage", "--baseline", dest="child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.child:
        baseline = "--baseline" in (argv or sys.argv)
        result = (run_baseline if baseline else run_stage)(args.child, args.size, args.work)
        print(json.dumps(result))
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(","))
    from ml_cloud_optimizer.warehouse.server import temporary_server

    options = (args.max_rss_gib, not args.no_baselines, args.threads, args.run_all)
    with tempfile.TemporaryDirectory(prefix="mlco-scale-") as scratch:
        if os.environ.get("DATABASE_URL"):
            report = measure(sizes, os.environ["DATABASE_URL"], Path(scratch), *options)
        else:
            with temporary_server() as url:
                report = measure(sizes, url, Path(scratch), *options)
    print(json.dumps(finish(report, sizes)))
    failed = [
        f"{s} at {n:,}" for s, e in report.items() for n, r in e["runs"].items() if "exit status" in r.get("failed", "")
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
