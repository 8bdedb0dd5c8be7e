"""The ``streamlit run`` command line for the dashboard, shared by ``mlco dashboard`` and its test.

Streamlit is configured on the command line rather than in a config file so that the
dashboard behaves the same from any working directory: headless (it prints its URL rather
than opening a browser), no usage statistics sent, no file watcher (nothing to reload in an
installed package) and bound to the address asked for.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["APP_PATH", "streamlit_command"]

APP_PATH = Path(__file__).with_name("app.py")


def streamlit_command(
    run_dir: str | Path | None = None, *, port: int = 8501, address: str = "127.0.0.1", python: str | None = None
) -> list[str]:
    """Arguments that serve the dashboard of ``run_dir`` on ``address:port``.

    Args:
        run_dir: the run to show; None lets the app pick ``data.default_run_dir()``.
        port: TCP port to listen on.
        address: interface to bind; ``0.0.0.0`` serves other machines (in a container).
        python: interpreter to run Streamlit with (default: this one).

    Example:
        >>> streamlit_command("runs/1", port=8600)[:4]  # doctest: +SKIP
        ['/usr/bin/python3', '-m', 'streamlit', 'run']
    """
    command = [
        python or sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    if run_dir is not None:
        command += ["--", "--run-dir", str(Path(run_dir).absolute())]
    return command
