"""The deploy step's rollout, through the real kserve SDK, against a fake API server.

The fake (tests/fakes/kube_api.py) stores InferenceServices, plays KServe's controller (one
predictor Deployment per InferenceService) and the Deployment controller (a rollout takes
several polls), and applies manifests the way ``kubectl apply`` does. ``KServeClient`` runs
unchanged against it. The manifests are rendered by ``kubectl kustomize``, as they are applied.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kserve import KServeClient

from fakes.kube_api import (
    LAST_APPLIED,
    FakeKubeApi,
    base_inference_service,
    merge_patch,
    serving,
    three_way_merge_patch,
)
from ml_cloud_optimizer.components._deploy import (
    HOLDOUT_MAE_ANNOTATION,
    MODEL_URI_ANNOTATION,
    ROLLOUT_ANNOTATION,
    STORAGE_URI_ANNOTATION,
    Candidate,
    deploy_champion,
    storage_uri_for,
)

ROOT = Path(__file__).resolve().parents[2]
NS = "mlco"
NAME = "workload-forecaster"
OVERLAYS = {"dev": ROOT / "manifests" / "overlays" / "dev", "prod": ROOT / "manifests" / "overlays" / "prod"}
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"  # kserve pkg/constants/constants.go


class Scorer:
    """Stands in for scoring candidate and deployed model on one hold-out; remembers what it was asked.

    ``mae`` is the deployed model's MAE (None: it cannot be loaded, and scoring raises as
    ``registry.compare_with_registered`` does); the candidate scores what its ``Candidate`` says.
    """

    def __init__(self, mae, candidate_mae=None):
        self.mae = mae
        self.candidate_mae = candidate_mae
        self.asked: list[str] = []

    def __call__(self, deployed_uri: str):
        self.asked.append(deployed_uri)
        if self.mae is None:
            raise RuntimeError(f"the deployed model {deployed_uri} could not be loaded")
        return self.candidate_mae, self.mae


@pytest.fixture
def kube(tmp_path):
    with FakeKubeApi() as server:
        server.client = KServeClient(config_file=str(server.kubeconfig(tmp_path)))
        yield server


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    """The InferenceService each overlay renders (``kubectl kustomize``), as ``kubectl apply -k`` sends it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not found: it renders the manifests")
    found = {}
    for name, path in OVERLAYS.items():
        out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=True)
        (found[name],) = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "InferenceService"]
    return found


def deploy(kube, candidate, scorer, **kwargs):
    if scorer.candidate_mae is None:
        scorer.candidate_mae = candidate.holdout_mae
    kwargs = {"timeout_s": 5, "poll_s": 0.02, **kwargs}
    return deploy_champion(kube.client, candidate, name=NAME, namespace=NS, compare=scorer, **kwargs)


def candidate(version: int, mae: float) -> Candidate:
    return Candidate(f"s3://mlpipeline/v2/artifacts/run-{version}/bundle", f"models:/{NAME}/{version}", mae, "lightgbm")


def put_serving(kube, served: Candidate, isvc: dict | None = None) -> dict:
    """An InferenceService the manifests created, serving ``served`` after a finished rollout."""
    stored = kube.put(serving(isvc or base_inference_service(), served), namespace=NS)
    kube.requests.clear()
    return stored


def served_state(kube) -> dict:
    """What the InferenceService says it serves, and what its predictor pods load."""
    isvc = kube.objects[(NS, NAME)]
    annotations = isvc["metadata"].get("annotations", {})
    return {
        "spec": isvc["spec"]["predictor"]["model"].get("storageUri"),
        "annotated": annotations.get(STORAGE_URI_ANNOTATION),
        "model": annotations.get(MODEL_URI_ANNOTATION),
        "pods": kube.predictor(NS, NAME)["spec"]["template"]["metadata"]["annotations"].get(SOURCE_URI),
    }


