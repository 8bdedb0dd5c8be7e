"""Component ``register``: the champion bundle, logged and registered in MLflow under the alias ``champion``."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from pipelines import settings

__all__ = ["register"]


@dsl.component(base_image=settings.IMAGE, install_kfp_package=False)
def register(
    champion: Input[Model],
    peak_model: Input[Model],
    leaderboard_table: Input[Dataset],
    tracking_uri: str,
    model_name: str,
    bundle: Output[Model],
) -> NamedTuple("Registered", [("model_uri", str), ("version", str)]):
    """Bundle the champion forecaster with the peak classifier, the directory serving loads.

    The bundle is registered as a new version of ``model_name`` with the alias ``champion``;
    ``model_uri`` (``models:/NAME/VERSION``) is what the deploy step records on the
    InferenceService, so a later run can score the deployed model on its own hold-out.
    """
    from collections import namedtuple

    from ml_cloud_optimizer.pipeline_steps import artifacts, registry

    registered = registry.register_champion(
        champion.path, peak_model.path, artifacts.load_frame(leaderboard_table.path),
        bundle_dir=bundle.path, tracking_uri=tracking_uri, model_name=model_name,
    )
    bundle.metadata.update(registered)
    return namedtuple("Registered", ["model_uri", "version"])(registered["model_uri"], registered["version"])
