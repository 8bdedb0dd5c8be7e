"""Static checks of docker/Dockerfile: its targets, what they install, and who they run as.

The images are also built and run for real (tests/deploy/test_containers.py, where a Docker daemon
answers). These checks read the file with a real parser (dockerfile-parse), compute the build
context with the Docker SDK's own .dockerignore matcher and scan the file with checkov, so a
broken contract shows in seconds and on machines without Docker. The contract: two targets
from one pinned base, `runtime` (every component and the model server) and `predictor` (the
model server alone); uid 10001; no compilers; torch pinned to an exact build; a CA bundle only
as a BuildKit secret; the CUDA image is the same file with other build args.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

UNPRIVILEGED_UID = "10001"
BUILD_TOOLS = ("build-essential", "gcc", "g++", "clang", "make", "cmake", "python3-dev", "libc6-dev")
SERVER_CMD = ["python", "-m", "ml_cloud_optimizer.serving", "--model_dir", "/mnt/models", "--model_name", "mlco"]
TARGETS = ("runtime", "predictor")

sys.path.insert(0, str(REPO / "docker"))
from requirements import requirement_name, requirements  # noqa: E402


@dataclass
class Stage:
    """One FROM ... block of the Dockerfile."""

    base: str
    name: str | None
    instructions: list[dict] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]


def dockerfile_instructions() -> list[dict]:
    """Every instruction, continuation lines joined, as dockerfile-parse reads it."""
    with DOCKERFILE.open("rb") as dockerfile:
        return DockerfileParser(fileobj=dockerfile).structure


def global_args() -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults: what FROM lines may use."""
    args: dict[str, str] = {}
    for instruction in dockerfile_instructions():
        if instruction["instruction"] == "FROM":
            break
        if instruction["instruction"] == "ARG":
            name, _, default = instruction["value"].partition("=")
            args[name.strip()] = default.strip()
    return args


def parse_stages() -> dict[str, Stage]:
    """The named stages, each with its instructions (comments dropped)."""
    defaults = global_args()
    stages: list[Stage] = []
    for instruction in dockerfile_instructions():
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), words[0])
            stages.append(Stage(base=base, name=words[2] if len(words) == 3 else None))
        elif instruction["instruction"] != "COMMENT" and stages:
            stages[-1].instructions.append(instruction)
    return {s.name: s for s in stages}


STAGES = parse_stages()


def chain(name: str) -> list[Stage]:
    """The stage and the stages it builds on, base first."""
    out = [STAGES[name]]
    while out[0].base in STAGES:
        out.insert(0, STAGES[out[0].base])
    return out


def values(name: str, instruction: str) -> list[str]:
    """An instruction's values along a target's whole chain of stages."""
    return [v for stage in chain(name) for v in stage.values(instruction)]


def exec_form(value: str) -> list[str]:
    """CMD/HEALTHCHECK CMD arguments; JSON (exec) form is required for signals to reach Python."""
    return json.loads(value)


