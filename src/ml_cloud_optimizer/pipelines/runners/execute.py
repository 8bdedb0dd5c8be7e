"""The kfp.local plumbing every local run shares: the warehouse, the MLflow store, the logs and progress.

Every task runs as a subprocess of the current Python environment (``SubprocessRunner(use_venv=False)``)
or, given an image, in a container of it (see ``containers``). What the cluster gets from
Kubernetes the local run gets from here: ``DATABASE_URL`` through the inherited environment (the
embedded PostgreSQL unless one is set), an MLflow store under ``$MLCO_HOME``, and the task
outputs under ``$MLCO_HOME/pipeline_runs``.

kfp.local writes every task's logs to stdout; they go to a log file instead, and the caller's
progress stream gets one line per task start and end, plus the steps' own ``[mlco]`` lines.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ml_cloud_optimizer.pipelines.runners import containers
from ml_cloud_optimizer.pipelines.runners.empty_loops import publishing_empty_loops

__all__ = [
    "LocalExecution",
    "LocalRunError",
    "environment",
    "execute_locally",
    "executor_output",
    "local_home",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_STEP_LINE = "[mlco] "


class LocalRunError(RuntimeError):
    """The local pipeline failed; the message names the task and the log file."""


@dataclass
class LocalExecution:
    """Where a finished local pipeline run left its outputs."""

    run_dir: Path
    log_path: Path
    seconds: float
    task_seconds: dict[str, float]


def execute_locally(
    pipeline_func,
    arguments: dict,
    *,
    pipeline_name: str,
    home: str | Path | None = None,
    log_prefix: str = "run",
    progress: TextIO | None = None,
    env: dict[str, str] | None = None,
    image: str | None = None,
) -> LocalExecution:
    """Run any mlco pipeline through kfp.local with the warehouse, MLflow store and logs under ``home``.

    ``image`` set runs every task in that container image; otherwise tasks are subprocesses.

    Raises:
        LocalRunError: a task failed, or the run left no run directory.
        containers.DockerUnavailable: ``image`` was given but cannot be run here.
    """
    from ml_cloud_optimizer.pipeline_steps.environment import local_warehouse

    home = local_home(home)
    pipeline_root = home / "pipeline_runs"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    log_path = home / "logs" / f"{log_prefix}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    before = set(pipeline_root.iterdir())
    started = time.perf_counter()
    tee = _ProgressTee(log_path, progress or sys.stderr)
    with local_warehouse(home) as database_url:
        task_env = {"MLCO_HOME": str(home), "DATABASE_URL": database_url, **(env or {})}
        with environment(**task_env):
            runner = None
            if image:
                runner, pipeline_func = _in_containers(pipeline_func, arguments, image, home, task_env)
            _execute(pipeline_func, arguments, pipeline_root, tee, runner)
    seconds = time.perf_counter() - started

    if tee.failed:
        tail = tee.failure_tail(tee.failed[0])
        raise LocalRunError(f"task {tee.failed[0]!r} failed; its log is in {log_path}" + (f"\n{tail}" if tail else ""))
    new = [p for p in pipeline_root.iterdir() if p not in before and p.is_dir() and p.name.startswith(pipeline_name)]
    if not new:
        raise LocalRunError(f"the pipeline left no run directory under {pipeline_root}; see {log_path}")
    run_dir = max(new, key=lambda p: p.stat().st_mtime)
    if image and (silent := containers.missing_outputs(run_dir)):
        raise LocalRunError(
            f"task(s) {', '.join(silent)} exited without writing their outputs (a container that"
            f" died before kfp.local read its exit code); see {log_path}"
        )
    return LocalExecution(run_dir=run_dir, log_path=log_path, seconds=seconds, task_seconds=dict(tee.task_seconds))


def local_home(home: str | Path | None = None) -> Path:
    """mlco's local state directory: ``home``, else ``$MLCO_HOME``, else ``./.mlco``."""
    return Path(home or os.environ.get("MLCO_HOME") or ".mlco").absolute()


