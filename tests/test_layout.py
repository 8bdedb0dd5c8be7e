"""The import graph tells the architecture (ARCHITECTURE.md): checked on every module's imports.

The core (``src/ml_cloud_optimizer`` less its faces) imports none of the faces nor the cluster libraries;
components import the core and their own helpers, never ``pipelines``; the predictor imports the
core, never the pipeline code. Read with ``ast``, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "src" / "ml_cloud_optimizer"
MAX_LINES = 400

SERVING = "ml_cloud_optimizer.serving"
PIPELINES = "ml_cloud_optimizer.pipelines"
COMPONENTS = "ml_cloud_optimizer.components"
FORBIDDEN = {
    "core": ("kfp", "kserve", "kubernetes", "fastapi", SERVING, PIPELINES, COMPONENTS),
    "components": (PIPELINES, SERVING, "ml_cloud_optimizer.cli"),
    "serving": (PIPELINES, COMPONENTS, "kfp", "ml_cloud_optimizer.cli"),
}
# The faces live beside the core in the same package; the CLI is the core's one face that starts
# the others and imports them inside its commands.
FACES = [CORE / "cli", CORE / "serving", CORE / "pipelines", CORE / "components"]


def modules(area: str) -> list[Path]:
    if area == "core":
        return sorted(p for p in CORE.rglob("*.py") if not any(face in p.parents for face in FACES))
    return sorted((CORE / area).rglob("*.py"))


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("area", sorted(FORBIDDEN))
def test_each_area_imports_only_what_the_architecture_allows(area):
    found = []
    for path in modules(area):
        for name in imported_names(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[area]):
                found.append(f"{path.relative_to(REPO)} imports {name}")
    assert not found, "\n".join(found)


def test_no_module_is_longer_than_the_limit():
    long = {
        str(p.relative_to(REPO)): n for p in CORE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_checks_see_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ml_cloud_optimizer.pipelines import settings\n    import kserve.model\n")
    assert {"ml_cloud_optimizer.pipelines", "kserve.model"} <= imported_names(bad)
