"""The training pipeline: data -> warehouse -> features -> models -> evaluation -> registry -> KServe.

::

    datagen -> olap_load -> features -+-> ParallelFor(tabular_models)  train_tabular  -+
                                      +-> ParallelFor(sequence_models) train_sequence -+-> evaluate -> ...
                                      +-> smote -> train_peak ------------------------+

    ... evaluate -> register -> If(deploy) deploy
    (all inside an ExitHandler whose record_status task logs how the run ended)

Cluster settings live on the tasks here: the database secret on the tasks that use the
warehouse, the MLflow address (from the ``mlco-pipeline-settings`` ConfigMap) on the tasks that
use MLflow, the GPU request and toleration on ``train_sequence`` (plus a node selector when
``MLCO_GPU_NODE_SELECTOR`` is set at compile time), resources, a non-root security context
(``kfp.local`` ignores all these), and per-task caching and retries.

Caching: none, ``datagen`` included. Its cache key on a cluster would be its parameters (source,
records, seed), image and command: a live Prometheus source (``prometheus``, or a URL without
``end``) names a different window every run, and a key that holds the string but not the clock
would serve the first run's fleet to every later one. Caching it would save only its own
seconds: everything downstream reads the warehouse through ``features``, which always runs (the
warehouse is state the cache key cannot see), and KFP's cache key holds the *names* of the input
artifacts, which an uncached task makes new every run, so no later task could hit the cache
either; all are marked uncached rather than claim otherwise. What a run read is recorded
instead: the fleet's metadata ``source`` is the resolved Prometheus URL with ``end`` pinned.

The cluster's Prometheus: ``source="prometheus"`` (or ``prometheus://?...`` without a host) is
resolved inside ``datagen`` against ``MLCO_PROMETHEUS_URL``, which the task reads from the
``mlco-pipeline-settings`` ConfigMap (``manifests/base/pipeline-settings.env``) as the MLflow
tasks read their address there. Defaults are sized for a cluster; ``mlco run`` passes a budget
that fits two CPU cores.
"""

# No `from __future__ import annotations`: kfp reads the parameter annotations as types.
from kfp import dsl, kubernetes

from ml_cloud_optimizer.components.datagen import datagen
from ml_cloud_optimizer.components.deploy import deploy as deploy_component
from ml_cloud_optimizer.components.evaluate import evaluate
from ml_cloud_optimizer.components.features import features
from ml_cloud_optimizer.components.olap_load import olap_load
from ml_cloud_optimizer.components.record_status import record_status
from ml_cloud_optimizer.components.register import register
from ml_cloud_optimizer.components.smote import smote
from ml_cloud_optimizer.components.train_peak import train_peak
from ml_cloud_optimizer.components.train_sequence import train_sequence
from ml_cloud_optimizer.components.train_tabular import train_tabular
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS, PEAK_HORIZON
from ml_cloud_optimizer.pipelines import settings
from ml_cloud_optimizer.pipelines.task_settings import (
    reads_prometheus_setting,
    runs_as_image_user,
    uses_database,
    uses_mlflow,
)

__all__ = ["workload_pipeline"]


