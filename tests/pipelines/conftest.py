"""The pipelines area's fixtures: the committed YAML of the module's pipeline (its ``COMPILED`` path)."""

from __future__ import annotations

import pytest

from compiled_yaml import read_compiled


@pytest.fixture(scope="module")
def compiled(request) -> tuple[dict, dict]:
    """(pipeline spec, platform spec) of the YAML the test module names in ``COMPILED``."""
    return read_compiled(request.module.COMPILED)


@pytest.fixture(scope="module")
def spec(compiled) -> dict:
    return compiled[0]


@pytest.fixture(scope="module")
def platform(compiled) -> dict:
    return compiled[1]
