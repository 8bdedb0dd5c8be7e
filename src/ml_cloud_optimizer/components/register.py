"""Component ``register``: every candidate logged to MLflow, the champion bundle registered as ``champion``."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["register"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    champion: Input[Model],
    peak_model: Input[Model],
    evaluation: Input[Dataset],
    tabular_models: Input[list[Model]],
    sequence_models: Input[list[Model]],
    tracking_uri: str,
    model_name: str,
    pipeline_run: str,
    bundle: Output[Model],
) -> NamedTuple("Registered", [("model_uri", str), ("version", str)]):
    """Bundle the champion forecaster with the peak classifier: the directory serving loads.

    Each candidate becomes an MLflow run (parameters, hold-out metrics, plots, model files); the
    bundle is registered as a new version of ``model_name`` with the alias ``champion``.
    ``model_uri`` (``models:/NAME/VERSION``) is what the deploy step records on the
    InferenceService, so a later run can score the deployed model on its own hold-out.
    """
    from collections import namedtuple

    from ml_cloud_optimizer.pipeline_steps import registry

    registered = registry.register_champion(
        champion.path,
        peak_model.path,
        evaluation.path,
        [m.path for m in [*(tabular_models or []), *(sequence_models or [])]],
        bundle_dir=bundle.path,
        tracking_uri=tracking_uri,
        model_name=model_name,
        pipeline_run=pipeline_run,
    )
    bundle.metadata.update(registered)
    return namedtuple("Registered", ["model_uri", "version"])(registered["model_uri"], registered["version"])
