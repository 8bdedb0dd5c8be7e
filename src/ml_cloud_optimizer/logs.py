"""Where the core's log lines go: the entry points decide, the core only logs.

Every core module logs to a child of the ``ml_cloud_optimizer`` logger, which has only a
``NullHandler`` until an entry point calls ``configure``: ``mlco`` (``cli.main``) sends the
lines to stderr, a pipeline step (``pipeline_steps``) to stdout, where ``mlco run``'s
progress display and the KFP UI pick them up. Each line is ``[mlco] message``: the local
pipeline's progress display shows only lines with that prefix, and the logger does not
propagate, so a root logger reformatted by the KFP executor leaves the lines as they are.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["FORMAT", "LOGGER", "configure", "configure_once", "quiet_optuna", "reset"]

LOGGER = "ml_cloud_optimizer"
FORMAT = "[mlco] %(message)s"


class _StandardStream(logging.StreamHandler):
    """A handler on ``sys.stdout`` or ``sys.stderr`` as they are when each record is written.

    Looking the stream up at every record keeps the lines where the process's own output goes
    when it is redirected (``contextlib.redirect_stdout``, pytest's capture) after ``configure``.
    """

    def __init__(self, name: str) -> None:
        self._std = name
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return getattr(sys, self._std)

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ and setStream assign it
        pass


def _handler(stream: TextIO | None) -> logging.Handler:
    if stream is None or stream is sys.stderr:
        return _StandardStream("stderr")
    if stream is sys.stdout:
        return _StandardStream("stdout")
    return logging.StreamHandler(stream)


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Logger:
    """Send the ``ml_cloud_optimizer`` logger's records of ``level`` and above to ``stream`` as ``[mlco] ...``.

    ``stream`` None is stderr; ``sys.stdout`` and ``sys.stderr`` are followed if they are
    replaced later. Idempotent: a second call replaces the handler the first one added.
    """
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if getattr(h, "_mlco", False)]:
        logger.removeHandler(old)
    handler = _handler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler._mlco = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def configure_once(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Logger:
    """``configure(level, stream)`` unless an entry point has configured the logger already."""
    logger = logging.getLogger(LOGGER)
    if any(getattr(h, "_mlco", False) for h in logger.handlers):
        return logger
    return configure(level, stream)


def reset() -> None:
    """Undo ``configure``: no handler of ours, level unset, records propagate again (as after import)."""
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if getattr(h, "_mlco", False)]:
        logger.removeHandler(old)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def quiet_optuna() -> None:
    """Optuna's line per trial only when mlco logs DEBUG (``mlco -v``); otherwise its warnings only.

    Optuna's verbosity is global, so the entry point that runs a search sets it, not the search.
    """
    import optuna

    verbose = logging.getLogger(LOGGER).isEnabledFor(logging.DEBUG)
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
