"""`mlco`: parse, call the core, print. Each command family lives in its own module.

A module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
subcommands and sets ``func`` on each; ``func(args)`` returns the exit code.
User mistakes are raised as ``UserError`` (or the core's ``ValueError`` subclasses
listed in ``USER_ERRORS``) and printed as one line, never as a traceback.

The core logs (``logging``); ``main`` sends its lines to stderr as ``[mlco] ...``: INFO and
above by default, WARNING and above with ``-q``, everything with ``-v``. Results go to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ml_cloud_optimizer import __version__, logs
from ml_cloud_optimizer.data.schema import DataValidationError

__all__ = ["UserError", "build_parser", "main"]

COMMAND_MODULES = [
    "ml_cloud_optimizer.cli.data",
    "ml_cloud_optimizer.cli.db",
    "ml_cloud_optimizer.cli.train",
    "ml_cloud_optimizer.cli.pipeline",
    "ml_cloud_optimizer.cli.serve",
    "ml_cloud_optimizer.cli.optimize",
    "ml_cloud_optimizer.cli.dashboard",
]


class UserError(Exception):
    """A mistake in what the user asked for; printed as one line, exit status 2."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, DataValidationError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"mlco {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlco {args.command}: interrupted", file=sys.stderr)
        return 130
