"""Everything the pipeline names outside itself: images, Kubernetes objects, default budgets.

One place, so that the compiled pipeline, the deploy step and the manifests agree. The two
images are read from the environment when this module is imported (``MLCO_IMAGE``,
``MLCO_CUDA_IMAGE``), which is how a registry mirror or a release tag reaches the compiled
YAML: ``MLCO_IMAGE=registry.local/mlco:0.2.0 mlco compile``.
"""

from __future__ import annotations

import os

from ml_cloud_optimizer import __version__

__all__ = [
    "IMAGE",
    "CUDA_IMAGE",
    "DEFAULT_IMAGE",
    "DEFAULT_CUDA_IMAGE",
    "PIPELINE_NAME",
    "PIPELINE_RUNNER_SERVICE_ACCOUNT",
    "PREDICTOR_SERVICE_ACCOUNT",
    "DB_SECRET",
    "DB_SECRET_KEY",
    "MLFLOW_TRACKING_URI",
    "ISVC_NAME",
    "REGISTERED_MODEL",
    "ISVC_NAMESPACE",
    "MODEL_FORMAT",
    "SERVING_RUNTIME",
    "PREDICTOR_LABEL",
    "GPU_RESOURCE",
    "GPU_NODE_SELECTOR",
    "GPU_TOLERATION",
    "RUN_AS_USER",
    "TABULAR_MODELS",
    "SEQUENCE_MODELS",
    "CLUSTER_BUDGET",
    "LOCAL_BUDGET",
    "image_settings",
]

DEFAULT_IMAGE = f"ghcr.io/mlco/ml-cloud-optimizer:{__version__}"
DEFAULT_CUDA_IMAGE = f"ghcr.io/mlco/ml-cloud-optimizer-cuda:{__version__}"

IMAGE: str = os.environ.get("MLCO_IMAGE") or DEFAULT_IMAGE
CUDA_IMAGE: str = os.environ.get("MLCO_CUDA_IMAGE") or DEFAULT_CUDA_IMAGE

PIPELINE_NAME = "mlco-workload-forecasting"

# The run's service account is the deploy step's identity: the manifests give it get/create/patch/
# watch on inferenceservices in its namespace and nothing more.
PIPELINE_RUNNER_SERVICE_ACCOUNT = "mlco-pipeline-runner"
PREDICTOR_SERVICE_ACCOUNT = "mlco-predictor"

DB_SECRET = "mlco-db"
DB_SECRET_KEY = "DATABASE_URL"
# In-cluster MLflow (manifests/base/settings.env); a pipeline parameter, so a local run can point
# the same components at its own store.
MLFLOW_TRACKING_URI = "http://mlflow.mlflow.svc.cluster.local:5000"

ISVC_NAME = "workload-forecaster"
# The MLflow registered model; the same name as ``tracking.DEFAULT_MODEL_NAME`` (`mlco train`).
REGISTERED_MODEL = "mlco-forecaster"
ISVC_NAMESPACE = "mlco"  # manifests/base sets this namespace
MODEL_FORMAT = "mlco-forecaster"
SERVING_RUNTIME = "mlco-runtime"
# A stable pod label the PodDisruptionBudget selects on (a namePrefix does not rename it).
PREDICTOR_LABEL = ("app.kubernetes.io/component", "forecaster-predictor")

GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_SELECTOR = ("nvidia.com/gpu.present", "true")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

# The images run as this non-root user (see docker/Dockerfile).
RUN_AS_USER = 10001

TABULAR_MODELS = ["lightgbm", "xgboost", "catboost"]
SEQUENCE_MODELS = ["lstm", "gru"]

# Training budgets. A cluster run has GPUs and time; a local run must finish 100,000 records and all
# five model kinds within 15 minutes on two CPU cores.
CLUSTER_BUDGET = {"records": 1_000_000, "epochs": 20, "trials": 30}
LOCAL_BUDGET = {"records": 100_000, "epochs": 3, "trials": 0}


def image_settings() -> dict[str, str]:
    """The images this process would compile into the pipeline, by role."""
    return {"cpu": IMAGE, "cuda": CUDA_IMAGE}
