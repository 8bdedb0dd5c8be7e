"""The serving area's fixtures: one small LightGBM champion for every server the area starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving_support import champion


@pytest.fixture(scope="session")
def champion_dir(tmp_path_factory) -> Path:
    """A small LightGBM champion (``serving_support.champion``), trained once per session."""
    return champion(tmp_path_factory.getbasetemp())
