"""The compiled pipeline YAML: what only a cluster would act on, checked where it is written down.

``kfp.local`` ignores resources, accelerators, retries and every kfp-kubernetes setting, so
these tests read them from the committed YAML (the PipelineSpec, then ``platforms.kubernetes``),
and a companion test fails when that YAML is stale.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiled_yaml import read_compiled

ROOT = Path(__file__).resolve().parents[1]
COMPILED = ROOT / "pipelines" / "compiled" / "workload_pipeline.yaml"
CPU_IMAGE = "ghcr.io/mlco/ml-cloud-optimizer:0.1.0"
CUDA_IMAGE = "ghcr.io/mlco/ml-cloud-optimizer-cuda:0.1.0"


@pytest.fixture(scope="module")
def spec() -> dict:
    return read_compiled(COMPILED)[0]


@pytest.fixture(scope="module")
def platform() -> dict:
    return read_compiled(COMPILED)[1]


def all_tasks(spec: dict) -> dict[str, dict]:
    """Every task in the root DAG and in every nested DAG (loops, conditions, exit handler), by name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def executor(spec: dict, task: dict) -> dict:
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


def compile_in_subprocess(*args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLCO_IMAGE", "MLCO_CUDA_IMAGE")}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-m", "pipelines.compile", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_train_sequence_asks_for_one_gpu_on_a_gpu_node(spec, platform):
    container = executor(spec, all_tasks(spec)["train-sequence"])
    accelerator = container["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu"
    assert accelerator["resourceCount"] == "1"
    k8s = platform["exec-train-sequence"]
    assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s["tolerations"]
    # Only the sequence models need a GPU node.
    gpu_executors = {name for name, cfg in platform.items() if "tolerations" in cfg or "nodeSelector" in cfg}
    assert gpu_executors == {"exec-train-sequence"}
    assert not any("accelerator" in c["container"].get("resources", {})
                   for name, c in spec["deploymentSpec"]["executors"].items() if name != "exec-train-sequence")


def test_only_the_warehouse_tasks_get_the_database_secret(spec, platform):
    with_secret = {name for name, cfg in platform.items() if cfg.get("secretAsEnv")}
    assert with_secret == {"exec-olap-load", "exec-features"}
    for name in with_secret:
        (entry,) = platform[name]["secretAsEnv"]
        assert entry["secretName"] == "mlco-db"
        assert entry["keyToEnv"] == [{"secretKey": "DATABASE_URL", "envVar": "DATABASE_URL"}]
        assert entry["optional"] is False


def test_caching_is_explicit_per_task(spec):
    tasks = all_tasks(spec)
    cached = {name for name, t in tasks.items() if t.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"datagen", "smote", "train-peak", "train-tabular", "train-sequence", "evaluate"}
    # Tasks with side effects (warehouse, registry, cluster, run record) never come from the cache,
    # and each of them says so rather than leaving it to the default.
    for name in ("olap-load", "features", "register", "deploy", "record-status"):
        assert "cachingOptions" in tasks[name] and not tasks[name]["cachingOptions"].get("enableCache")


def test_retries_where_failures_are_transient(spec):
    tasks = all_tasks(spec)
    retries = {name: t["retryPolicy"]["maxRetryCount"] for name, t in tasks.items() if "retryPolicy" in t}
    assert retries["olap-load"] == 3 and retries["features"] == 3
    assert retries["deploy"] == 2 and retries["register"] == 2
    assert retries["train-tabular"] >= 1 and retries["train-sequence"] >= 1
    assert tasks["olap-load"]["retryPolicy"]["backoffDuration"] == "30s"
    assert "record-status" not in retries  # the exit handler runs once, whatever happened
    assert "datagen" not in retries  # generating or reading a file fails the same way twice


def test_model_loops_fan_out_and_are_collected_by_evaluate(spec):
    loops = {}
    for name, task in spec["components"]["comp-exit-handler-1"]["dag"]["tasks"].items():
        if "parameterIterator" in task:
            inner = spec["components"][task["componentRef"]["name"]]["dag"]["tasks"]
            loops[task["parameterIterator"]["items"]["inputParameter"]] = (name, set(inner))
    assert loops == {
        "pipelinechannel--tabular_models": ("for-loop-2", {"train-tabular"}),
        "pipelinechannel--sequence_models": ("for-loop-3", {"train-sequence"}),
    }
    evaluate = all_tasks(spec)["evaluate"]
    inputs = evaluate["inputs"]["artifacts"]
    assert inputs["tabular_models"]["taskOutputArtifact"]["producerTask"] == "for-loop-2"
    assert inputs["sequence_models"]["taskOutputArtifact"]["producerTask"] == "for-loop-3"
    declared = spec["components"]["comp-evaluate"]["inputDefinitions"]["artifacts"]
    assert declared["tabular_models"]["isArtifactList"] and declared["sequence_models"]["isArtifactList"]
    outputs = spec["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["peak_metrics"]["artifactType"]["schemaTitle"] == "system.ClassificationMetrics"
    assert outputs["leaderboard"]["artifactType"]["schemaTitle"] == "system.Markdown"


def test_images_are_the_projects_and_pinned(spec):
    tasks = all_tasks(spec)
    images = {name: executor(spec, t)["image"] for name, t in tasks.items() if "executorLabel" in
              spec["components"][t["componentRef"]["name"]]}
    assert images.pop("train-sequence") == CUDA_IMAGE
    assert set(images.values()) == {CPU_IMAGE}
    assert len(images) == 10  # every other component, exit handler included
    for container in (e["container"] for e in spec["deploymentSpec"]["executors"].values()):
        # The image already holds kfp and the project: nothing is pip-installed at run time.
        assert not any("pip install" in part for part in container["command"])


def test_tasks_run_as_the_images_non_root_user(platform):
    for name, cfg in platform.items():
        assert cfg["securityContext"] == {"runAsUser": "10001", "runAsNonRoot": True}, name


def test_exit_handler_records_every_outcome(spec):
    root = spec["root"]["dag"]["tasks"]
    record = root["record-status"]
    assert record["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert record["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"] == "exit-handler-1"
    assert set(root) == {"exit-handler-1", "record-status"}


def test_deploy_runs_only_when_enabled(spec):
    condition = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]["condition-4"]
    assert condition["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--deploy'] == true"
    assert set(spec["components"]["comp-condition-4"]["dag"]["tasks"]) == {"deploy"}


def test_pipeline_parameters_cover_the_run_settings(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    expected = {
        "source": "STRING", "records": "NUMBER_INTEGER", "horizons": "LIST", "tabular_models": "LIST",
        "sequence_models": "LIST", "epochs": "NUMBER_INTEGER", "trials": "NUMBER_INTEGER", "deploy": "BOOLEAN",
        "namespace": "STRING", "isvc_name": "STRING",
    }
    assert {k: params[k]["parameterType"] for k in expected} == expected
    assert params["isvc_name"]["defaultValue"] == "workload-forecaster"
    assert params["tabular_models"]["defaultValue"] == ["lightgbm", "xgboost", "catboost"]
    assert params["sequence_models"]["defaultValue"] == ["lstm", "gru"]


def test_committed_yaml_is_current():
    result = compile_in_subprocess("--check")
    assert result.returncode == 0, f"pipelines/compiled is stale; run `mlco compile`:\n{result.stderr}"


def test_check_notices_a_stale_yaml(tmp_path):
    stale = tmp_path / "pipeline.yaml"
    stale.write_text(COMPILED.read_text().replace("maxRetryCount: 3", "maxRetryCount: 4", 1))
    result = compile_in_subprocess("--check", "--out", str(stale))
    assert result.returncode == 1
    assert "stale" in result.stderr


def test_image_setting_reaches_the_compiled_yaml(tmp_path):
    out = tmp_path / "pipeline.yaml"
    result = compile_in_subprocess("--out", str(out), MLCO_IMAGE="registry.example/mlco:9.9",
                                   MLCO_CUDA_IMAGE="registry.example/mlco-cuda:9.9")
    assert result.returncode == 0, result.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/mlco:9.9", "registry.example/mlco-cuda:9.9"}
