"""The local pipeline end to end: seconds per stage, and the share of the wall time that is not a stage's compute.

Runs ``mlco run --records N --models M`` as a user does (a subprocess, tasks through kfp.local's
SubprocessRunner, the embedded PostgreSQL started and stopped by the run, the local MLflow store)
in a fresh ``MLCO_HOME`` whose warehouse was initialised beforehand, untimed (``mlco db init``,
then ``mlco db stop``: a first run's initdb is not what every run pays).

Each task process is timed from inside by ``bench/task_timing/sitecustomize.py`` (on the tasks'
PYTHONPATH; it patches kfp's ``Executor.execute``, which runs the component function):

* ``compute_s``: ``Executor.execute`` less the imports inside it: the component's work;
* ``import_s``: modules first imported inside the component (pandas, LightGBM, MLflow, ...);
* ``startup_s``: process creation to ``execute`` (interpreter, kfp, the component's module);
* ``teardown_s``: ``execute``'s end to interpreter shutdown;
* ``task_s``: the task as the runner saw it (its progress line), executor input and output
  handling in the parent included.

``total_s`` is the ``mlco run`` subprocess from spawn to exit. ``overhead_ratio`` = (total -
stage compute) / total (target 0.25), where stage compute is the sum of ``compute_s`` less any
time two loop iterations computed at once; ``overhead_ratio_imports_as_compute`` counts the
component's own imports as compute. ``overhead_s`` splits what is left: task start-ups, imports,
teardowns, and ``outside_tasks_s``: the time no task process was alive (the CLI's imports, the
warehouse start and stop, kfp.local between tasks, copying the champion), of which
``task_span_outside_process_s`` falls inside the runner's task spans (``sh``, interpreter
shutdown after the exit handlers, kfp.local reading the outputs).

Usage:
    nice -n 5 .venv/bin/python bench/pipeline_local.py --records 100000
    nice -n 5 .venv/bin/python bench/pipeline_local.py --records 1000000 --models lightgbm
Progress on stderr; one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _scaling import covered_seconds, overhead_ratio

BENCH = Path(__file__).resolve().parent
MLCO = Path(sys.executable).with_name("mlco")
HOOK = BENCH / "task_timing"
TARGET = 0.25
_TASK_LINE = re.compile(r"^\s+ok\s+(\S+) \(([\d.]+) s\)")


def _say(message: str) -> None:
    print(f"[pipeline_local] {message}", file=sys.stderr, flush=True)


def _env(home: Path, times: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MLFLOW_TRACKING_URI")}
    env["MLCO_HOME"] = str(home)
    if times is not None:
        env["MLCO_BENCH_TASK_TIMES"] = str(times)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOK), env.get("PYTHONPATH", "")) if p)
    return env


def run_pipeline(records: int, models: str, home: Path) -> tuple[float, dict[str, float], list[dict], str]:
    """``mlco run`` timed end to end; per-task seconds from its progress lines; the task processes' records."""
    env = _env(home, None)
    for command in (["db", "init"], ["db", "stop"]):
        subprocess.run([str(MLCO), *command], env=env, check=True, stdout=subprocess.DEVNULL)
    times = home / "task_times.jsonl"
    command = [str(MLCO), "run", "--records", str(records), "--models", models]
    _say(" ".join(["mlco", *command[1:]]))
    started = time.perf_counter()
    done = subprocess.run(command, env=_env(home, times), capture_output=True, text=True)
    total = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"mlco run failed ({done.returncode})")
    task_seconds: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if match := _TASK_LINE.match(line):
            task_seconds[match.group(1)] = task_seconds.get(match.group(1), 0.0) + float(match.group(2))
    records_ = [json.loads(line) for line in times.read_text().splitlines() if line.strip()]
    return total, task_seconds, records_, done.stdout


def summarise(total: float, task_seconds: dict[str, float], tasks: list[dict]) -> dict:
    """Per-stage figures and the overhead ratio from ``run_pipeline``'s outputs."""
    stages: dict[str, dict] = {}
    for t in sorted(tasks, key=lambda r: r["process_start"]):
        name = t["component"] + (f"[{t['kind']}]" if t.get("kind") else "")
        execute = t["execute_end"] - t["execute_start"]
        stages[name] = {
            "compute_s": round(execute - t["import_s"], 2),
            "import_s": round(t["import_s"], 2),
            "startup_s": round(t["execute_start"] - t["process_start"], 2),
            "teardown_s": round(t["exit"] - t["execute_end"], 2),
            "process_s": round(t["exit"] - t["process_start"], 2),
        }
    span_gap = 0.0  # task spans as the runner saw them, less the task processes' lives
    for name, seconds in task_seconds.items():
        mine = [figures for stage, figures in stages.items() if stage.replace("_", "-").split("[")[0] == name]
        span_gap += seconds - sum(figures["process_s"] for figures in mine)
        if len(mine) == 1:  # the runner sums a loop's iterations under one name
            mine[0]["task_s"] = round(seconds, 2)
    executes = [(t["execute_start"], t["execute_end"]) for t in tasks]
    concurrent = sum(e - s for s, e in executes) - covered_seconds(executes)
    compute = sum(t["execute_end"] - t["execute_start"] - t["import_s"] for t in tasks) - concurrent
    imports = sum(t["import_s"] for t in tasks)
    processes = covered_seconds([(t["process_start"], t["exit"]) for t in tasks])
    return {
        "total_s": round(total, 2),
        "stage_compute_s": round(compute, 2),
        "overhead_ratio": round(overhead_ratio(total, compute), 3),
        "overhead_ratio_imports_as_compute": round(overhead_ratio(total, compute + imports), 3),
        "target": TARGET,
        "meets_target": overhead_ratio(total, compute) <= TARGET,
        "overhead_s": {
            "task_startup_s": round(sum(t["execute_start"] - t["process_start"] for t in tasks), 2),
            "task_imports_s": round(imports, 2),
            "task_teardown_s": round(sum(t["exit"] - t["execute_end"] for t in tasks), 2),
            "outside_tasks_s": round(total - processes, 2),
            # of which inside the runner's task spans (sh, interpreter shutdown, kfp.local's own work per task)
            "task_span_outside_process_s": round(span_gap, 2),
            "concurrent_compute_s": round(concurrent, 2),
        },
        "stages": stages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="generated records (mlco run's default)")
    parser.add_argument("--models", default="lightgbm", help="model kinds, as mlco run --models (default lightgbm)")
    parser.add_argument("--home", type=Path, default=None, help="MLCO_HOME to run in (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mlco-pipeline-bench-") as scratch:
        home = (args.home or Path(scratch)).absolute()
        home.mkdir(parents=True, exist_ok=True)
        total, task_seconds, tasks, stdout = run_pipeline(args.records, args.models, home)
        champion = next((line for line in stdout.splitlines() if line.startswith("champion:")), "")
        result = {"records": args.records, "models": args.models, **summarise(total, task_seconds, tasks)}
        subprocess.run([str(MLCO), "db", "stop"], env=_env(home, None), stdout=subprocess.DEVNULL, check=False)
    for name, s in result["stages"].items():
        _say(
            f"{name:28s} task {s.get('task_s', float('nan')):7.1f} s = start-up {s['startup_s']:5.1f}"
            f" + imports {s['import_s']:5.1f} + compute {s['compute_s']:7.1f} + teardown {s['teardown_s']:4.1f}"
        )
    _say(champion)
    result["champion"] = champion
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
