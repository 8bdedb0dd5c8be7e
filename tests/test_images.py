"""Static checks of the container images: docker/Dockerfile (CPU) and docker/Dockerfile.cuda.

No Docker engine runs here, so the Dockerfiles are read with a real parser (dockerfile-parse),
the build context is computed with the Docker SDK's own .dockerignore matcher, and checkov
scans both files. What is checked is the contract the manifests and the pipeline rely on:
the image runs the model server by default, as uid 10001, from a final stage without
compilers, with every package directory of the project in it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[1]
CPU_DOCKERFILE = REPO / "docker" / "Dockerfile"
CUDA_DOCKERFILE = REPO / "docker" / "Dockerfile.cuda"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

UNPRIVILEGED_UID = "10001"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "clang", "make", "cmake", "python3-dev", "libc6-dev")
SERVER_CMD = ["python", "-m", "serving", "--model_dir", "/mnt/models", "--model_name", "mlco"]


@dataclass
class Stage:
    """One FROM ... block of a Dockerfile."""

    base: str
    name: str | None
    instructions: list[dict] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]


def dockerfile_instructions(path: Path) -> list[dict]:
    """Every instruction of ``path``, continuation lines joined, as dockerfile-parse reads it."""
    with path.open("rb") as dockerfile:
        return DockerfileParser(fileobj=dockerfile).structure


def parse_stages(path: Path) -> list[Stage]:
    """The stages of ``path`` in order, each with its instructions (comments dropped)."""
    stages: list[Stage] = []
    for instruction in dockerfile_instructions(path):
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif instruction["instruction"] != "COMMENT" and stages:
            stages[-1].instructions.append(instruction)
    return stages


def external_base(stages: list[Stage], stage: Stage) -> str:
    """The registry image a stage starts from, following ``FROM <earlier stage>`` links."""
    by_name = {s.name: s for s in stages if s.name}
    while stage.base in by_name:
        stage = by_name[stage.base]
    return stage.base


def exec_form(value: str) -> list[str]:
    """CMD/HEALTHCHECK CMD arguments; JSON (exec) form is required for signals to reach Python."""
    return json.loads(value)


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module", params=["cpu", "cuda"])
def image(request) -> tuple[str, list[Stage]]:
    path = CPU_DOCKERFILE if request.param == "cpu" else CUDA_DOCKERFILE
    return request.param, parse_stages(path)


@pytest.fixture(scope="module")
def cpu_stages() -> list[Stage]:
    return parse_stages(CPU_DOCKERFILE)


@pytest.fixture(scope="module")
def cuda_stages() -> list[Stage]:
    return parse_stages(CUDA_DOCKERFILE)


def test_images_are_multi_stage_on_one_pinned_base(image):
    kind, stages = image
    builder, final = stages[-2], stages[-1]
    assert len(stages) >= 2, f"{kind}: a builder stage and a final stage are expected"
    assert external_base(stages, builder) == external_base(stages, final), (
        f"{kind}: builder and final stage must share one base, or what the builder made may not run"
    )
    for stage in stages:
        base = external_base(stages, stage)
        last = base.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        assert tag and tag != "latest", f"{kind}: base image {base!r} is not pinned to a version tag"


def test_final_stage_has_no_build_tools(image):
    kind, stages = image
    final_runs = " ".join(stages[-1].values("RUN"))
    installed = re.findall(r"apt-get install ([^&;|]*)", final_runs)
    packages = {word for group in installed for word in group.split() if not word.startswith("-")}
    assert not packages & set(BUILD_TOOLS), f"{kind}: final stage installs build tools {packages & set(BUILD_TOOLS)}"
    builder_runs = " ".join(stages[-2].values("RUN"))
    assert "build-essential" in builder_runs, f"{kind}: compilers belong in the builder stage"


def test_final_stage_runs_as_unprivileged_user(image):
    kind, stages = image
    final = stages[-1]
    users = final.values("USER")
    assert users, f"{kind}: final stage sets no USER, so it runs as root"
    assert users[-1].split(":")[0] == UNPRIVILEGED_UID, f"{kind}: runs as {users[-1]!r}, not uid {UNPRIVILEGED_UID}"
    runs = " ".join(final.values("RUN"))
    assert re.search(rf"useradd\b[^&;]*--uid {UNPRIVILEGED_UID}\b", runs), f"{kind}: uid {UNPRIVILEGED_UID} is never created"
    after_user = final.instructions[[i["instruction"] for i in final.instructions].index("USER"):]
    assert not any(i["instruction"] == "RUN" for i in after_user), f"{kind}: RUN after USER would need root"


def test_images_have_a_health_check(image):
    kind, stages = image
    checks = stages[-1].values("HEALTHCHECK")
    assert checks and checks[-1].split()[0:1] != ["NONE"], f"{kind}: no HEALTHCHECK in the final stage"
    command = exec_form(checks[-1][checks[-1].index("CMD") + len("CMD"):].strip())
    assert command[0] == "python", f"{kind}: the slim images carry no curl; check with Python"


def test_cpu_image_serves_the_model_by_default(cpu_stages):
    final = cpu_stages[-1]
    assert external_base(cpu_stages, final).startswith("python:3.11-slim")
    assert exec_form(final.values("CMD")[-1]) == SERVER_CMD
    assert set(" ".join(final.values("EXPOSE")).split()) == {"8080", "8081"}
    env = " ".join(final.values("ENV"))
    assert re.search(r"\bMLCO_SQL_DIR=/app/sql\b", env)
    health = final.values("HEALTHCHECK")[-1]
    assert "127.0.0.1:8080/v2/health/live" in health, "the health check must hit the server's own port"


def test_cpu_image_installs_wheels_built_with_cpu_torch(cpu_stages):
    builder, final = cpu_stages[-2], cpu_stages[-1]
    build = " ".join(builder.values("RUN"))
    assert "pip wheel" in build and "https://download.pytorch.org/whl/cpu" in build
    assert re.search(r'"torch==\$\{TORCH_VERSION\}\+cpu"', build), "torch must be pinned to its +cpu build"
    install = " ".join(final.values("RUN"))
    assert "--no-index" in install and f"from={builder.name}" in install, (
        "the final stage installs only the builder's wheels, from a mount that leaves no layer"
    )


def test_cuda_image_matches_torch_build_to_cuda_runtime(cuda_stages):
    base = external_base(cuda_stages, cuda_stages[-1])
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-ubuntu[\d.]+", base)
    assert match, f"{base!r} is not an nvidia/cuda runtime image"
    torch_cuda = next(
        i["value"].split("=", 1)[1] for i in dockerfile_instructions(CUDA_DOCKERFILE)
        if i["instruction"] == "ARG" and i["value"].startswith("TORCH_CUDA=")
    )
    assert torch_cuda == f"cu{match[1]}{match[2]}", f"torch {torch_cuda} on CUDA {match[1]}.{match[2]}"
    build = " ".join(cuda_stages[-2].values("RUN"))
    assert "https://download.pytorch.org/whl/${TORCH_CUDA}" in build and "+${TORCH_CUDA}" in build


def test_version_labels_match_the_project(image):
    kind, stages = image
    labels = " ".join(stages[-1].values("LABEL"))
    assert f'org.opencontainers.image.version="{project_version()}"' in labels, f"{kind}: stale version label"


def _copied_sources(stages: list[Stage]) -> set[str]:
    sources: set[str] = set()
    for stage in stages:
        for value in stage.values("COPY"):
            words = [w for w in shlex.split(value) if not w.startswith("--")]
            if "--from=" not in value:
                sources.update(w.rstrip("/") for w in words[:-1])
    return sources


def test_every_project_package_is_copied(image):
    """A package added to pyproject.toml but not copied would be missing from the image."""
    kind, stages = image
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = _copied_sources(stages)
    for pattern in find.get("include", ["*"]):
        top = pattern.split(".")[0].rstrip("*")
        roots = [REPO / where / top for where in find.get("where", ["."])]
        found = [r for r in roots if (r / "__init__.py").exists()]
        assert found, f"pyproject.toml includes {pattern!r} but no such package exists"
        relative = found[0].relative_to(REPO).as_posix()
        assert any(relative == c or relative.startswith(c + "/") for c in copied), f"{kind}: {relative} is not copied"
    for needed in ("pyproject.toml", "README.md", "sql"):
        assert needed in copied, f"{kind}: {needed} is not copied"


def test_copied_sources_exist_and_survive_dockerignore(image):
    kind, stages = image
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    context = exclude_paths(str(REPO), patterns)
    for source in _copied_sources(stages):
        assert (REPO / source).exists(), f"{kind}: COPY {source} names nothing in the repository"
        assert source in context, f"{kind}: .dockerignore leaves {source} out of the build context"
    leaked = {p for p in context if fnmatch.fnmatch(p, ".venv*") or p.split("/")[0] in {".git", ".mlco", "tests", "bench"}}
    assert not leaked, f"build context would carry {sorted(leaked)[:5]}"


def test_checkov_passes_the_dockerfiles(tmp_path):
    if not CHECKOV.exists():
        pytest.fail(f"checkov not found at {CHECKOV}: run tools/install_checkov.sh")
    completed = subprocess.run(
        [str(CHECKOV), "--framework", "dockerfile", "--output", "json", "--skip-download",
         "--file", str(CPU_DOCKERFILE), "--file", str(CUDA_DOCKERFILE)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    report = json.loads(completed.stdout)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']} {c['check_name']}" for c in results["failed_checks"]]
    assert not failed, f"checkov failed: {failed}"
    assert report["summary"]["passed"] > 0 and report["summary"]["resource_count"] == 2, "checkov checked nothing"
    unjustified = [c["check_id"] for c in results["skipped_checks"]
                   if len(str(c["check_result"].get("suppress_comment") or "").split()) < 4]
    assert not unjustified, f"suppressions without a justification beside them: {unjustified}"
