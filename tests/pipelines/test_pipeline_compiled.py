"""The compiled pipeline YAML: what only a cluster would act on, checked where it is written down.

``kfp.local`` ignores resources, accelerators, retries and every kfp-kubernetes setting, so
these tests read them from the committed YAML (the PipelineSpec, then ``platforms.kubernetes``),
and a companion test fails when that YAML is stale.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiled_yaml import BATCH_YAML, WORKLOAD_YAML, read_compiled

ROOT = Path(__file__).resolve().parents[2]
COMPILED = WORKLOAD_YAML
CPU_IMAGE = "ghcr.io/mlco/ml-cloud-optimizer:0.1.0"
CUDA_IMAGE = "ghcr.io/mlco/ml-cloud-optimizer-cuda:0.1.0"
BATCH_COMPILED = BATCH_YAML
OVERLAYS = {"dev": ROOT / "manifests" / "overlays" / "dev", "prod": ROOT / "manifests" / "overlays" / "prod"}
# Settings read from the environment at compile time; the committed YAML is compiled without them.
COMPILE_ENV = ("MLCO_IMAGE", "MLCO_CUDA_IMAGE", "MLCO_GPU_NODE_SELECTOR")


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
    env = {k: v for k, v in os.environ.items() if k not in COMPILE_ENV}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-m", "ml_cloud_optimizer.pipelines.runners.compile", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_train_sequence_asks_for_one_gpu_and_tolerates_the_gpu_taint(spec, platform):
    container = executor(spec, all_tasks(spec)["train-sequence"])
    accelerator = container["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu"
    assert accelerator["resourceCount"] == "1"
    k8s = platform["exec-train-sequence"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s["tolerations"]
    # The nvidia.com/gpu request places the pod; a node label (which needs GPU Feature Discovery)
    # is not required unless MLCO_GPU_NODE_SELECTOR asks for one at compile time.
    assert not any("nodeSelector" in cfg for cfg in platform.values())
    # Only the sequence models need a GPU node.
    assert {name for name, cfg in platform.items() if "tolerations" in cfg} == {"exec-train-sequence"}
    assert not any(
        "accelerator" in c["container"].get("resources", {})
        for name, c in spec["deploymentSpec"]["executors"].items()
        if name != "exec-train-sequence"
    )


def test_gpu_node_selector_is_a_compile_time_setting(tmp_path):
    out = tmp_path / "pipeline.yaml"
    result = compile_in_subprocess("--out", str(out), MLCO_GPU_NODE_SELECTOR="nvidia.com/gpu.present=true")
    assert result.returncode == 0, result.stderr
    _, platform = read_compiled(out)
    selected = {name: cfg["nodeSelector"]["labels"] for name, cfg in platform.items() if "nodeSelector" in cfg}
    assert selected == {"exec-train-sequence": {"nvidia.com/gpu.present": "true"}}

    custom = compile_in_subprocess(
        "--out", str(out), MLCO_GPU_NODE_SELECTOR="cloud.google.com/gke-accelerator=nvidia-h100-80gb"
    )
    assert custom.returncode == 0, custom.stderr
    assert read_compiled(out)[1]["exec-train-sequence"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"
    }


@pytest.mark.parametrize("value", ["nvidia.com/gpu.present", "=true", "bad key=true", "gpu=no spaces"])
def test_a_malformed_gpu_node_selector_is_refused(tmp_path, value):
    env = {k: v for k, v in os.environ.items() if k not in COMPILE_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "ml_cloud_optimizer", "compile", "--out", str(tmp_path / "pipeline.yaml")],
        cwd=ROOT,
        env={**env, "MLCO_GPU_NODE_SELECTOR": value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "MLCO_GPU_NODE_SELECTOR" in result.stderr and "key=value" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, "a user's mistake is one line, not a traceback"
    assert not (tmp_path / "pipeline.yaml").exists()


@pytest.mark.usefixtures("spec")
def test_only_the_warehouse_tasks_get_the_database_secret(platform):
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
    assert cached == set()  # datagen too: its source can be a live Prometheus (workload_pipeline's docstring)
    # Every task says what it wants rather than leaving it to the default (which is "cached").
    for name, task in tasks.items():
        if "executorLabel" in spec["components"][task["componentRef"]["name"]]:
            assert "cachingOptions" in task, name


def _artifact_producers(spec: dict) -> dict[str, set[str]]:
    """Task name -> the container tasks whose output artifacts it reads, through loops, conditions and handlers."""
    parent_of = {}  # DAG component -> (its parent component, the task in the parent that runs it)
    components = {"root": spec["root"], **spec["components"]}
    for owner, component in components.items():
        for name, task in component.get("dag", {}).get("tasks", {}).items():
            parent_of[task["componentRef"]["name"]] = (owner, name)

    def producers_of_output(component_name: str, task_name: str, key: str) -> set[str]:
        task = components[component_name]["dag"]["tasks"][task_name]
        inner = components[task["componentRef"]["name"]]
        if "dag" not in inner:  # a container task
            return {task_name}
        selector = inner["dag"]["outputs"]["artifacts"][key]["artifactSelectors"][0]
        return producers_of_output(
            task["componentRef"]["name"], selector["producerSubtask"], selector["outputArtifactKey"]
        )

    def producers_of_input(component_name: str, spec_: dict) -> set[str]:
        if "taskOutputArtifact" in spec_:
            ref = spec_["taskOutputArtifact"]
            return producers_of_output(component_name, ref["producerTask"], ref["outputArtifactKey"])
        owner, task_name = parent_of[component_name]  # componentInputArtifact: follow it out of the DAG
        outer = components[owner]["dag"]["tasks"][task_name]["inputs"]["artifacts"][spec_["componentInputArtifact"]]
        return producers_of_input(owner, outer)

    result = {}
    for owner, component in components.items():
        for name, task in component.get("dag", {}).get("tasks", {}).items():
            if "executorLabel" in components[task["componentRef"]["name"]]:
                artifacts = task.get("inputs", {}).get("artifacts", {}).values()
                result[name] = set().union(*(producers_of_input(owner, a) for a in artifacts))
    return result


def test_a_cached_task_reads_only_artifacts_of_cached_tasks(spec):
    """KFP's cache key holds the input artifacts' names (backend/src/v2/cacheutils/cache.go,
    ``GenerateCacheKey``: ``InputArtifactNames``); an uncached producer makes new artifacts every
    run, so a task reading them could never hit the cache, and saying it is cached would be false."""
    tasks = all_tasks(spec)
    cached = {name for name, t in tasks.items() if t.get("cachingOptions", {}).get("enableCache")}
    producers = _artifact_producers(spec)
    assert producers["evaluate"] >= {"train-tabular", "train-sequence", "train-peak", "features"}  # the walk works
    for name in cached:
        assert producers[name] <= cached, f"{name} is cached but reads artifacts of {sorted(producers[name] - cached)}"


def _kustomize(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found on PATH: it renders the manifests (`apt-get install kubectl`)")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.parametrize("yaml_path", [COMPILED, BATCH_COMPILED], ids=["workload", "batch"])
def test_mlflow_tasks_read_the_tracking_server_from_the_settings_config_map(yaml_path):
    spec, platform = read_compiled(yaml_path)
    # The parameter's default "" means "from the environment": no address is baked into the pipeline.
    assert spec["root"]["inputDefinitions"]["parameters"]["mlflow_tracking_uri"]["defaultValue"] == ""
    uses_mlflow = {
        spec["components"][name]["executorLabel"]
        for name, c in spec["components"].items()
        if "tracking_uri" in c.get("inputDefinitions", {}).get("parameters", {})
    }
    assert uses_mlflow, "no component takes a tracking_uri"
    with_config_map = {  # datagen also reads MLCO_PROMETHEUS_URL from it (test_prometheus_source.py)
        name
        for name, cfg in platform.items()
        for entry in cfg.get("configMapAsEnv", [])
        if any(k["configMapKey"] == "MLFLOW_TRACKING_URI" for k in entry["keyToEnv"])
    }
    assert with_config_map == uses_mlflow
    for name in uses_mlflow:
        (entry,) = platform[name]["configMapAsEnv"]
        assert entry["configMapName"] == "mlco-pipeline-settings" and entry["optional"] is False
        assert entry["keyToEnv"] == [{"configMapKey": "MLFLOW_TRACKING_URI", "envVar": "MLFLOW_TRACKING_URI"}]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.usefixtures("spec")
def test_the_config_map_the_pipeline_names_is_rendered_with_the_overlays_tracking_server(platform, overlay):
    """One address per environment: the pipeline's ConfigMap exists under the exact name it uses
    (no kustomize content hash) and says what the predictor's settings say."""
    docs = _kustomize(OVERLAYS[overlay])
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    (name,) = {e["configMapName"] for cfg in platform.values() for e in cfg.get("configMapAsEnv", [])}
    assert name in config_maps, f"{overlay} renders no ConfigMap named {name}: {sorted(config_maps)}"
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    (source,) = isvc["spec"]["predictor"]["model"]["envFrom"]
    predictor_settings = config_maps[source["configMapRef"]["name"]]
    assert config_maps[name]["MLFLOW_TRACKING_URI"] == predictor_settings["MLFLOW_TRACKING_URI"]
    if overlay == "dev":  # the in-cluster MLflow of the backends component
        assert config_maps[name]["MLFLOW_TRACKING_URI"] == "http://mlco-mlflow.mlco.svc.cluster.local:5000"


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
    images = {
        name: executor(spec, t)["image"]
        for name, t in tasks.items()
        if "executorLabel" in spec["components"][t["componentRef"]["name"]]
    }
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
        "source": "STRING",
        "records": "NUMBER_INTEGER",
        "horizons": "LIST",
        "tabular_models": "LIST",
        "sequence_models": "LIST",
        "epochs": "NUMBER_INTEGER",
        "trials": "NUMBER_INTEGER",
        "deploy": "BOOLEAN",
        "namespace": "STRING",
        "isvc_name": "STRING",
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
    result = compile_in_subprocess(
        "--out", str(out), MLCO_IMAGE="registry.example/mlco:9.9", MLCO_CUDA_IMAGE="registry.example/mlco-cuda:9.9"
    )
    assert result.returncode == 0, result.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/mlco:9.9", "registry.example/mlco-cuda:9.9"}
