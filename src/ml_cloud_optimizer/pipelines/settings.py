"""Everything the pipeline names outside itself: images, Kubernetes objects, default budgets.

One place, so that the compiled pipeline, the deploy step and the manifests agree. Three
settings are read from the environment when this module is imported, which is how a
registry mirror, a release tag or a cluster's node labels reach the compiled YAML:

* ``MLCO_IMAGE``, ``MLCO_CUDA_IMAGE``: the images, read in ``components/_image.py``;
* ``MLCO_GPU_NODE_SELECTOR``: ``key=value``, a node label the GPU tasks must match, e.g.
  ``nvidia.com/gpu.present=true`` where GPU Feature Discovery labels the nodes. Off by default:
  the ``nvidia.com/gpu`` request alone already places the pod on a node that has one.
"""

from __future__ import annotations

import os
import re

# The components own their image setting; the pipelines name it too.
from ml_cloud_optimizer.components._image import CUDA_IMAGE, DEFAULT_CUDA_IMAGE, DEFAULT_IMAGE, IMAGE
from ml_cloud_optimizer.models.registry import kinds

__all__ = [
    "CLUSTER_BUDGET",
    "CUDA_IMAGE",
    "DB_SECRET",
    "DB_SECRET_KEY",
    "DEFAULT_CUDA_IMAGE",
    "DEFAULT_IMAGE",
    "GPU_NODE_SELECTOR",
    "GPU_RESOURCE",
    "GPU_TOLERATION",
    "IMAGE",
    "ISVC_NAME",
    "ISVC_NAMESPACE",
    "LOCAL_BUDGET",
    "MLFLOW_TRACKING_URI_KEY",
    "MODEL_FORMAT",
    "PIPELINE_NAME",
    "PIPELINE_RUNNER_SERVICE_ACCOUNT",
    "PIPELINE_SETTINGS_CONFIG_MAP",
    "PREDICTOR_LABEL",
    "PREDICTOR_SERVICE_ACCOUNT",
    "PROMETHEUS_URL_KEY",
    "REGISTERED_MODEL",
    "RUN_AS_USER",
    "SEQUENCE_MODELS",
    "SERVING_RUNTIME",
    "TABULAR_MODELS",
    "gpu_node_selector",
    "image_settings",
]


PIPELINE_NAME = "mlco-workload-forecasting"

# The run's service account is the deploy step's identity: the manifests give it get/create/patch/
# watch on inferenceservices in its namespace and nothing more.
PIPELINE_RUNNER_SERVICE_ACCOUNT = "mlco-pipeline-runner"
PREDICTOR_SERVICE_ACCOUNT = "mlco-predictor"

DB_SECRET = "mlco-db"
DB_SECRET_KEY = "DATABASE_URL"
# The MLflow address has one source of truth: the manifests (manifests/base/settings.env, merged
# per overlay). They also generate this ConfigMap, under a stable name (no content hash, which a
# compiled pipeline could not know), and the tasks that use MLflow read MLFLOW_TRACKING_URI from
# it. The pipeline parameter ``mlflow_tracking_uri`` defaults to "": "take it from the
# environment" (this ConfigMap on a cluster; MLFLOW_TRACKING_URI or mlco's local store locally).
PIPELINE_SETTINGS_CONFIG_MAP = "mlco-pipeline-settings"
MLFLOW_TRACKING_URI_KEY = "MLFLOW_TRACKING_URI"
# The cluster's Prometheus, which a run with source "prometheus" reads: a key of the same
# ConfigMap, written in manifests/base/pipeline-settings.env (pipeline tasks only, so that
# changing it does not roll the predictor). The name pipeline_steps.sources.PROMETHEUS_SETTING
# reads, kept literal here so compiling imports no step code (a test keeps the two equal).
PROMETHEUS_URL_KEY = "MLCO_PROMETHEUS_URL"

ISVC_NAME = "workload-forecaster"
# The MLflow registered model; the same name as ``tracking.DEFAULT_MODEL_NAME`` (`mlco train`).
REGISTERED_MODEL = "mlco-forecaster"
ISVC_NAMESPACE = "mlco"  # manifests/base sets this namespace
MODEL_FORMAT = "mlco-forecaster"
SERVING_RUNTIME = "mlco-runtime"
# A stable pod label the PodDisruptionBudget selects on (a namePrefix does not rename it).
PREDICTOR_LABEL = ("app.kubernetes.io/component", "forecaster-predictor")

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# The images run as this non-root user (see docker/Dockerfile).
RUN_AS_USER = 10001

TABULAR_MODELS = list(kinds("tabular"))
SEQUENCE_MODELS = list(kinds("sequence"))

# Training budgets. A cluster run has GPUs and time; a local run must finish 100,000 records and all
# five model kinds within 15 minutes on two CPU cores.
CLUSTER_BUDGET = {"records": 1_000_000, "epochs": 20, "trials": 30}
LOCAL_BUDGET = {"records": 100_000, "epochs": 3, "trials": 0}


# A label key: an optional DNS-subdomain prefix and "/", then a name of at most 63 characters;
# a value: at most 63 characters, empty allowed (Kubernetes' syntax for labels).
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")


def gpu_node_selector(text: str | None = None) -> tuple[str, str] | None:
    """The node label GPU tasks must match, from ``text`` (default ``$MLCO_GPU_NODE_SELECTOR``); None: none.

    Args:
        text: ``key=value``, e.g. ``nvidia.com/gpu.present=true``; empty or unset means no selector.

    Raises:
        ValueError: ``text`` is not ``key=value`` with a valid Kubernetes label key and value.

    Example:
        >>> gpu_node_selector("nvidia.com/gpu.present=true")
        ('nvidia.com/gpu.present', 'true')
    """
    text = (os.environ.get("MLCO_GPU_NODE_SELECTOR", "") if text is None else text).strip()
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"MLCO_GPU_NODE_SELECTOR={text!r}: expected key=value with a Kubernetes label key and value,"
            " e.g. nvidia.com/gpu.present=true"
        )
    return key, value


GPU_NODE_SELECTOR: tuple[str, str] | None = gpu_node_selector()


def image_settings() -> dict[str, str]:
    """The images this process would compile into the pipeline, by role."""
    return {"cpu": IMAGE, "cuda": CUDA_IMAGE}
