"""The docker runner's own logic, without a daemon: images, outputs, the warehouse socket, CLI errors.

The runner itself runs for real in tests/deploy/test_containers.py (the whole pipeline in the image).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import compiler

from ml_cloud_optimizer.pipelines.runners import containers
from ml_cloud_optimizer.pipelines.workload_pipeline import workload_pipeline


def test_every_executor_runs_the_given_image(tmp_path):
    retargeted = containers.pipeline_in_image(workload_pipeline, "registry.test/mlco:probe")
    package = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(retargeted, package_path=str(package))
    executors = yaml.safe_load_all(package.read_text()).__next__()["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert images == {"registry.test/mlco:probe"}
    assert {"exec-train-sequence", "exec-train-tabular", "exec-register"} <= set(executors)


def test_tasks_without_outputs_are_found_in_loops_too(tmp_path):
    for task, done in [
        ("datagen", True),
        ("register", False),
        ("for-loop-2-iteration-0/train-tabular", True),
        ("for-loop-3-iteration-1/train-sequence", False),
    ]:
        (tmp_path / task).mkdir(parents=True)
        if done:
            (tmp_path / task / "executor_output.json").write_text("{}")
    assert containers.missing_outputs(tmp_path) == ["for-loop-3-iteration-1/train-sequence", "register"]


def test_a_socket_warehouse_is_reached_through_a_mounted_socket():
    url, socket = containers._through_socket_mount("host=/srv/mlco/pgdata port=5433 dbname=mlco user=postgres")
    assert socket == Path("/srv/mlco/pgdata/.s.PGSQL.5433")
    assert "host=/run/mlco-postgres" in url and "port=5433" in url and "dbname=mlco" in url
    tcp = "postgresql://mlco:secret@127.0.0.1:5432/mlco"
    assert containers._through_socket_mount(tcp) == (tcp, None)


def test_no_daemon_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    with pytest.raises(containers.DockerUnavailable, match="no Docker daemon answers"):
        containers.docker_runner("ml-cloud-optimizer:local", home=tmp_path, environment={})


@pytest.mark.parametrize("args", [["--image", "x:y"], ["--runner", "docker", "--image", "mlco-absent:never"]])
def test_run_refuses_in_one_line_before_any_work(tmp_path, args):
    env = {**os.environ, "MLCO_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "ml_cloud_optimizer", "run", "--records", "2000", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("mlco run: error:")
    assert not (tmp_path / "home" / "pipeline_runs").exists() or not any(
        (tmp_path / "home" / "pipeline_runs").iterdir()
    )