def rolled_out(deployment: dict) -> bool:
    """``kubectl rollout status`` says done (kubectl pkg/polymorphichelpers/rollout_status.go)."""
    status, wanted = deployment["status"], deployment["spec"]["replicas"]
    return (
        status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        and status.get("updatedReplicas", 0)
        == status.get("replicas", 0)
        == status.get("availableReplicas", 0)
        == wanted
    )


# ---------------------------------------------------------------------------- the gate


def test_a_better_champion_patches_only_the_model_and_annotations(kube):
    before = put_serving(kube, candidate(1, 0.05))
    before = copy.deepcopy(before["spec"]["predictor"])
    scorer = Scorer(mae=0.05)
    result = deploy(kube, candidate(2, 0.04), scorer)
    assert result.action == "patched" and result.deployed_mae == 0.05
    assert kube.writes() == ["PATCH", "PATCH"]  # the model, then (rolled out) the annotations
    assert scorer.asked == [f"models:/{NAME}/1"]
    after = kube.objects[(NS, NAME)]
    assert after["metadata"]["generation"] == 2 and result.generation == 2
    assert after["spec"]["predictor"]["model"]["storageUri"].endswith("run-2/bundle")
    assert after["metadata"]["annotations"][HOLDOUT_MAE_ANNOTATION] == "0.04"
    assert ROLLOUT_ANNOTATION not in after["metadata"]["annotations"]
    assert result.url == f"http://{NAME}.{NS}.example.com"
    # What the manifests own is left as it was.
    before["model"].pop("storageUri")
    after["spec"]["predictor"]["model"].pop("storageUri")
    assert after["spec"]["predictor"] == before


@pytest.mark.parametrize("deployed_mae, new_mae", [(0.04, 0.05), (0.04, 0.04)])
def test_a_champion_that_does_not_beat_the_deployed_one_changes_nothing(kube, deployed_mae, new_mae):
    stored_before = put_serving(kube, candidate(1, deployed_mae))
    snapshot = copy.deepcopy(stored_before)
    result = deploy(kube, candidate(2, new_mae), Scorer(mae=deployed_mae))
    assert result.action == "skipped"
    assert "not better" in result.reason
    assert kube.writes() == []
    assert kube.objects[(NS, NAME)]["spec"] == snapshot["spec"]
    assert kube.objects[(NS, NAME)]["metadata"] == snapshot["metadata"]
    assert result.url == f"http://{NAME}.{NS}.example.com"  # what keeps serving


def test_the_same_model_is_not_redeployed(kube):
    put_serving(kube, candidate(3, 0.04))
    scorer = Scorer(mae=0.04)
    result = deploy(kube, candidate(3, 0.04), scorer)
    assert result.action == "skipped" and "already deployed" in result.reason
    assert scorer.asked == [] and kube.writes() == []


def test_a_deployed_model_that_cannot_be_loaded_fails_the_step_and_replaces_nothing(kube):
    """Defect k: a load error used to count as "cannot be scored" and let the candidate replace it unvetted."""
    put_serving(kube, candidate(1, 0.04))
    scorer = Scorer(mae=None)
    with pytest.raises(RuntimeError, match="could not be loaded"):
        deploy(kube, candidate(2, 0.09), scorer)
    assert scorer.asked == [f"models:/{NAME}/1"]
    assert kube.writes() == []
    assert served_state(kube)["model"] == f"models:/{NAME}/1"


@pytest.mark.slow
def test_compare_with_registered_raises_when_the_deployed_model_will_not_load(tmp_path, monkeypatch):
    """Defect k, in the step's own scoring: it raised nothing and returned None, which meant "replace"."""
    from fleets import make_small_fleet
    from ml_cloud_optimizer.pipeline_steps.registry import compare_with_registered

    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(RuntimeError, match="models:/mlco-forecaster/41 could not be loaded"):
        compare_with_registered(
            str(tmp_path / "no-bundle"),
            "models:/mlco-forecaster/41",
            make_small_fleet(500),
            holdout_fraction=0.2,
            horizons=[1, 12],
            tracking_uri="",
        )


