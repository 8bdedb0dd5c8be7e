"""The serving area's fixtures: one small LightGBM champion for every server the area starts, and a client.

Each module starts its own ``server`` (flags differ); ``http`` talks to whichever the module has.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from serving_support import champion


@pytest.fixture(scope="session")
def champion_dir(tmp_path_factory) -> Path:
    """A small LightGBM champion (``serving_support.champion``), trained once per session."""
    return champion(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def http(server):
    """An HTTP client for the module's ``server``, generous with slow answers on a loaded machine."""
    with httpx.Client(base_url=server.http_url, timeout=60) as client:
        yield client
