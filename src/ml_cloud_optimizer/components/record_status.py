"""Component ``record_status``: the exit handler; records how the run ended, failures above all."""

from kfp import dsl

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["record_status"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def record_status(status: dsl.PipelineTaskFinalStatus, tracking_uri: str):
    """Log the run's final state, and the error of a failed one, as an MLflow run tagged for search.

    Runs whatever happened inside the exit handler; it never fails the pipeline itself when
    MLflow is unreachable, it prints the record instead.
    """
    from ml_cloud_optimizer.pipeline_steps import run_log

    run_log.record_pipeline_status(
        state=status.state,
        job=status.pipeline_job_resource_name,
        task=status.pipeline_task_name,
        error_code=status.error_code,
        error_message=status.error_message,
        tracking_uri=tracking_uri,
    )