def test_nothing_served_yet_is_the_only_unvetted_rollout(kube, rendered):
    """After ``kubectl apply -k`` the InferenceService has no model: the first champion goes out unscored."""
    kube.apply(rendered["dev"], NS)
    kube.requests.clear()
    scorer = Scorer(mae=0.01)  # would win every comparison, were one made
    result = deploy(kube, candidate(1, 0.05), scorer)
    assert result.action == "patched" and "nothing is served" in result.reason
    assert scorer.asked == []
    assert served_state(kube) == {
        "spec": candidate(1, 0).storage_uri,
        "annotated": candidate(1, 0).storage_uri,
        "model": f"models:/{NAME}/1",
        "pods": candidate(1, 0).storage_uri,
    }
    assert result.url == f"http://{NAME}.{NS}.example.com"


def test_a_missing_inferenceservice_fails_the_step_and_creates_nothing(kube):
    with pytest.raises(RuntimeError, match="apply the manifests first"):
        deploy(kube, candidate(1, 0.05), Scorer(mae=None))
    assert kube.writes() == [] and kube.objects == {}


def test_a_model_the_annotations_do_not_name_is_not_replaced_unvetted(kube):
    """Someone set storageUri by hand: the step cannot tell what serves, so it neither compares nor replaces."""
    isvc = serving(base_inference_service(), candidate(1, 0.05))
    isvc["spec"]["predictor"]["model"]["storageUri"] = "s3://elsewhere/model"
    kube.put(isvc, namespace=NS)
    kube.requests.clear()
    with pytest.raises(RuntimeError, match="annotations do not name"):
        deploy(kube, candidate(2, 0.01), Scorer(mae=0.05))
    assert kube.writes() == []


def test_kfp_minio_uris_become_s3_for_the_storage_initializer():
    assert storage_uri_for("minio://mlpipeline/v2/artifacts/x/bundle") == "s3://mlpipeline/v2/artifacts/x/bundle"
    assert storage_uri_for("gs://bucket/model") == "gs://bucket/model"


def test_the_decision_uses_scores_on_the_same_rows_not_the_recorded_ones(kube):
    put_serving(kube, candidate(1, 0.05))
    # Its own evaluation recorded 0.03, but on the rows both models can forecast it does worse.
    result = deploy(kube, candidate(2, 0.03), Scorer(mae=0.05, candidate_mae=0.06))
    assert result.action == "skipped" and kube.writes() == []


# ---------------------------------------------------------------------------- re-apply (defect d)


def test_the_fakes_apply_is_kubectls_three_way_merge():
    """Fields the last file set and this one drops go; fields this file sets win; fields others set stay."""
    original = {"spec": {"a": 1, "b": 2, "list": [1, 2]}}
    modified = {"spec": {"a": 10, "list": [3]}}
    current = {"spec": {"a": 1, "b": 2, "list": [1, 2], "mine": "kept"}, "status": {"x": 1}}
    patch = three_way_merge_patch(original, modified, current)
    assert patch == {"spec": {"a": 10, "b": None, "list": [3]}}
    assert merge_patch(current, patch) == {"spec": {"a": 10, "list": [3], "mine": "kept"}, "status": {"x": 1}}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_manifests_never_set_what_the_rollout_owns(rendered, overlay):
    isvc = rendered[overlay]
    assert "storageUri" not in isvc["spec"]["predictor"]["model"]
    assert not [k for k in isvc["metadata"].get("annotations", {}) if k.startswith("mlco.io/")]