def _on_gpu_node(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """One GPU (the request is what places the pod), the GPU taint tolerated, and the optional node selector."""
    task.set_accelerator_type(settings.GPU_RESOURCE).set_accelerator_limit(1)
    if settings.GPU_NODE_SELECTOR is not None:
        kubernetes.add_node_selector(
            task, label_key=settings.GPU_NODE_SELECTOR[0], label_value=settings.GPU_NODE_SELECTOR[1]
        )
    kubernetes.add_toleration(task, **settings.GPU_TOLERATION)
    return task


@dsl.pipeline(
    name=settings.PIPELINE_NAME,
    description="Forecast cloud workload: ingest, warehouse, features, five model kinds, champion, KServe rollout.",
)
def workload_pipeline(
    source: str = "synthetic",
    records: int = settings.CLUSTER_BUDGET["records"],
    seed: int = 0,
    horizons: list = list(DEFAULT_HORIZONS),
    tabular_models: list = list(settings.TABULAR_MODELS),
    sequence_models: list = list(settings.SEQUENCE_MODELS),
    epochs: int = settings.CLUSTER_BUDGET["epochs"],
    trials: int = settings.CLUSTER_BUDGET["trials"],
    holdout_fraction: float = 0.2,
    deploy: bool = True,
    namespace: str = settings.ISVC_NAMESPACE,
    isvc_name: str = settings.ISVC_NAME,
    model_name: str = settings.REGISTERED_MODEL,
    mlflow_tracking_uri: str = "",
    deploy_timeout_s: int = 900,
):
    """Train, evaluate and (optionally) deploy the workload forecaster.

    Args:
        source: "synthetic"; the path of a trace inside the image or a mounted volume; a Prometheus
            URL ``prometheus://HOST:PORT?start=...&end=...&level=...``; or ``prometheus`` (also
            ``prometheus://?level=...`` without a host): the cluster's, ``MLCO_PROMETHEUS_URL``.
        records: synthetic rows to generate.
        seed: seed of the generator, SMOTE and the models.
        horizons: forecast horizons in 5-minute steps (12 = one hour, the headline).
        tabular_models: tabular kinds to train, one task each.
        sequence_models: recurrent kinds to train on GPU nodes, one task each.
        epochs: most epochs for LSTM/GRU (early stopping may end sooner).
        trials: Optuna trials per tabular model (0: library defaults).
        holdout_fraction: final share of the time span kept for evaluation.
        deploy: roll the champion out to KServe when it beats the deployed model.
        namespace: namespace of the InferenceService.
        isvc_name: name of the InferenceService.
        model_name: registered model name in MLflow.
        mlflow_tracking_uri: MLflow tracking server; "": MLFLOW_TRACKING_URI (ConfigMap mlco-pipeline-settings).
        deploy_timeout_s: how long the deploy step waits for the InferenceService to be ready.
    """
    exit_task = record_status(tracking_uri=mlflow_tracking_uri)
    exit_task.set_caching_options(enable_caching=False)
    uses_mlflow(runs_as_image_user(exit_task))

    with dsl.ExitHandler(exit_task, name="train-and-deploy"):
        data = datagen(source=source, records=records, seed=seed)
        data.set_caching_options(enable_caching=False)  # a source can be live (see the module docstring)
        reads_prometheus_setting(data)

        loaded = olap_load(fleet=data.outputs["fleet"])
        uses_database(loaded.set_caching_options(enable_caching=False))

        split = features(
            fleet=data.outputs["fleet"],
            start=loaded.outputs["start"],
            end=loaded.outputs["end"],
            holdout_fraction=holdout_fraction,
            peak_horizon=PEAK_HORIZON,
            seed=seed,
        )
        uses_database(split.set_caching_options(enable_caching=False))

        balanced = smote(peak_rows=split.outputs["peak_rows"], seed=seed)
        # From here on every input descends from `features`, which always runs: never cached (module docstring).
        balanced.set_caching_options(enable_caching=False)
        peak = train_peak(balanced=balanced.outputs["balanced"])
        peak.set_caching_options(enable_caching=False).set_retry(num_retries=1)

        with dsl.ParallelFor(tabular_models, name="tabular-models") as kind:
            tabular = train_tabular(
                kind=kind, train=split.outputs["train"], horizons=horizons, trials=trials, seed=seed
            )
            tabular.set_caching_options(enable_caching=False).set_retry(num_retries=1, backoff_duration="60s")
            tabular.set_cpu_request("2").set_cpu_limit("4").set_memory_request("4G").set_memory_limit("8G")

        with dsl.ParallelFor(sequence_models, name="sequence-models") as kind:
            sequence = train_sequence(
                kind=kind, train=split.outputs["train"], horizons=horizons, epochs=epochs, seed=seed
            )
            sequence.set_caching_options(enable_caching=False).set_retry(num_retries=1, backoff_duration="60s")
            sequence.set_cpu_request("4").set_memory_request("16G").set_memory_limit("16G")
            _on_gpu_node(sequence)

        scored = evaluate(
            tabular_models=dsl.Collected(tabular.outputs["model"]),
            sequence_models=dsl.Collected(sequence.outputs["model"]),
            peak_model=peak.outputs["model"],
            history=split.outputs["history"],
            holdout_fraction=holdout_fraction,
            horizons=horizons,
        )
        scored.set_caching_options(enable_caching=False)

        registered = register(
            champion=scored.outputs["champion"],
            peak_model=peak.outputs["model"],
            evaluation=scored.outputs["evaluation"],
            tabular_models=dsl.Collected(tabular.outputs["model"]),
            sequence_models=dsl.Collected(sequence.outputs["model"]),
            tracking_uri=mlflow_tracking_uri,
            model_name=model_name,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        registered.set_caching_options(enable_caching=False).set_retry(num_retries=2, backoff_duration="30s")
        uses_mlflow(registered)

        with dsl.If(deploy == True, name="deploy-enabled"):  # noqa: E712 (a pipeline condition, not Python)
            rollout = deploy_component(
                bundle=registered.outputs["bundle"],
                history=split.outputs["history"],
                model_uri=registered.outputs["model_uri"],
                holdout_fraction=holdout_fraction,
                horizons=horizons,
                namespace=namespace,
                isvc_name=isvc_name,
                tracking_uri=mlflow_tracking_uri,
                timeout_s=deploy_timeout_s,
            )
            rollout.set_caching_options(enable_caching=False).set_retry(num_retries=2, backoff_duration="60s")
            uses_mlflow(rollout)

        for task in (data, loaded, split, balanced, peak, tabular, sequence, scored, registered, rollout):
            runs_as_image_user(task)
