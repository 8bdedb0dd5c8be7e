"""Apply the champion to its KServe InferenceService: create, patch, or leave it alone.

The deploy step replaces what is serving only when the new champion forecasts better than the
deployed model on the same hold-out, because each training run evaluates on its own newest
window and an MAE recorded by an older run is not comparable. The caller supplies ``compare``,
which scores the candidate and the model an InferenceService names (annotation
``mlco.io/model-uri``) on the same rows of the current hold-out.

It talks to the cluster through the kserve SDK (``KServeClient``), which wants a
``V1beta1InferenceService`` object rather than a dict; "apply" is get, then patch or create,
then wait until the controller reports the new generation ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from kserve import (
    KServeClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
    constants,
)
from kubernetes.client import (
    V1Capabilities,
    V1EmptyDirVolumeSource,
    V1ObjectMeta,
    V1PodSecurityContext,
    V1ResourceRequirements,
    V1SeccompProfile,
    V1SecurityContext,
    V1Volume,
    V1VolumeMount,
)
from kubernetes.client.rest import ApiException

from pipelines import settings

__all__ = [
    "MODEL_URI_ANNOTATION",
    "HOLDOUT_MAE_ANNOTATION",
    "MODEL_KIND_ANNOTATION",
    "Candidate",
    "DeployResult",
    "build_inference_service",
    "deploy_champion",
    "storage_uri_for",
]

MODEL_URI_ANNOTATION = "mlco.io/model-uri"
HOLDOUT_MAE_ANNOTATION = "mlco.io/holdout-mae"
MODEL_KIND_ANNOTATION = "mlco.io/model-kind"

_VERSION = constants.KSERVE_V1BETA1_VERSION
_API_VERSION = constants.KSERVE_V1BETA1
# Resources of a predictor the pipeline creates itself; requests equal limits (Guaranteed QoS).
_PREDICTOR_RESOURCES = {"cpu": "1", "memory": "2Gi"}


@dataclass(frozen=True)
class Candidate:
    """The new champion: where KServe fetches it, how the registry names it, how it scored."""

    storage_uri: str
    model_uri: str
    holdout_mae: float
    kind: str = ""


@dataclass
class DeployResult:
    """What the deploy step did (``created``, ``patched`` or ``skipped``), why, and the URL serving now."""

    action: str
    reason: str
    url: str = ""
    deployed_mae: float | None = None
    generation: int | None = None
    annotations: dict = field(default_factory=dict)


def storage_uri_for(artifact_uri: str) -> str:
    """KServe's storage initializer reads ``s3://``; KFP names its MinIO artifacts ``minio://``."""
    if artifact_uri.startswith("minio://"):
        return "s3://" + artifact_uri[len("minio://"):]
    return artifact_uri


def build_inference_service(name: str, namespace: str, candidate: Candidate, *, full: bool = True) -> V1beta1InferenceService:
    """The InferenceService for ``candidate``.

    Args:
        name: InferenceService name.
        namespace: its namespace.
        candidate: the model to serve.
        full: the whole object, for a first deploy into a namespace the manifests have not
            populated (the shape of manifests/base/inferenceservice.yaml); when False only
            the fields a rollout changes (the model's location and the annotations), for a
            merge patch that leaves what the manifests set alone.
    """
    annotations = {
        MODEL_URI_ANNOTATION: candidate.model_uri,
        HOLDOUT_MAE_ANNOTATION: f"{candidate.holdout_mae:.6g}",
        MODEL_KIND_ANNOTATION: candidate.kind,
    }
    model = V1beta1ModelSpec(
        name="kserve-container",
        model_format=V1beta1ModelFormat(name=settings.MODEL_FORMAT),
        runtime=settings.SERVING_RUNTIME,
        storage_uri=candidate.storage_uri,
    )
    predictor = V1beta1PredictorSpec(model=model)
    if full:
        annotations.update({
            "serving.kserve.io/deploymentMode": "Standard",
            "serving.kserve.io/autoscalerClass": "hpa",
            "serving.kserve.io/enable-prometheus-scraping": "true",
        })
        model.model_format.version = "1"
        model.resources = V1ResourceRequirements(requests=dict(_PREDICTOR_RESOURCES), limits=dict(_PREDICTOR_RESOURCES))
        model.security_context = V1SecurityContext(
            allow_privilege_escalation=False,
            privileged=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            run_as_user=settings.RUN_AS_USER,
            run_as_group=settings.RUN_AS_USER,
            capabilities=V1Capabilities(drop=["ALL"]),
            seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
        )
        model.volume_mounts = [V1VolumeMount(name="tmp", mount_path="/tmp")]
        predictor.labels = {"app.kubernetes.io/name": name, settings.PREDICTOR_LABEL[0]: settings.PREDICTOR_LABEL[1]}
        predictor.service_account_name = settings.PREDICTOR_SERVICE_ACCOUNT
        predictor.automount_service_account_token = False
        predictor.min_replicas = 1
        predictor.max_replicas = 1
        predictor.scale_metric = "cpu"
        predictor.scale_target = 70
        predictor.security_context = V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=settings.RUN_AS_USER,
            run_as_group=settings.RUN_AS_USER,
            fs_group=settings.RUN_AS_USER,
            seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
        )
        predictor.volumes = [V1Volume(name="tmp", empty_dir=V1EmptyDirVolumeSource(size_limit="256Mi"))]
    return V1beta1InferenceService(
        api_version=_API_VERSION,
        kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=V1ObjectMeta(name=name, namespace=namespace, annotations=annotations),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )


