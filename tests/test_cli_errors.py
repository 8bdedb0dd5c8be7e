"""Every `mlco` command refuses a bad argument up front: one stderr line naming it, exit 2, no work done.

Each case runs ``main`` in-process in an empty working directory with ``MLCO_HOME`` in it and
no ``DATABASE_URL``; it must return 2, print exactly one line on stderr that names the argument,
print nothing on stdout, and do no work first: no file in the working directory opened (no input
read, no fleet generated, no model trained, no output written), no process started (the embedded
warehouse is one) and no connection made. Python's audit hooks (PEP 578) report those three
events from the interpreter itself, so the check needs no stand-in for any of our functions and
no clock.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from ml_cloud_optimizer.cli import USER_ERRORS, UserError, build_parser, main
from ml_cloud_optimizer.data.schema import DataValidationError
from ml_cloud_optimizer.errors import UserInputError

MISSING = "missing/trace.csv"
TRACE = "in/trace.csv"  # written by the fixture: a valid long CSV
A_FILE = "in/plain.txt"  # an existing file where a directory is expected

CASES = [
    # generate
    (["generate", "--records", "-5", "--out", "out/f.parquet"], "--records"),
    (["generate", "--records", "0", "--out", "out/f.parquet"], "--records"),
    (["generate", "--records", "abc", "--out", "out/f.parquet"], "--records"),
    (["generate", "--records", "100", "--entities", "0", "--out", "out/f.parquet"], "--entities"),
    (["generate", "--records", "100", "--entities", "500", "--out", "out/f.parquet"], "--entities"),
    (["generate", "--records", "100", "--seed", "-1", "--out", "out/f.parquet"], "--seed"),
    (["generate", "--records", "100", "--out", "out/f.json"], "--out"),
    (["generate", "--records", "100"], "--out"),
    # ingest
    (["ingest", MISSING], "PATH"),
    (["ingest", TRACE, "--format", "excel"], "--format"),
    (["ingest", TRACE, "--map", "ts"], "--map"),
    (["ingest", TRACE, "--epoch", "last tuesday"], "--epoch"),
    (["ingest", TRACE, "--out", "out/f.txt"], "--out"),
    (["ingest", TRACE, "--time-unit", "h"], "--time-unit"),
    (["ingest", TRACE, "--cpu-unit", "ratio"], "--cpu-unit"),
    # db
    (["db"], "DB_COMMAND"),
    (["db", "load", MISSING], "PATH"),
    (["db", "load", TRACE, "--format", "excel"], "--format"),
    (["db", "load", TRACE, "--time-unit", "h"], "--time-unit"),
    (["db", "query", "rightsizing", "--param", "novalue"], "--param"),
    # train
    (["train", "--models", "foo"], "--models"),
    (["train", "--models", ","], "--models"),
    (["train", "--models", "lightgbm,prophet"], "--models"),
    (["train", "--holdout", "1.5"], "--holdout"),
    (["train", "--holdout", "nan"], "--holdout"),
    (["train", "--backtest", "1"], "--backtest"),
    (["train", "--records", "0"], "--records"),
    (["train", "--trials", "-1"], "--trials"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--jobs", "0"], "--jobs"),
    (["train", "--seed", "-3"], "--seed"),
    (["train", "--source", MISSING], "--source"),
    (["train", "--format", "excel"], "--format"),
    (["train", "--out", A_FILE], "--out"),
    (["train", "--cpu-unit", "ratio"], "--cpu-unit"),
    # run, compile, submit, runs
    (["run", "--records", "0"], "--records"),
    (["run", "--models", "foo"], "--models"),
    (["run", "--models", "lightgbm,blend"], "not trained by name"),
    (["train", "--models", "blend"], "not trained by name"),
    (["run", "--epochs", "0"], "--epochs"),
    (["run", "--trials", "-2"], "--trials"),
    (["run", "--holdout", "0"], "--holdout"),
    (["run", "--horizons", "1,6"], "--horizons"),
    (["run", "--source", MISSING], "--source"),
    (["run", "--runner", "podman"], "--runner"),
    (["run", "--pipeline", "batch", "--lookback-hours", "0"], "--lookback-hours"),
    (["run", "--pipeline", "batch", "--target-utilization", "0"], "--target-utilization"),
    (["compile", "--out", "in"], "--out"),
    (["compile", "--pipeline", "nightly"], "--pipeline"),
    (["submit", "--host", "http://localhost:9", "--package", MISSING], "--package"),
    (["submit"], "--host"),
    (["schedule", "--host", "http://localhost:9", "--cron", "0 2 * * *"], "cron"),
    (["schedule", "--host", "http://localhost:9", "--cron", "0 0 2 * * *", "--package", MISSING], "--package"),
    (["runs", "--host", "http://localhost:9", "--limit", "0"], "--limit"),
    # recommend, backtest, monitor, report
    (["recommend", "--hours", "0"], "--hours"),
    (["recommend", "--target-utilization", "1.5"], "--target-utilization"),
    (["recommend", "--granularity", "0"], "--granularity"),
    (["recommend", "--top", "0"], "--top"),
    (["recommend", "--source", MISSING], "--source"),
    (["recommend", "--model", "no/model"], "--model"),
    (["backtest"], "--trace"),
    (["backtest", "--trace", MISSING], "--trace"),
    (["backtest", "--trace", TRACE, "--forecaster", "prophet"], "--forecaster"),
    (["backtest", "--trace", TRACE, "--replay-fraction", "1"], "--replay-fraction"),
    (["backtest", "--trace", TRACE, "--horizon", "0"], "--horizon"),
    (["backtest", "--trace", TRACE, "--coverage", "1.2"], "--coverage"),
    (["backtest", "--trace", TRACE, "--granularity", "-1"], "--granularity"),
    (["backtest", "--trace", TRACE, "--out", A_FILE], "--out"),
    (["monitor", "--recent-hours", "0"], "--recent-hours"),
    (["monitor", "--reference-days", "0"], "--reference-days"),
    (["monitor", "--source", MISSING], "--source"),
    (["monitor", "--model", "no/model"], "--model"),
    (["report", "--run-dir", "no/run"], "--run-dir"),
    # dashboard
    (["dashboard", "--port", "0"], "--port"),
    (["dashboard", "--port", "70000"], "--port"),
    (["dashboard", "--run-dir", "no/run"], "--run-dir"),
    # the command itself
    (["nonsense"], "COMMAND"),
    (["-q", "-v", "train"], "--verbose"),
]


_WATCHED: list[tuple[str, str]] | None = None  # the events seen while a case runs, else None
_ROOT: list[Path] = []


def _audit(event: str, args: tuple) -> None:
    if _WATCHED is None:
        return
    if event in ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec", "socket.connect"):
        _WATCHED.append((event, repr(args[:2])))
    elif event == "open" and isinstance(args[0], (str, Path)) and _ROOT:
        path = Path(args[0]).absolute()
        if path.is_relative_to(_ROOT[0]):
            _WATCHED.append((event, str(path)))


sys.addaudithook(_audit)  # hooks cannot be removed; outside a case it returns at once


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MLCO_RUN_DIR", raising=False)
    (tmp_path / "in").mkdir()
    (tmp_path / TRACE).write_text("ts,entity_id,cpu_util\n1709287200,x,40\n1709287500,x,50\n")
    (tmp_path / A_FILE).write_text("not a directory\n")
    return tmp_path


def _tree(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("argv", "named"), CASES, ids=[" ".join(argv) for argv, _ in CASES])
def test_bad_argument_is_one_line_exit_2_and_no_work(workdir, capsys, argv, named):
    global _WATCHED
    before = _tree(workdir)
    _ROOT[:] = [workdir.resolve()]
    _WATCHED = []
    try:
        code = main(argv)
    finally:
        seen, _WATCHED = _WATCHED, None
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("mlco") and ": error: " in lines[0]
    assert named in lines[0]
    assert "Traceback" not in err and out == ""
    assert _tree(workdir) == before  # nothing generated, trained, started or written
    assert seen == [], f"work started before the argument was checked: {seen}"


def test_generate_negative_records_was_a_traceback(workdir, capsys):
    """The review's case: README promises one line and exit 2; it was 13 lines and exit 1."""
    assert main(["generate", "--records", "-5", "--out", "fleet.parquet"]) == 2
    assert capsys.readouterr().err == "mlco generate: error: --records -5: expected a whole number of at least 1\n"
    assert not (workdir / "fleet.parquet").exists()