def arg_default(name: str) -> str:
    for instruction in dockerfile_instructions():
        if instruction["instruction"] == "ARG" and instruction["value"].startswith(f"{name}="):
            return instruction["value"].split("=", 1)[1].strip('"')
    raise AssertionError(f"no ARG {name} with a default")


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_stage_starts_from_the_one_pinned_official_base():
    assert global_args()["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    bases = {chain(name)[0].base for name in STAGES}
    assert bases == {"python:3.11-slim-bookworm"}, "wheels are built for exactly the Python that installs them"


@pytest.mark.parametrize("target", TARGETS)
def test_targets_carry_openmp_and_no_build_tools(target):
    runs = " ".join(values(target, "RUN"))
    packages = {
        word
        for group in re.findall(r"apt-get install ([^&;|]*)", runs)
        for word in group.split()
        if not word.startswith("-")
    }
    assert not packages & set(BUILD_TOOLS), f"{target} installs build tools {packages & set(BUILD_TOOLS)}"
    # LightGBM, XGBoost and torch load libgomp; the slim base lacks it (OSError: libgomp.so.1 on start).
    assert "libgomp1" in packages
    assert "apt-get clean" in runs and "rm -rf /var/lib/apt/lists/*" in runs


@pytest.mark.parametrize("target", TARGETS)
def test_targets_run_as_the_unprivileged_user(target):
    users = values(target, "USER")
    assert users and users[-1].split(":")[0] == UNPRIVILEGED_UID, f"{target} runs as {users[-1:]}"
    assert re.search(rf"useradd\b[^&;]*--uid {UNPRIVILEGED_UID}\b", " ".join(values(target, "RUN")))
    final = STAGES[target].instructions
    after_user = final[[i["instruction"] for i in final].index("USER") :]
    assert not any(i["instruction"] == "RUN" for i in after_user), f"{target}: RUN after USER would need root"


@pytest.mark.parametrize("target", TARGETS)
def test_targets_serve_the_model_by_default_and_check_their_own_port(target):
    assert exec_form(values(target, "CMD")[-1]) == SERVER_CMD
    assert set(" ".join(values(target, "EXPOSE")).split()) == {"8080", "8081"}
    health = values(target, "HEALTHCHECK")[-1]
    assert exec_form(health[health.index("CMD") + 3 :].strip())[0] == "python", "the slim base has no curl"
    assert "127.0.0.1:8080/v2/health/" in health
    version = pyproject()["project"]["version"]
    assert f'org.opencontainers.image.version="{version}"' in " ".join(values(target, "LABEL"))


def test_torch_is_pinned_to_one_exact_build_and_the_cuda_image_is_only_build_args():
    resolve = " ".join(STAGES["wheels"].values("RUN"))
    assert '--pin "torch==${TORCH_VERSION}+${TORCH_VARIANT}"' in resolve, "a loose pin pulls a CUDA build of GBs"
    assert arg_default("TORCH_VARIANT") == "cpu"
    assert arg_default("TORCH_INDEX") == "https://download.pytorch.org/whl/cpu"
    # The Makefile's CUDA flavour: the same Dockerfile, a CUDA torch build from its own index.
    makefile = (REPO / "Makefile").read_text()
    variant = re.search(r"TORCH_VARIANT=(cu\d+)", makefile)
    assert variant and f"TORCH_INDEX=https://download.pytorch.org/whl/{variant[1]}" in makefile
    assert not (REPO / "docker" / "Dockerfile.cuda").exists(), "one Dockerfile for every flavour"


def test_the_ca_bundle_is_a_build_secret_never_a_layer():
    for stage in STAGES.values():
        for instruction in ("COPY", "ADD"):
            assert not any(
                "ca" in Path(w).name and w.endswith(".crt") for v in stage.values(instruction) for w in shlex.split(v)
            ), f"{stage.name}: a CA bundle copied into a layer"
    for name in ("wheels", "project"):
        for run in STAGES[name].values("RUN"):
            if "pip wheel" in run:
                assert "--mount=type=secret,id=ca_bundle" in run and "PIP_CERT=/run/secrets/ca_bundle" in run


@pytest.mark.parametrize("target", TARGETS)
def test_targets_install_only_mounted_wheels(target):
    installs = [r for r in STAGES[target].values("RUN") if "pip install" in r]
    assert installs and all("--no-index" in r for r in installs)
    assert all(re.search(r"--mount=type=bind,from=(wheels|project)\b", r) for r in installs), (
        "wheels are mounted for the install only, so they never become a layer"
    )
    assert not any("--from=" in c for c in STAGES[target].values("COPY"))


def test_the_predictor_installs_the_serving_extra_a_strict_subset_of_the_dependencies():
    project = pyproject()["project"]
    serving = requirements(str(REPO / "pyproject.toml"), extra="serving")
    main = {requirement_name(line): line for line in project["dependencies"]}
    for line in serving:
        assert main.get(requirement_name(line)) == line, f"serving extra {line!r} differs from the dependencies"
    assert "torch" not in {requirement_name(line) for line in serving}
    predictor = " ".join(STAGES["predictor"].values("RUN"))
    assert "requirements-serving.txt" in predictor and "requirements.txt " not in predictor


def test_requirements_pin_replaces_and_ignores_an_empty_pin():
    lines = requirements(str(REPO / "pyproject.toml"), pins=["torch==2.13.0+cpu", ""])
    assert "torch==2.13.0+cpu" in lines and not any(line.startswith("torch>") for line in lines)
    assert len(lines) == len(pyproject()["project"]["dependencies"])


def _copied_sources() -> set[str]:
    sources: set[str] = set()
    for stage in STAGES.values():
        for value in stage.values("COPY"):
            words = [w for w in shlex.split(value) if not w.startswith("--")]
            sources.update(w.rstrip("/") for w in words[:-1])
    return {s.replace("${TORCH_WHEELS}", arg_default("TORCH_WHEELS")) for s in sources}


def test_every_project_package_is_copied():
    """A package added to pyproject.toml but not copied would be missing from the image."""
    find = pyproject()["tool"]["setuptools"]["packages"]["find"]
    copied = _copied_sources()
    for pattern in find.get("include", ["*"]):
        top = pattern.split(".")[0].rstrip("*")
        found = [
            REPO / where / top for where in find.get("where", ["."]) if (REPO / where / top / "__init__.py").exists()
        ]
        assert found, f"pyproject.toml includes {pattern!r} but no such package exists"
        relative = found[0].relative_to(REPO).as_posix()
        assert any(relative == c or relative.startswith(c + "/") for c in copied), f"{relative} is not copied"
    for needed in ("pyproject.toml", "README.md", "sql", "docker/requirements.py"):
        assert needed in copied, f"{needed} is not copied"


def test_copied_sources_exist_and_survive_dockerignore():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    context = exclude_paths(str(REPO), patterns)
    for source in _copied_sources():
        assert (REPO / source).exists(), f"COPY {source} names nothing in the repository"
        assert source in context or any(p.startswith(source + "/") for p in context), (
            f".dockerignore leaves {source} out of the build context"
        )
    leaked = {
        p for p in context if fnmatch.fnmatch(p, ".venv*") or p.split("/")[0] in {".git", ".mlco", "tests", "bench"}
    }
    assert not leaked, f"build context would carry {sorted(leaked)[:5]}"


def test_checkov_passes_the_dockerfile(tmp_path):
    if not CHECKOV.exists():
        pytest.fail(f"checkov not found at {CHECKOV}: run tools/install_checkov.sh")
    completed = subprocess.run(
        [str(CHECKOV), "--framework", "dockerfile", "--output", "json", "--skip-download", "--file", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    report = json.loads(completed.stdout)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']} {c['check_name']}" for c in results["failed_checks"]]
    assert not failed, f"checkov failed: {failed}"
    assert report["summary"]["passed"] > 0 and report["summary"]["resource_count"] == 1, "checkov checked nothing"
    unjustified = [
        c["check_id"]
        for c in results["skipped_checks"]
        if len(str(c["check_result"].get("suppress_comment") or "").split()) < 4
    ]
    assert not unjustified, f"suppressions without a justification beside them: {unjustified}"