def deploy_champion(
    client: KServeClient,
    candidate: Candidate,
    *,
    name: str = settings.ISVC_NAME,
    namespace: str = settings.ISVC_NAMESPACE,
    compare: Callable[[dict], tuple[float, float] | None],
    timeout_s: int = 600,
    poll_s: float = 5.0,
) -> DeployResult:
    """Create the InferenceService, patch it to the candidate, or skip, then wait for ready.

    Args:
        client: a ``KServeClient`` (in-cluster config inside a pipeline pod).
        candidate: the new champion.
        name: InferenceService name.
        namespace: its namespace.
        compare: given the existing InferenceService (a dict), ``(candidate MAE, deployed MAE)``
            on the same hold-out rows, or None when the deployed model cannot be scored (then
            the candidate replaces it).
        timeout_s: how long to wait for the controller to report the new generation ready.
        poll_s: seconds between readiness checks.

    Returns:
        A ``DeployResult``; ``url`` is the InferenceService's URL once ready.

    Raises:
        RuntimeError: the API refused a write or the service did not become ready in time.
    """
    existing = _get(client, name, namespace)
    if existing is None:
        created = client.create(build_inference_service(name, namespace, candidate), namespace=namespace)
        result = DeployResult("created", f"no InferenceService {namespace}/{name} existed")
        generation = created["metadata"].get("generation")
    else:
        deployed_uri = (existing.get("metadata", {}).get("annotations") or {}).get(MODEL_URI_ANNOTATION)
        if deployed_uri and deployed_uri == candidate.model_uri:
            return _skipped(existing, f"{candidate.model_uri} is already deployed", None)
        scores = compare(existing)
        deployed_mae = None if scores is None else scores[1]
        if scores is not None and not scores[0] < scores[1]:
            return _skipped(
                existing,
                f"the deployed model scores {scores[1]:.5g} MAE on this hold-out and the candidate"
                f" {scores[0]:.5g}: not better, nothing changed",
                deployed_mae,
            )
        why = ("the deployed model could not be scored on this hold-out" if scores is None
               else f"candidate {scores[0]:.5g} MAE beats the deployed {scores[1]:.5g} on the same rows")
        patched = client.patch(name, build_inference_service(name, namespace, candidate, full=False), namespace=namespace)
        result = DeployResult("patched", why, deployed_mae=deployed_mae)
        generation = patched["metadata"].get("generation")
    client.wait_isvc_ready(name, namespace=namespace, timeout_seconds=timeout_s, polling_interval=poll_s,
                           expected_generation=generation)
    ready = _get(client, name, namespace) or {}
    result.url = (ready.get("status") or {}).get("url", "")
    result.generation = generation
    result.annotations = dict((ready.get("metadata") or {}).get("annotations") or {})
    return result


def _skipped(existing: dict, reason: str, deployed_mae: float | None) -> DeployResult:
    return DeployResult(
        "skipped", reason,
        url=(existing.get("status") or {}).get("url", ""),
        deployed_mae=deployed_mae,
        generation=existing.get("metadata", {}).get("generation"),
        annotations=dict(existing.get("metadata", {}).get("annotations") or {}),
    )


def _get(client: KServeClient, name: str, namespace: str) -> dict | None:
    """The InferenceService as a dict, or None when it does not exist (other API errors raise)."""
    try:
        return client.api_instance.get_namespaced_custom_object(
            constants.KSERVE_GROUP, _VERSION, namespace, constants.KSERVE_PLURAL_INFERENCESERVICE, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise RuntimeError(f"reading InferenceService {namespace}/{name} failed: {exc.status} {exc.reason}") from None