def test_reapplying_the_manifests_keeps_the_rollout_and_its_annotations(kube, rendered):
    """Apply, roll out, apply again: what serves and what the annotations name still agree.

    Before, the manifests set storageUri: the re-apply put theirs back while the annotation
    kept naming the rolled-out model, and the next gate compared against a model not serving.
    """
    manifest = rendered["dev"]
    kube.apply(manifest, NS)
    first = candidate(1, 0.05)
    deploy(kube, first, Scorer(mae=None))
    generation = kube.objects[(NS, NAME)]["metadata"]["generation"]

    kube.apply(manifest, NS)
    state = served_state(kube)
    assert state == {
        "spec": first.storage_uri,
        "annotated": first.storage_uri,
        "model": first.model_uri,
        "pods": first.storage_uri,
    }
    assert kube.objects[(NS, NAME)]["metadata"]["generation"] == generation  # nothing for KServe to roll

    # A changed file still wins on its own fields, and still leaves the rollout alone.
    changed = copy.deepcopy(manifest)
    changed["spec"]["predictor"]["model"]["resources"]["limits"]["memory"] = "3Gi"
    kube.apply(changed, NS)
    live = kube.objects[(NS, NAME)]
    assert live["spec"]["predictor"]["model"]["resources"]["limits"]["memory"] == "3Gi"
    assert served_state(kube)["spec"] == served_state(kube)["annotated"] == first.storage_uri

    # The next gate compares against the model that is serving.
    scorer = Scorer(mae=0.05)
    deploy(kube, candidate(2, 0.04), scorer)
    assert scorer.asked == [first.model_uri]
    kube.apply(changed, NS)
    assert served_state(kube) == {
        "spec": candidate(2, 0).storage_uri,
        "annotated": candidate(2, 0).storage_uri,
        "model": f"models:/{NAME}/2",
        "pods": candidate(2, 0).storage_uri,
    }


# ---------------------------------------------------------------------------- one spec (defect n)

_SERVER_FIELDS = ("generation", "resourceVersion", "uid")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_the_rollout_leaves_the_rendered_manifest_as_it_is_but_for_what_it_owns(kube, rendered, overlay):
    """The manifests are the one InferenceService spec: the step changes storageUri and mlco.io/ annotations only."""
    manifest = rendered[overlay]
    kube.apply(manifest, NS)
    deploy(kube, candidate(1, 0.05), Scorer(mae=None))
    live = copy.deepcopy(kube.objects[(NS, NAME)])
    live.pop("status")
    for key in _SERVER_FIELDS:
        live["metadata"].pop(key)
    annotations = live["metadata"]["annotations"]
    assert json.loads(annotations.pop(LAST_APPLIED)) == manifest
    owned = {k: annotations.pop(k) for k in list(annotations) if k.startswith("mlco.io/")}
    assert owned[MODEL_URI_ANNOTATION] == f"models:/{NAME}/1"
    assert live["spec"]["predictor"]["model"].pop("storageUri") == candidate(1, 0).storage_uri
    assert live == manifest


# ---------------------------------------------------------------------------- readiness (defect f)


def _prod_like() -> dict:
    isvc = base_inference_service()
    isvc["spec"]["predictor"]["minReplicas"] = isvc["spec"]["predictor"]["maxReplicas"] = 2
    return isvc


def test_the_step_returns_only_after_the_predictor_deployment_rolled_out(kube):
    """The InferenceService stays Ready and copies the Deployment's observedGeneration: only the Deployment tells."""
    put_serving(kube, candidate(1, 0.05), _prod_like())
    kube.autoscale(NS, NAME, 3)
    kube.autoscale(NS, NAME, 2)  # the Deployment is at generation 3, the InferenceService at 1
    new = candidate(2, 0.04)
    deploy(kube, new, Scorer(mae=0.05))
    # The annotations named the candidate only once its rollout was complete.
    (named,) = [
        dep
        for _, isvc, dep in kube.history
        if isvc["metadata"]["annotations"].get(MODEL_URI_ANNOTATION) == new.model_uri
    ]
    assert named["spec"]["template"]["metadata"]["annotations"][SOURCE_URI] == new.storage_uri
    assert rolled_out(named), named["status"]
    deployment = kube.predictor(NS, NAME)
    assert deployment["spec"]["template"]["metadata"]["annotations"][SOURCE_URI] == new.storage_uri
    assert rolled_out(deployment), deployment["status"]
    polls = [p for m, p, _ in kube.requests if m == "GET" and "/deployments" in p]
    assert len(polls) >= 4  # not reconciled, surge, old terminating, available: the rollout took several polls