def test_core_errors_share_one_typed_class():
    from ml_cloud_optimizer.horizons import parse_horizons
    from ml_cloud_optimizer.models.registry import forecaster_entry
    from ml_cloud_optimizer.pipelines.runners.cron import CronError
    from ml_cloud_optimizer.warehouse.queries import QueryError

    for cls in (DataValidationError, UserError, QueryError, CronError):
        assert issubclass(cls, UserInputError)
    assert issubclass(UserInputError, ValueError) and UserInputError in USER_ERRORS
    with pytest.raises(UserInputError, match="unknown model kind 'prophet'"):
        forecaster_entry("prophet")
    with pytest.raises(UserInputError, match="must include 12"):
        parse_horizons("1,6")


def test_a_core_user_input_error_is_one_line_a_bug_keeps_its_traceback(monkeypatch, capsys):
    parser = build_parser()
    monkeypatch.setattr("ml_cloud_optimizer.cli.build_parser", lambda: parser)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    generate = commands.choices["generate"]

    def refuse(_args):
        raise UserInputError("first line\nsecond line")

    generate.set_defaults(func=refuse)
    assert main(["generate", "--out", "f.parquet"]) == 2
    assert capsys.readouterr().err == "mlco generate: error: first line; second line\n"

    def bug(_args):
        raise KeyError("a bug")

    generate.set_defaults(func=bug)
    with pytest.raises(KeyError):
        main(["generate", "--out", "f.parquet"])
