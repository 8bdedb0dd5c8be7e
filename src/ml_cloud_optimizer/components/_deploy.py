"""Roll the champion out to the KServe InferenceService the manifests define, or leave it alone.

Who owns what. The manifests (``kubectl apply -k``, or a GitOps tool) create the
InferenceService and own every field of it but these, which they never set:

* ``spec.predictor.model.storageUri``: which model the predictor loads;
* the ``mlco.io/`` annotations: which registered model that is (``mlco.io/model-uri``, its
  hold-out MAE and kind, and ``mlco.io/storage-uri``, the location they describe), and
  ``mlco.io/rollout`` while a rollout is under way.

The deploy step writes only those. ``kubectl apply`` computes its patch from the applied file,
the file it applied last time (annotation ``kubectl.kubernetes.io/last-applied-configuration``)
and the live object, and keeps fields that neither file sets, so a re-apply neither reverts a
rollout nor leaves the annotations naming a model that is not serving. KServe accepts an
InferenceService without ``storageUri`` (it is optional for a ``model`` predictor outside
multi-node serving); until the first rollout its predictor has no model and is not ready.

The step never creates the InferenceService: only the manifests know the rest of it (the
overlay's patches, the settings ConfigMap's generated name), and they also create the step's
own namespace, service account and Role. A missing InferenceService fails the step.

One rollout, through the kserve SDK (``KServeClient``, which wants ``V1beta1InferenceService``
objects):

1. Decide what is serving. No ``storageUri``: nothing; the candidate goes out unvetted.
   ``storageUri`` equal to ``mlco.io/storage-uri``: the model ``mlco.io/model-uri`` names,
   which ``compare`` scores against the candidate on the same hold-out rows; an error there
   (the deployed model would not load) fails the step and changes nothing. Anything else is a
   model the step cannot name, and fails the step too.
2. Patch ``storageUri`` and ``mlco.io/rollout`` (the candidate) in one write.
3. Wait for the predictor Deployment's rollout of that model, as ``kubectl rollout status``
   does. The InferenceService's own status cannot tell: its ``observedGeneration`` is copied
   from the Deployment and its Ready condition stays True during a rolling update.
4. Only then name the candidate in the ``mlco.io/`` annotations and drop ``mlco.io/rollout``.

A retried step finds its own unfinished rollout (``storageUri`` and ``mlco.io/rollout`` name
the candidate) and resumes at 3; a later run that finds another run's rollout finished names
that model first, and one that finds it unfinished fails rather than pile a rollout on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kserve import (
    KServeClient,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
    constants,
)
from kserve.configuration import Configuration
from kubernetes.client import V1Deployment, V1ObjectMeta
from kubernetes.client.rest import ApiException

__all__ = [
    "HOLDOUT_MAE_ANNOTATION",
    "MODEL_KIND_ANNOTATION",
    "MODEL_URI_ANNOTATION",
    "ROLLOUT_ANNOTATION",
    "STORAGE_URI_ANNOTATION",
    "Candidate",
    "DeployResult",
    "champion_annotations",
    "deploy_champion",
    "predictor_selector",
    "rollout_status",
    "storage_uri_for",
]

MODEL_URI_ANNOTATION = "mlco.io/model-uri"
HOLDOUT_MAE_ANNOTATION = "mlco.io/holdout-mae"
MODEL_KIND_ANNOTATION = "mlco.io/model-kind"
STORAGE_URI_ANNOTATION = "mlco.io/storage-uri"
ROLLOUT_ANNOTATION = "mlco.io/rollout"

# What KServe puts on the predictor Deployment of an InferenceService in Standard (raw) mode
# (kserve pkg/controller/v1beta1/inferenceservice/components/predictor.go, buildObjectMeta and
# addStorageInitializerAnnotations; keys in pkg/constants/constants.go): the labels
# serving.kserve.io/inferenceservice=<name> and component=predictor, and on the pod template
# the storageUri its storage initializer downloads.
_ISVC_LABEL = f"{constants.KSERVE_GROUP}/inferenceservice"
_COMPONENT_LABEL = "component"
_SOURCE_URI_ANNOTATION = f"internal.{constants.KSERVE_GROUP}/storage-initializer-sourceuri"

_VERSION = constants.KSERVE_V1BETA1_VERSION
_API_VERSION = constants.KSERVE_V1BETA1
# First polls come quickly (a small rollout is done in seconds), later ones every poll_s.
_FIRST_POLL_S = 0.25


@dataclass(frozen=True)
class Candidate:
    """The new champion: where KServe fetches it, how the registry names it, how it scored."""

    storage_uri: str
    model_uri: str
    holdout_mae: float
    kind: str = ""


@dataclass
class DeployResult:
    """What the deploy step did (``patched`` or ``skipped``), why, and the URL serving now."""

    action: str
    reason: str
    url: str = ""
    deployed_mae: float | None = None
    generation: int | None = None
    annotations: dict = field(default_factory=dict)


def storage_uri_for(artifact_uri: str) -> str:
    """KServe's storage initializer reads ``s3://``; KFP names its MinIO artifacts ``minio://``."""
    if artifact_uri.startswith("minio://"):
        return "s3://" + artifact_uri[len("minio://") :]
    return artifact_uri