def _in_containers(pipeline_func, arguments: dict, image: str, home: Path, task_env: dict[str, str]):
    """The DockerRunner and the pipeline with every task in ``image``; host paths among the arguments are mounted."""
    inputs = [Path(v) for v in arguments.values() if isinstance(v, str) and os.path.isabs(v) and os.path.exists(v)]
    runner = containers.docker_runner(image, home=home, environment=task_env, read_only_paths=inputs)
    return runner, containers.pipeline_in_image(pipeline_func, image)


def _execute(pipeline_func, arguments: dict, pipeline_root: Path, tee: _ProgressTee, runner=None) -> None:
    """``pipeline_func(**arguments)`` through kfp.local (subprocesses unless ``runner``), its stdout into ``tee``."""
    from kfp import local

    # kfp.local swaps builtins.print and the root logger's handlers around each task; two loop
    # iterations doing so at once can leave a swap in place after the run, so restore both.
    real_print = builtins.print
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with contextlib.redirect_stdout(tee), warnings.catch_warnings(), publishing_empty_loops():
            # The project's image name has no "python" in it; kfp.local warns about that for every task.
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            # Resources and accelerators are the cluster's business (see the compiled YAML).
            warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
            local.init(
                runner=runner or local.SubprocessRunner(use_venv=False),
                pipeline_root=str(pipeline_root),
                raise_on_error=False,
            )
            pipeline_func(**arguments)
    finally:
        builtins.print = real_print
        root.handlers[:] = handlers
        root.setLevel(level)
        tee.close()


class _ProgressTee:
    """A stdout stand-in: everything to the log file; task starts/ends and step lines to ``progress``."""

    def __init__(self, log_path: Path, progress: TextIO) -> None:
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (open for the tee's lifetime; close() closes it)
        self._progress = progress
        self._lock = threading.Lock()
        self._pending = threading.local()
        self._started: dict[int, float] = {}
        self._lines: dict[str, list[str]] = {}
        self._current: dict[int, str] = {}
        self.task_seconds: dict[str, float] = {}
        self.failed: list[str] = []

    def write(self, text: str) -> int:
        if self._log.closed:  # a logging handler created during the run may still hold this stream
            stdout = sys.__stdout__
            return stdout.write(text) if stdout is not None else len(text)
        buffered = getattr(self._pending, "text", "") + text
        *lines, self._pending.text = buffered.split("\n")
        for line in lines:
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if not self._log.closed:
                self._log.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        with self._lock:
            self._log.close()

    def failure_tail(self, task: str, lines: int = 15) -> str:
        return "\n".join(self._lines.get(task, [])[-lines:])

    def _line(self, line: str) -> None:
        with self._lock:
            self._log.write(line + "\n")
            thread = threading.get_ident()
            if match := _STARTED.search(line):
                task = match.group(1)
                # Loop iterations share a task name but each runs on its own thread.
                self._started[thread] = time.perf_counter()
                self._current[thread] = task
                self._emit(f"  ... {task}")
            elif match := _FINISHED.search(line):
                task, status = match.groups()
                took = time.perf_counter() - self._started.pop(thread, time.perf_counter())
                self.task_seconds[task] = self.task_seconds.get(task, 0.0) + took
                if status != "SUCCESS":
                    self.failed.append(task)
                self._emit(f"  {'ok ' if status == 'SUCCESS' else 'FAILED'} {task} ({took:.1f} s)")
            else:
                task = self._current.get(thread)
                if task:
                    self._lines.setdefault(task, []).append(line.strip())
                stripped = line.strip()
                if stripped.startswith(_STEP_LINE):
                    self._emit(f"      {stripped[len(_STEP_LINE) :]}")

    def _emit(self, text: str) -> None:
        print(text, file=self._progress, flush=True)


@contextlib.contextmanager
def environment(**values: str | None):
    """Set environment variables (None unsets one) for the duration of a ``with`` block."""
    saved = {k: os.environ.get(k) for k in values}
    _apply(values)
    try:
        yield
    finally:
        _apply(saved)


def _apply(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def executor_output(task_dir: Path) -> dict:
    """The outputs kfp.local recorded for one task."""
    return json.loads((task_dir / "executor_output.json").read_text())
