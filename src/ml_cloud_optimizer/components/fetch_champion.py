"""Component ``fetch_champion``: the registered champion bundle, pinned for this run as a Model artifact."""

from kfp import dsl
from kfp.dsl import Model, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["fetch_champion"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fetch_champion(location: str, tracking_uri: str, champion: Output[Model]):
    """Copy the champion at ``location`` (a bundle directory or an MLflow model URI) into ``champion``.

    An alias such as ``models:/mlco-forecaster@champion`` is resolved to the version it names
    now, recorded in the artifact's metadata, so the scores say which model made them.
    """
    from ml_cloud_optimizer.pipeline_steps import batch

    champion.metadata.update(batch.fetch_champion(location, champion.path, tracking_uri=tracking_uri))
