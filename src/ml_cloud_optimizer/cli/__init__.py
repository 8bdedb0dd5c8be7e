"""`mlco`: parse, call the core, print. Each command family lives in its own module.

A module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
subcommands and sets ``func`` on each; ``func(args)`` returns the exit code. Each ``func``
checks its arguments first (``cli.checks``), before it generates, reads or trains anything.

A user's mistake is one line on stderr, ``mlco CMD: error: ...``, and exit status 2, never a
traceback: argparse's own refusals (an unknown flag, a bad choice, ``--records abc``) as well
as ``UserError`` and the core's ``errors.UserInputError`` (``USER_ERRORS``). Any other
exception is a bug and keeps its traceback.

The core logs (``logging``); ``main`` sends its lines to stderr as ``[mlco] ...``: INFO and
above by default, WARNING and above with ``-q``, everything with ``-v``. Results go to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn

from ml_cloud_optimizer import __version__, logs
from ml_cloud_optimizer.errors import UserInputError

__all__ = ["UserError", "build_parser", "main"]

COMMAND_MODULES = [
    "ml_cloud_optimizer.cli.data",
    "ml_cloud_optimizer.cli.db",
    "ml_cloud_optimizer.cli.train",
    "ml_cloud_optimizer.cli.pipeline",
    "ml_cloud_optimizer.cli.serve",
    "ml_cloud_optimizer.cli.optimize",
    "ml_cloud_optimizer.cli.dashboard",
    "ml_cloud_optimizer.cli.kube",
]


class UserError(UserInputError):
    """A mistake in what the user asked for, found by the CLI; printed as one line, exit status 2."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserInputError, FileNotFoundError)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose refusals are one line (no usage block), like every other mistake.

    Subparsers are made of the same class, so ``mlco db load --format x`` says
    ``mlco db load: error: argument --format: invalid choice: ...`` and exits 2.
    """

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        self.exit(2)


def _one_line(message: object) -> str:
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def _log_level(argv: list[str]) -> int:
    """The level ``-q``/``-v`` ask for, read before parsing so that a refused command still honours it."""
    level = logging.INFO
    for token in argv:
        if not token.startswith("-"):
            break
        if token in ("-q", "--quiet"):
            level = logging.WARNING
        elif token in ("-v", "--verbose"):
            level = logging.DEBUG
    return level


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlco",
        description="ML Cloud Workload Optimizer: forecast cloud workload, detect peaks, recommend capacity.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    chatter = parser.add_mutually_exclusive_group()
    chatter.add_argument(
        "-q",
        "--quiet",
        dest="log_level",
        action="store_const",
        const=logging.WARNING,
        default=logging.INFO,
        help="progress lines off: warnings and errors only",
    )
    chatter.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const=logging.DEBUG,
        help="debug lines too (and Optuna's line per trial)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logs.configure(_log_level(argv), sys.stderr)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code == 2:  # refused; _Parser.error printed the line
            return 2
        raise  # --help, --version
    logs.configure(args.log_level, sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"mlco {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlco {args.command}: interrupted", file=sys.stderr)
        return 130