def champion_annotations(candidate: Candidate) -> dict[str, str]:
    """The annotations that name ``candidate`` as the model the InferenceService serves."""
    return {
        MODEL_URI_ANNOTATION: candidate.model_uri,
        STORAGE_URI_ANNOTATION: candidate.storage_uri,
        HOLDOUT_MAE_ANNOTATION: f"{candidate.holdout_mae:.6g}",
        MODEL_KIND_ANNOTATION: candidate.kind,
    }


def predictor_selector(name: str) -> str:
    """The label selector of the predictor Deployment KServe runs for InferenceService ``name``."""
    return f"{_ISVC_LABEL}={name},{_COMPONENT_LABEL}=predictor"


def rollout_status(deployment: V1Deployment) -> tuple[bool, str]:
    """``(done, message)`` for a Deployment's rollout, by the rules of ``kubectl rollout status``.

    kubectl ``pkg/polymorphichelpers/rollout_status.go`` (``DeploymentStatusViewer``): the
    controller has observed the current spec (``status.observedGeneration >=
    metadata.generation``), every replica runs the new template, no old replica is left and
    every updated replica is available.

    Raises:
        RuntimeError: the Deployment exceeded its progress deadline (it will not finish by itself).
    """
    name, status = deployment.metadata.name, deployment.status
    if (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return False, f"waiting for Deployment {name}'s spec update to be observed"
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            raise RuntimeError(f"Deployment {name} exceeded its progress deadline: {condition.message}")
    wanted = deployment.spec.replicas
    updated, replicas, available = status.updated_replicas or 0, status.replicas or 0, status.available_replicas or 0
    if wanted is not None and updated < wanted:
        return False, f"Deployment {name}: {updated} of {wanted} new replicas updated"
    if replicas > updated:
        return False, f"Deployment {name}: {replicas - updated} old replicas pending termination"
    if available < updated:
        return False, f"Deployment {name}: {available} of {updated} updated replicas available"
    return True, f"Deployment {name} rolled out"


def deploy_champion(
    client: KServeClient,
    candidate: Candidate,
    *,
    name: str,
    namespace: str,
    compare: Callable[[str], tuple[float, float]],
    timeout_s: float = 600,
    poll_s: float = 5.0,
) -> DeployResult:
    """Roll ``candidate`` out to the InferenceService if it beats the model serving there.

    Args:
        client: a ``KServeClient`` (in-cluster config inside a pipeline pod).
        candidate: the new champion.
        name: InferenceService name.
        namespace: its namespace.
        compare: given the registered model now serving (``models:/NAME/VERSION``),
            ``(candidate MAE, deployed MAE)`` on the same hold-out rows. It raises when the
            deployed model cannot be scored: the step then fails and replaces nothing.
        timeout_s: how long to wait for the rollout to finish.
        poll_s: most seconds between two looks at the rollout.

    Returns:
        A ``DeployResult``; ``url`` is the InferenceService's URL.

    Raises:
        RuntimeError: the InferenceService is missing, the model it serves cannot be named,
            another rollout is unfinished, the API refused a call, or the rollout did not
            finish in time (the message begins with ``Timeout``).
    """
    where = f"InferenceService {namespace}/{name}"
    isvc = _get(client, name, namespace)
    if isvc is None:
        raise RuntimeError(
            f"{where} does not exist: apply the manifests first (kubectl apply -k); the deploy step"
            " rolls models out onto the InferenceService they define and never creates one"
        )
    deadline = time.monotonic() + timeout_s
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    serving = (((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri")
    pending = _pending_rollout(annotations)
    deployed_mae = None

    if (
        pending is not None
        and serving == pending.storage_uri == candidate.storage_uri
        and pending.model_uri == candidate.model_uri
    ):
        why = f"resuming the rollout of {candidate.model_uri} that an earlier attempt started"
    else:
        if serving is None:
            deployed = None
        elif serving == annotations.get(STORAGE_URI_ANNOTATION) and annotations.get(MODEL_URI_ANNOTATION):
            deployed = annotations[MODEL_URI_ANNOTATION]
        elif pending is not None and serving == pending.storage_uri:
            done, message = _rollout_of(client, name, namespace, serving)
            if not done:
                raise RuntimeError(
                    f"{where}: the rollout of {pending.model_uri} ({serving}) has not finished"
                    f" ({message}); not starting another on top of it"
                )
            _patch_annotations(client, name, namespace, pending)
            deployed = pending.model_uri
        else:
            raise RuntimeError(
                f"{where} serves {serving}, which its annotations do not name ({STORAGE_URI_ANNOTATION}="
                f"{annotations.get(STORAGE_URI_ANNOTATION)!r}): the candidate cannot be vetted against an unknown"
                f" model. Annotate the model that is serving ({MODEL_URI_ANNOTATION}, {STORAGE_URI_ANNOTATION}), or"
                " remove spec.predictor.model.storageUri to let the next run roll out without a comparison"
            )

        if deployed == candidate.model_uri:
            return _skipped(isvc, f"{candidate.model_uri} is already deployed", None)
        if deployed is None:
            why = f"nothing is served by {where} yet"
        else:
            ours, deployed_mae = compare(deployed)
            if not ours < deployed_mae:
                return _skipped(
                    isvc,
                    f"the deployed model scores {deployed_mae:.5g} MAE on this hold-out and the"
                    f" candidate {ours:.5g}: not better, nothing changed",
                    deployed_mae,
                )
            why = f"candidate {ours:.5g} MAE beats the deployed {deployed_mae:.5g} on the same rows"
        _patch(
            client,
            name,
            namespace,
            _isvc(
                annotations={ROLLOUT_ANNOTATION: _rollout_value(candidate)},
                spec=V1beta1InferenceServiceSpec(
                    predictor=V1beta1PredictorSpec(model=_storage_only(candidate.storage_uri))
                ),
            ),
        )

    _wait_for_rollout(client, name, namespace, candidate.storage_uri, deadline, poll_s)
    _patch_annotations(client, name, namespace, candidate)
    ready = _get(client, name, namespace) or {}
    return DeployResult(
        "patched",
        why,
        url=(ready.get("status") or {}).get("url", ""),
        deployed_mae=deployed_mae,
        generation=(ready.get("metadata") or {}).get("generation"),
        annotations=dict((ready.get("metadata") or {}).get("annotations") or {}),
    )


def _wait_for_rollout(
    client: KServeClient, name: str, namespace: str, storage_uri: str, deadline: float, poll_s: float
) -> None:
    """Return once the predictor Deployment runs ``storage_uri`` on every replica and the service is Ready."""
    delay = min(_FIRST_POLL_S, poll_s)
    while True:
        done, message = _rollout_of(client, name, namespace, storage_uri)
        if done:
            if client.is_isvc_ready(name, namespace=namespace, version=_VERSION):
                return
            message = f"InferenceService {namespace}/{name} is not Ready"
        if time.monotonic() + delay > deadline:
            raise RuntimeError(
                f"Timeout waiting for the rollout of {storage_uri} to InferenceService {namespace}/{name}: {message}"
            )
        time.sleep(delay)
        delay = min(delay * 2, poll_s)


def _rollout_of(client: KServeClient, name: str, namespace: str, storage_uri: str) -> tuple[bool, str]:
    """Whether the predictor Deployment(s) whose pods load ``storage_uri`` have rolled out."""
    try:
        found = client.app_api.list_namespaced_deployment(namespace, label_selector=predictor_selector(name)).items
    except ApiException as exc:
        raise RuntimeError(
            f"listing the predictor Deployments of {namespace}/{name} failed: {exc.status}"
            f" {exc.reason} (the step's service account needs get/list/watch on deployments)"
        ) from None
    ours = [d for d in found if _template_storage_uri(d) == storage_uri]
    if not ours:
        return False, f"no predictor Deployment of {namespace}/{name} loads {storage_uri} yet"
    for deployment in ours:
        done, message = rollout_status(deployment)
        if not done:
            return False, message
    return True, message


def _template_storage_uri(deployment: V1Deployment) -> str | None:
    meta = deployment.spec.template.metadata
    return ((meta.annotations if meta else None) or {}).get(_SOURCE_URI_ANNOTATION)


def _rollout_value(candidate: Candidate) -> str:
    return json.dumps(
        {
            "storageUri": candidate.storage_uri,
            "modelUri": candidate.model_uri,
            "holdoutMae": candidate.holdout_mae,
            "kind": candidate.kind,
        },
        sort_keys=True,
    )


def _pending_rollout(annotations: dict) -> Candidate | None:
    text = annotations.get(ROLLOUT_ANNOTATION)
    if not text:
        return None
    try:
        value = json.loads(text)
        return Candidate(value["storageUri"], value["modelUri"], float(value["holdoutMae"]), value.get("kind", ""))
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(f"annotation {ROLLOUT_ANNOTATION} is not what the deploy step writes: {text!r}") from None


def _patch_annotations(client: KServeClient, name: str, namespace: str, candidate: Candidate) -> None:
    """Name ``candidate`` as the served model and drop the rollout marker (null deletes in a merge patch)."""
    _patch(client, name, namespace, _isvc(annotations={**champion_annotations(candidate), ROLLOUT_ANNOTATION: None}))


def _storage_only(storage_uri: str) -> V1beta1ModelSpec:
    """A model spec holding ``storageUri`` alone, so the merge patch sets nothing the manifests own.

    The SDK insists on ``modelFormat`` client-side; the patch must leave it to the manifests.
    """
    unchecked = Configuration()
    unchecked.client_side_validation = False
    return V1beta1ModelSpec(storage_uri=storage_uri, name=None, local_vars_configuration=unchecked)


def _isvc(*, annotations: dict, spec: V1beta1InferenceServiceSpec | None = None) -> V1beta1InferenceService:
    return V1beta1InferenceService(
        api_version=_API_VERSION,
        kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=V1ObjectMeta(annotations=annotations),
        spec=spec,
    )


def _patch(client: KServeClient, name: str, namespace: str, body: V1beta1InferenceService) -> dict:
    return client.patch(name, body, namespace=namespace)


def _skipped(existing: dict, reason: str, deployed_mae: float | None) -> DeployResult:
    return DeployResult(
        "skipped",
        reason,
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
