"""Logging: the core logs under ``ml_cloud_optimizer``; ``mlco`` and the pipeline steps choose where it goes."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from ml_cloud_optimizer import logs
from ml_cloud_optimizer.cli import build_parser

pytestmark = pytest.mark.usefixtures("restore_logging")


def _ours(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if getattr(h, "_mlco", False)]


def test_the_library_alone_prints_nothing(restore_logging):
    logs.reset()
    assert any(isinstance(h, logging.NullHandler) for h in restore_logging.handlers)
    assert not _ours(restore_logging) and restore_logging.propagate


def test_configure_is_idempotent_and_prefixes_every_line(restore_logging):
    first, second = io.StringIO(), io.StringIO()
    logs.configure(stream=first)
    logs.configure(stream=second)
    logging.getLogger("ml_cloud_optimizer.pipeline_steps.split").info("split at %s", "noon")
    logging.getLogger("ml_cloud_optimizer.somewhere").debug("not at INFO")
    assert len(_ours(restore_logging)) == 1 and not restore_logging.propagate
    assert first.getvalue() == "" and second.getvalue() == "[mlco] split at noon\n"


def test_configure_once_leaves_the_entry_points_choice(restore_logging):
    chosen = io.StringIO()
    logs.configure(logging.WARNING, chosen)
    logs.configure_once(stream=io.StringIO())
    logging.getLogger("ml_cloud_optimizer.x").warning("kept")
    assert chosen.getvalue() == "[mlco] kept\n" and restore_logging.level == logging.WARNING


def test_standard_streams_are_followed_when_replaced(capsys):
    logs.configure(stream=sys.stdout)  # before pytest's capture swaps sys.stdout for this test
    logging.getLogger("ml_cloud_optimizer.x").info("to stdout")
    logs.configure(stream=sys.stderr)
    logging.getLogger("ml_cloud_optimizer.x").info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == "[mlco] to stdout\n" and captured.err == "[mlco] to stderr\n"


def test_importing_the_steps_sends_their_lines_to_stdout(restore_logging):
    logs.reset()
    import importlib

    import ml_cloud_optimizer.pipeline_steps as steps

    importlib.reload(steps)
    handler = _ours(restore_logging)[0]
    assert handler.stream is sys.stdout and handler.formatter._fmt == logs.FORMAT and not restore_logging.propagate


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ([], logging.INFO),
        (["-q"], logging.WARNING),
        (["--quiet"], logging.WARNING),
        (["-v"], logging.DEBUG),
        (["--verbose"], logging.DEBUG),
    ],
)
def test_cli_flags_choose_the_level(flags, level):
    assert build_parser().parse_args([*flags, "train"]).log_level == level


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-q", "-v", "train"])
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.usefixtures("restore_logging")
def test_mlco_quiet_keeps_warnings_only(capsys):
    from ml_cloud_optimizer.cli import main

    assert main(["-q", "train", "--models", "prophet", "--no-tracking"]) == 2
    logging.getLogger("ml_cloud_optimizer.x").info("progress")
    logging.getLogger("ml_cloud_optimizer.x").warning("careful")
    err = capsys.readouterr().err
    assert "unknown model kind" in err and "progress" not in err and "[mlco] careful" in err


@pytest.mark.usefixtures("restore_logging")
def test_optuna_speaks_per_trial_only_when_verbose():
    optuna = pytest.importorskip("optuna")
    logs.configure(logging.INFO, io.StringIO())
    logs.quiet_optuna()
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING
    logs.configure(logging.DEBUG, io.StringIO())
    logs.quiet_optuna()
    assert optuna.logging.get_verbosity() == optuna.logging.INFO
    optuna.logging.set_verbosity(optuna.logging.WARNING)
