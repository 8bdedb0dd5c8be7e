"""Package names that load their submodule on first use (PEP 562), for packages the model server imports.

The lean predictor image lacks pyarrow, SciPy's signal module, psycopg2 and torch; a package
``__init__`` that imported every submodule would pull them in with the first ``import``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` serving each name of ``homes`` from ``package.<home>``.

    Usage in a package's ``__init__``: ``__getattr__, __dir__ = lazy_exports(__name__, _HOMES)``.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes})

    return __getattr__, __dir__