def test_an_unfinished_rollout_fails_the_step_and_the_annotations_keep_naming_the_served_model(tmp_path):
    with FakeKubeApi(become_ready=False) as kube:
        kube.client = KServeClient(config_file=str(kube.kubeconfig(tmp_path)))
        put_serving(kube, candidate(1, 0.05))
        with pytest.raises(RuntimeError, match="Timeout"):
            deploy(kube, candidate(2, 0.04), Scorer(mae=0.05), timeout_s=0.5)
        annotations = kube.objects[(NS, NAME)]["metadata"]["annotations"]
        assert annotations[MODEL_URI_ANNOTATION] == f"models:/{NAME}/1"
        assert json.loads(annotations[ROLLOUT_ANNOTATION])["modelUri"] == f"models:/{NAME}/2"
        # Ready all along: the old pod serves while the new one never becomes available.
        assert kube.objects[(NS, NAME)]["status"]["conditions"][0]["status"] == "True"


def test_a_retried_step_resumes_its_rollout_and_names_the_candidate_when_done(tmp_path):
    with FakeKubeApi(become_ready=False) as kube:
        kube.client = KServeClient(config_file=str(kube.kubeconfig(tmp_path)))
        put_serving(kube, candidate(1, 0.05))
        scorer = Scorer(mae=0.05)
        with pytest.raises(RuntimeError, match="Timeout"):
            deploy(kube, candidate(2, 0.04), scorer, timeout_s=0.3)
        kube.become_ready = True  # the image pull that held it up went through
        kube.requests.clear()
        result = deploy(kube, candidate(2, 0.04), scorer)
        assert result.action == "patched" and "resuming" in result.reason
        assert scorer.asked == [f"models:/{NAME}/1"]  # vetted once, by the first attempt
        assert kube.writes() == ["PATCH"]  # the annotations only
        assert served_state(kube)["model"] == f"models:/{NAME}/2"
        assert rolled_out(kube.predictor(NS, NAME))


def test_a_rollout_past_its_progress_deadline_fails_at_once(tmp_path):
    with FakeKubeApi(become_ready=False, progress_deadline_polls=2) as kube:
        kube.client = KServeClient(config_file=str(kube.kubeconfig(tmp_path)))
        put_serving(kube, candidate(1, 0.05))
        with pytest.raises(RuntimeError, match="progress deadline"):
            deploy(kube, candidate(2, 0.04), Scorer(mae=0.05), timeout_s=30)


def test_another_runs_rollout_is_named_when_finished_and_blocks_when_not(tmp_path):
    with FakeKubeApi(become_ready=False) as kube:
        kube.client = KServeClient(config_file=str(kube.kubeconfig(tmp_path)))
        put_serving(kube, candidate(1, 0.05))
        with pytest.raises(RuntimeError, match="Timeout"):
            deploy(kube, candidate(2, 0.04), Scorer(mae=0.05), timeout_s=0.3)
        kube.requests.clear()
        with pytest.raises(RuntimeError, match="has not finished"):
            deploy(kube, candidate(3, 0.03), Scorer(mae=0.05))
        assert kube.writes() == []

        kube.become_ready = True
        for _ in range(3):
            kube.client.get(NAME, namespace=NS)  # time passes; the rollout of 2 completes
        scorer = Scorer(mae=0.04)
        result = deploy(kube, candidate(3, 0.03), scorer)
        assert scorer.asked == [f"models:/{NAME}/2"]  # the gate compares with what now serves
        assert result.action == "patched" and served_state(kube)["model"] == f"models:/{NAME}/3"
