"""Component ``score_fleet``: forecasts and capacity recommendations for every entity, into the warehouse."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["score_fleet"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def score_fleet(
    champion: Input[Model],
    lookback_hours: int,
    target_utilization: float,
    granularity: float,
    forecasts: Output[Dataset],
    recommendations: Output[Dataset],
    scores: Output[Metrics],
) -> NamedTuple("Scored", [("run_id", int), ("entities", int)]):
    """Read the last ``lookback_hours`` from the warehouse named by ``DATABASE_URL``, forecast, recommend, store.

    Forecasts and recommendations go to the warehouse as one optimizer run (one transaction)
    and, as Parquet, to this task's artifacts. Returns the run id and how many entities were scored.
    """
    from collections import namedtuple

    from ml_cloud_optimizer.pipeline_steps import artifacts, batch

    label = f"{champion.metadata.get('kind', 'model')}:{champion.metadata.get('model_uri', champion.uri)}"
    score = batch.score_fleet(
        champion.path,
        lookback_hours=lookback_hours,
        target_utilization=target_utilization,
        granularity=granularity,
        model_label=label,
    )
    forecasts.metadata.update(artifacts.save_frame(score.forecasts, forecasts.path))
    recommendations.metadata.update(artifacts.save_frame(score.recommendations, recommendations.path))
    summary = score.summary()
    for name, value in summary.items():
        scores.log_metric(name, value)
    return namedtuple("Scored", ["run_id", "entities"])(summary["run_id"], summary["entities"])
