"""`mlco` commands: placeholder until its owner fills it in."""


def register(subparsers) -> None:
    """Add this module's subcommands to ``subparsers``."""
