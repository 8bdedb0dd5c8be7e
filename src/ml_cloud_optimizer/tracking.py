"""MLflow tracking: one run per candidate, the champion in the model registry under the alias ``champion``.

Runs go to ``MLFLOW_TRACKING_URI`` when it is set, else to a local store under ``$MLCO_HOME``
(default ``./.mlco``): ``sqlite:///<home>/mlflow.db`` with artifacts in ``<home>/mlartifacts``.
Each candidate's run holds its parameters, its hold-out metrics, its plots and its saved model
directory. The champion's bundle is also logged as an MLflow pyfunc model (which loads the
bundle and calls ``ModelBundle.predict``) and registered, and the alias moves to that version.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient

__all__ = [
    "CHAMPION_ALIAS",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_MODEL_NAME",
    "BundlePyfunc",
    "mlco_home",
    "tracking_uri",
    "Tracker",
]

CHAMPION_ALIAS = "champion"
DEFAULT_EXPERIMENT = "mlco-forecast"
DEFAULT_MODEL_NAME = "mlco-forecaster"


def mlco_home() -> Path:
    """``$MLCO_HOME``, or ``./.mlco``: where local state lives."""
    return Path(os.environ.get("MLCO_HOME", ".mlco")).resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the local sqlite store under ``mlco_home()``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    home = mlco_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def _artifact_root() -> str | None:
    """Artifact location for new experiments in the local store (None: the server decides)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    root = mlco_home() / "mlartifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root.as_uri()


class BundlePyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc face of a bundle: MLflow loads or serves it through ``ModelBundle.predict``."""

    def load_context(self, context):
        from ml_cloud_optimizer.models.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        return self.bundle.predict(model_input)


class Tracker:
    """Logs candidates of one training session to an MLflow experiment and registers the champion.

    Args:
        experiment: experiment name.
        uri: tracking URI (default ``tracking_uri()``).
        model_name: registered model name for the champion.
    """

    def __init__(self, experiment: str = DEFAULT_EXPERIMENT, uri: str | None = None,
                 model_name: str = DEFAULT_MODEL_NAME):
        self.uri = uri or tracking_uri()
        self.model_name = model_name
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=_artifact_root())
        else:
            self.experiment_id = found.experiment_id

    def log_candidate(
        self,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        model_dir: str | Path | None = None,
        plots: Iterable[str | Path] = (),
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """One finished run for candidate ``name``; returns its run id.

        The model directory, when given, is logged under the artifact path ``model``.
        """
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"candidate": name, **(tags or {})})
        run_id = run.info.run_id
        try:
            for key, value in params.items():
                self.client.log_param(run_id, key, str(value)[:500])
            for key, value in metrics.items():
                if value is not None and not pd.isna(value):
                    self.client.log_metric(run_id, key, float(value))
            for plot in plots:
                self.client.log_artifact(run_id, str(plot), "plots")
            if model_dir is not None:
                self.client.log_artifacts(run_id, str(model_dir), "model")
        except Exception:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def register_champion(self, run_id: str, bundle_dir: str | Path) -> str:
        """Log the bundle as a pyfunc model in ``run_id``, register it and point the alias at it.

        Returns the registered version (a string, as MLflow gives it).
        """
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="champion",
                python_model=BundlePyfunc(),
                artifacts={"bundle": str(bundle_dir)},
                pip_requirements=["ml-cloud-optimizer"],
            )
        version = mlflow.register_model(info.model_uri, self.model_name)
        self.client.set_registered_model_alias(self.model_name, CHAMPION_ALIAS, version.version)
        self.client.set_tag(run_id, "champion", "true")
        return str(version.version)

    def champion_version(self) -> str:
        """The registered version the ``champion`` alias points at."""
        return str(self.client.get_model_version_by_alias(self.model_name, CHAMPION_ALIAS).version)
