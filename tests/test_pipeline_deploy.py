"""The deploy step's create / patch / skip decision, through the real kserve SDK, against a fake API server.

The fake (tests/fakes/kube_api.py) stores InferenceServices and plays a KServe controller that
reports each new generation ready, so ``KServeClient.create``, ``patch`` and
``wait_isvc_ready`` run unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kserve import KServeClient
from kubernetes.client import ApiClient

from fakes.kube_api import FakeKubeApi
from pipelines.inference_service import (
    HOLDOUT_MAE_ANNOTATION,
    MODEL_URI_ANNOTATION,
    Candidate,
    build_inference_service,
    deploy_champion,
    storage_uri_for,
)

ROOT = Path(__file__).resolve().parents[1]
NS = "mlco"
NAME = "workload-forecaster"


class Scorer:
    """Stands in for scoring candidate and deployed model on one hold-out; remembers what it was asked.

    ``mae`` is the deployed model's MAE (None: it cannot be loaded); the candidate scores what
    its ``Candidate`` says.
    """

    def __init__(self, mae, candidate_mae=None):
        self.mae = mae
        self.candidate_mae = candidate_mae
        self.asked: list[str] = []

    def __call__(self, isvc: dict):
        self.asked.append(isvc["metadata"]["annotations"].get(MODEL_URI_ANNOTATION))
        return None if self.mae is None else (self.candidate_mae, self.mae)


@pytest.fixture
def kube(tmp_path):
    with FakeKubeApi() as server:
        server.client = KServeClient(config_file=str(server.kubeconfig(tmp_path)))
        yield server


def deploy(kube, candidate, scorer, **kwargs):
    if scorer.candidate_mae is None:
        scorer.candidate_mae = candidate.holdout_mae
    return deploy_champion(kube.client, candidate, name=NAME, namespace=NS, compare=scorer,
                           timeout_s=2, poll_s=0.02, **kwargs)


def candidate(version: int, mae: float) -> Candidate:
    return Candidate(f"s3://mlpipeline/v2/artifacts/run-{version}/bundle", f"models:/{NAME}/{version}", mae, "lightgbm")


def test_first_deploy_creates_the_service_and_waits_for_ready(kube):
    scorer = Scorer(mae=None)
    result = deploy(kube, candidate(1, 0.05), scorer)
    assert result.action == "created"
    assert result.url == f"http://{NAME}.{NS}.example.com"
    assert kube.writes() == ["POST"]
    assert scorer.asked == []  # nothing was deployed, so nothing to score
    stored = kube.objects[(NS, NAME)]
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://mlpipeline/v2/artifacts/run-1/bundle"
    assert stored["metadata"]["annotations"][MODEL_URI_ANNOTATION] == f"models:/{NAME}/1"
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_a_better_champion_patches_only_the_model_and_annotations(kube):
    deployed = build_inference_service(NAME, NS, candidate(1, 0.05))
    kube.put(ApiClient().sanitize_for_serialization(deployed))
    before = kube.objects[(NS, NAME)]["spec"]["predictor"]
    scorer = Scorer(mae=0.05)
    result = deploy(kube, candidate(2, 0.04), scorer)
    assert result.action == "patched" and result.deployed_mae == 0.05
    assert kube.writes() == ["PATCH"]
    assert scorer.asked == [f"models:/{NAME}/1"]
    after = kube.objects[(NS, NAME)]
    assert after["metadata"]["generation"] == 2 and result.generation == 2
    assert after["spec"]["predictor"]["model"]["storageUri"].endswith("run-2/bundle")
    assert after["metadata"]["annotations"][HOLDOUT_MAE_ANNOTATION] == "0.04"
    # What the manifests own is left as it was.
    for key in ("minReplicas", "maxReplicas", "serviceAccountName", "labels", "securityContext"):
        assert after["spec"]["predictor"][key] == before[key]
    assert after["spec"]["predictor"]["model"]["resources"] == before["model"]["resources"]


@pytest.mark.parametrize("deployed_mae, new_mae", [(0.04, 0.05), (0.04, 0.04)])
def test_a_champion_that_does_not_beat_the_deployed_one_changes_nothing(kube, deployed_mae, new_mae):
    kube.put(ApiClient().sanitize_for_serialization(
        build_inference_service(NAME, NS, candidate(1, deployed_mae))))
    stored_before = kube.objects[(NS, NAME)]
    result = deploy(kube, candidate(2, new_mae), Scorer(mae=deployed_mae))
    assert result.action == "skipped"
    assert "not better" in result.reason
    assert kube.writes() == []
    assert kube.objects[(NS, NAME)] is stored_before
    assert result.url == f"http://{NAME}.{NS}.example.com"  # what keeps serving


def test_the_same_model_is_not_redeployed(kube):
    kube.put(ApiClient().sanitize_for_serialization(
        build_inference_service(NAME, NS, candidate(3, 0.04))))
    scorer = Scorer(mae=0.04)
    result = deploy(kube, candidate(3, 0.04), scorer)
    assert result.action == "skipped" and "already deployed" in result.reason
    assert scorer.asked == [] and kube.writes() == []


def test_a_deployed_model_that_cannot_be_scored_is_replaced(kube):
    kube.put(ApiClient().sanitize_for_serialization(
        build_inference_service(NAME, NS, candidate(1, 0.04))))
    result = deploy(kube, candidate(2, 0.09), Scorer(mae=None))
    assert result.action == "patched" and "could not be scored" in result.reason
    assert kube.writes() == ["PATCH"]


def test_a_service_that_never_gets_ready_fails_the_step(tmp_path):
    with FakeKubeApi(become_ready=False) as kube:
        client = KServeClient(config_file=str(kube.kubeconfig(tmp_path)))
        with pytest.raises(RuntimeError, match="Timeout"):
            deploy_champion(client, candidate(1, 0.05), name=NAME, namespace=NS, compare=Scorer(None),
                            timeout_s=0.2, poll_s=0.02)


def test_kfp_minio_uris_become_s3_for_the_storage_initializer():
    assert storage_uri_for("minio://mlpipeline/v2/artifacts/x/bundle") == "s3://mlpipeline/v2/artifacts/x/bundle"
    assert storage_uri_for("gs://bucket/model") == "gs://bucket/model"


def test_created_service_matches_the_base_manifest():
    manifest_path = ROOT / "manifests" / "base" / "inferenceservice.yaml"
    if not manifest_path.exists():
        pytest.skip(f"{manifest_path} is missing")
    manifest = yaml.safe_load(manifest_path.read_text())
    built = ApiClient().sanitize_for_serialization(build_inference_service(NAME, NS, candidate(1, 0.05)))
    assert built["metadata"]["name"] == manifest["metadata"]["name"]
    for key, value in manifest["metadata"]["annotations"].items():
        assert built["metadata"]["annotations"][key] == value
    theirs, mine = manifest["spec"]["predictor"], built["spec"]["predictor"]
    for key in ("labels", "serviceAccountName", "automountServiceAccountToken", "securityContext", "scaleMetric",
                "scaleTarget", "minReplicas"):
        assert mine[key] == theirs[key], key
    for key in ("modelFormat", "runtime", "resources", "securityContext", "volumeMounts"):
        assert mine["model"][key] == theirs["model"][key], key


def test_the_decision_uses_scores_on_the_same_rows_not_the_recorded_ones(kube):
    kube.put(ApiClient().sanitize_for_serialization(build_inference_service(NAME, NS, candidate(1, 0.05))))
    # Its own evaluation recorded 0.03, but on the rows both models can forecast it does worse.
    result = deploy(kube, candidate(2, 0.03), Scorer(mae=0.05, candidate_mae=0.06))
    assert result.action == "skipped" and kube.writes() == []
