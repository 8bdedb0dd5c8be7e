"""The import graph tells the architecture (ARCHITECTURE.md): checked on every module's imports.

The core (``src/ml_cloud_optimizer``) imports none of the faces nor the cluster libraries;
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

FORBIDDEN = {
    "core": ("kfp", "kserve", "kubernetes", "fastapi", "serving", "pipelines", "components"),
    "components": ("pipelines", "serving", "ml_cloud_optimizer.cli"),
    "serving": ("pipelines", "components", "kfp", "ml_cloud_optimizer.cli"),
}
# The CLI is the core's one face that starts the others; it imports them inside its commands.
FACES_OF_THE_CLI = CORE / "cli"


def modules(area: str) -> list[Path]:
    root = {"core": CORE, "components": REPO / "components", "serving": REPO / "serving"}[area]
    return sorted(p for p in root.rglob("*.py") if not (area == "core" and FACES_OF_THE_CLI in p.parents))


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
    roots = [CORE, REPO / "serving", REPO / "pipelines", REPO / "components"]
    long = {
        str(p.relative_to(REPO)): n
        for root in roots
        for p in root.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_checks_see_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from pipelines import settings\n    import kserve.model\n")
    assert {"pipelines", "kserve.model"} <= imported_names(bad)
