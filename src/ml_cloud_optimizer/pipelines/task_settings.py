"""Kubernetes settings shared by the tasks of every mlco pipeline (applied at compile time)."""

from kfp import dsl, kubernetes

from ml_cloud_optimizer.pipelines import settings

__all__ = ["reads_prometheus_setting", "runs_as_image_user", "uses_database", "uses_mlflow"]


def runs_as_image_user(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Run ``task`` as the image's non-root user."""
    return kubernetes.set_security_context(task, run_as_user=settings.RUN_AS_USER, run_as_non_root=True)


def uses_database(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Give ``task`` DATABASE_URL from the ``mlco-db`` Secret (a local run inherits it instead) and a retry policy."""
    kubernetes.use_secret_as_env(
        task, secret_name=settings.DB_SECRET, secret_key_to_env={settings.DB_SECRET_KEY: "DATABASE_URL"}
    )
    return task.set_retry(num_retries=3, backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")


def uses_mlflow(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Give ``task`` MLFLOW_TRACKING_URI from the ``mlco-pipeline-settings`` ConfigMap (a local run inherits it).

    The task's ``tracking_uri`` input is the pipeline parameter ``mlflow_tracking_uri``; left at
    its default "", the task uses this variable, so the manifests' address is the one a cluster
    run uses. The ConfigMap is required: without it a run would write its registry into the
    pod's own disk and lose it, so the pod fails to start instead.
    """
    return kubernetes.use_config_map_as_env(
        task,
        config_map_name=settings.PIPELINE_SETTINGS_CONFIG_MAP,
        config_map_key_to_env={settings.MLFLOW_TRACKING_URI_KEY: "MLFLOW_TRACKING_URI"},
    )


def reads_prometheus_setting(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Give ``task`` MLCO_PROMETHEUS_URL, the cluster's Prometheus, from ``mlco-pipeline-settings`` (local: inherited).

    It is what ``source="prometheus"`` reads (``pipeline_steps.sources.resolve_source``).
    Optional, unlike the MLflow address: a run from a file or the generator needs no
    Prometheus, and a ConfigMap from before this setting still starts the pod, which then
    falls back to ``pipeline_steps.sources.DEFAULT_PROMETHEUS_URL``. Authentication travels in
    the setting's query (``token_file=`` names the pod's service-account token): no Secret.
    """
    return kubernetes.use_config_map_as_env(
        task,
        config_map_name=settings.PIPELINE_SETTINGS_CONFIG_MAP,
        config_map_key_to_env={settings.PROMETHEUS_URL_KEY: settings.PROMETHEUS_URL_KEY},
        optional=True,
    )
