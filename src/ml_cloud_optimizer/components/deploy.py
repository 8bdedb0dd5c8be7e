"""Component ``deploy``: roll the champion out to KServe, only if it beats what is serving."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["deploy"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy(
    bundle: Input[Model],
    history: Input[Dataset],
    model_uri: str,
    holdout_fraction: float,
    horizons: list,
    namespace: str,
    isvc_name: str,
    tracking_uri: str,
    timeout_s: int,
) -> NamedTuple("Deployed", [("action", str), ("url", str)]):
    """Roll the bundle out to the InferenceService the manifests created, or leave it, through the kserve SDK.

    The registered model now serving (annotation ``mlco.io/model-uri``) and the new bundle are
    scored on the same rows of this run's hold-out; the bundle replaces it only with a lower
    one-hour MAE, and goes out unvetted only when nothing is served yet. A deployed model that
    will not load fails the step. The step returns once the predictor Deployment has rolled the
    bundle out, with what was done and the service's URL.
    """
    from collections import namedtuple

    from kserve import KServeClient

    from ml_cloud_optimizer.components._deploy import Candidate, deploy_champion, storage_uri_for
    from ml_cloud_optimizer.pipeline_steps import artifacts, registry

    fleet = artifacts.load_fleet(history.path)

    def compare(deployed_uri: str):
        # Raises when the deployed model will not load: the step fails and KFP retries it.
        return registry.compare_with_registered(
            bundle.path,
            deployed_uri,
            fleet,
            holdout_fraction=holdout_fraction,
            horizons=horizons,
            tracking_uri=tracking_uri,
        )

    candidate = Candidate(
        storage_uri_for(bundle.uri), model_uri, bundle.metadata["holdout_mae"], bundle.metadata["kind"]
    )
    result = deploy_champion(
        KServeClient(), candidate, name=isvc_name, namespace=namespace, compare=compare, timeout_s=timeout_s
    )
    print(f"[mlco] deploy: {result.action}: {result.reason}; url {result.url}")
    return namedtuple("Deployed", ["action", "url"])(result.action, result.url)
