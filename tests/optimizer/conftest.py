"""Fixtures of the optimizer tests: every command's output under the test's own MLCO_HOME."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _runs_in_tmp(monkeypatch, tmp_path):
    """Keep every command's output under the test's own MLCO_HOME."""
    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
