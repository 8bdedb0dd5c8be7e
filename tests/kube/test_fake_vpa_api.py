"""The fake VPA API server (tests/fakes/vpa_api.py), through the real ``kubernetes`` client.

Each test pins one rule of the API server that a recommender's status writes depend on: what a
create keeps, what ``/status`` may change, optimistic concurrency, schema validation and pruning,
and that injected failures reach the client as it would see a real one.
"""

from __future__ import annotations

import copy
import json

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from fakes.vpa_api import API_VERSION, FakeVpaApi, vpa

GROUP, VERSION, PLURAL = "autoscaling.k8s.io", "v1", "verticalpodautoscalers"
NS = "team-a"
RECOMMENDATION = {
    "recommendation": {
        "containerRecommendations": [
            {"containerName": "app", "target": {"cpu": "250m", "memory": "512Mi"}, "lowerBound": {"cpu": "100m"}}
        ]
    }
}


@pytest.fixture
def api():
    with FakeVpaApi() as server:
        yield server


@pytest.fixture
def crs(api, tmp_path):
    """``CustomObjectsApi`` on a client built from the fake's kubeconfig, as the recommender builds it."""
    api_client = config.new_client_from_config(config_file=str(api.kubeconfig(tmp_path)))
    yield client.CustomObjectsApi(api_client)
    api_client.close()


def patch_status(crs, name, body, namespace=NS):
    return crs.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)


def json_patch_status(crs, name, operations, content_type="application/json-patch+json"):
    """A JSON patch on ``/status``, as the upstream recommender sends it (``patchVpaStatus``)."""
    return crs.api_client.call_api(
        f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{name}/status",
        "PATCH",
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=operations,
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def error_status(excinfo) -> dict:
    return json.loads(excinfo.value.body)


def test_create_drops_status_and_sets_what_the_server_owns(api, crs):
    body = vpa(NS, "web")
    body["status"] = RECOMMENDATION
    body["metadata"].update(generation=7, uid="mine")

    created = crs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)

    assert api.requests[-1].body["status"] == RECOMMENDATION  # it was sent ...
    assert "status" not in created and "status" not in api.get(NS, "web")  # ... and dropped
    meta = created["metadata"]
    assert meta["generation"] == 1 and meta["uid"] not in ("", "mine")
    assert meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z")
    assert created["spec"] == body["spec"]


def test_a_status_patch_changes_only_status_and_not_generation(api, crs):
    before = api.put(vpa(NS, "web"))

    result = patch_status(
        crs,
        "web",
        {
            "status": RECOMMENDATION,
            "spec": {"updatePolicy": {"updateMode": "Auto"}},
            "metadata": {"labels": {"sneaky": "yes"}, "generation": 9},
        },
    )

    stored = api.get(NS, "web")
    assert stored == result
    assert stored["status"] == RECOMMENDATION
    assert stored["spec"] == before["spec"]  # spec updateMode still Off
    assert "labels" not in stored["metadata"]
    assert stored["metadata"]["generation"] == 1
    assert int(stored["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert api.status_writes()[-1].content_type == "application/merge-patch+json"


def test_the_upstream_recommenders_json_patch_sets_status(api, crs):
    api.put(vpa(NS, "web"))

    json_patch_status(crs, "web", [{"op": "add", "path": "/status", "value": RECOMMENDATION}])
    json_patch_status(crs, "web", [{"op": "replace", "path": "/status/recommendation", "value": {}}])

    stored = api.get(NS, "web")
    assert stored["status"] == {"recommendation": {}}
    assert stored["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as excinfo:  # replace needs the member to exist (RFC 6902)
        json_patch_status(crs, "web", [{"op": "replace", "path": "/status/conditions", "value": []}])
    assert excinfo.value.status == 422
    assert api.get(NS, "web") == stored


def test_a_strategic_merge_patch_is_refused_as_for_any_custom_resource(api, crs):
    api.put(vpa(NS, "web"))
    with pytest.raises(ApiException) as excinfo:
        json_patch_status(crs, "web", {"status": RECOMMENDATION}, "application/strategic-merge-patch+json")
    assert excinfo.value.status == 415
    assert error_status(excinfo)["reason"] == "UnsupportedMediaType"


def test_the_main_resource_cannot_change_status_and_only_spec_bumps_generation(api, crs):
    stored = api.put({**vpa(NS, "web"), "status": RECOMMENDATION})

    labelled = crs.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "web", {"metadata": {"labels": {"team": "a"}}, "status": {"recommendation": None}}
    )
    assert labelled["status"] == RECOMMENDATION
    assert labelled["metadata"]["generation"] == 1  # a metadata change is no spec change
    assert labelled["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]

    changed = crs.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "web", {"spec": {"updatePolicy": {"updateMode": "Auto"}}}
    )
    assert changed["spec"]["updatePolicy"]["updateMode"] == "Auto"
    assert changed["metadata"]["generation"] == 2
    assert api.get(NS, "web")["status"] == RECOMMENDATION


def test_a_put_with_a_stale_resource_version_gets_409(api, crs):
    api.put(vpa(NS, "web"))
    read = crs.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "web")

    first = crs.replace_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "web", {**read, "status": {}})
    with pytest.raises(ApiException) as excinfo:
        crs.replace_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "web", {**read, **RECOMMENDATION})
    status = error_status(excinfo)

    assert excinfo.value.status == 409
    assert status["kind"] == "Status" and status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]
    assert api.get(NS, "web") == first


def test_a_put_without_resource_version_is_invalid_for_a_custom_resource(api, crs):
    read = api.put(vpa(NS, "web"))
    del read["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as excinfo:
        crs.replace_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "web", {**read, "status": {}})
    assert excinfo.value.status == 422
    assert error_status(excinfo)["details"]["causes"][0]["field"] == "metadata.resourceVersion"


@pytest.mark.parametrize(
    "container, field, reason",
    [
        ({"containerName": "app", "target": {"cpu": "lots"}}, "target.cpu", "FieldValueInvalid"),
        ({"containerName": "app", "target": {"cpu": ["1"]}}, "target.cpu", "FieldValueTypeInvalid"),
        ({"containerName": "app"}, "target", "FieldValueRequired"),
    ],
)
def test_an_invalid_status_gets_422_naming_the_field_and_changes_nothing(api, crs, container, field, reason):
    api.put(vpa(NS, "web"))
    patch_status(crs, "web", {"status": RECOMMENDATION})
    before = api.get(NS, "web")

    with pytest.raises(ApiException) as excinfo:
        patch_status(crs, "web", {"status": {"recommendation": {"containerRecommendations": [container]}}})
    status = error_status(excinfo)

    assert excinfo.value.status == 422 and status["reason"] == "Invalid"
    path = f"status.recommendation.containerRecommendations[0].{field}"
    assert status["details"]["causes"] == [
        {"reason": reason, "message": status["details"]["causes"][0]["message"], "field": path}
    ]
    assert status["message"].startswith(f'VerticalPodAutoscaler.autoscaling.k8s.io "web" is invalid: {path}: ')
    assert api.get(NS, "web") == before


def test_a_recommendation_without_container_name_is_valid_as_the_crd_says(api, crs):
    """The CRD requires only ``target`` of a container recommendation; the fake adds no rule of its own."""
    api.put(vpa(NS, "web"))
    result = patch_status(
        crs, "web", {"status": {"recommendation": {"containerRecommendations": [{"target": {"cpu": 1}}]}}}
    )
    assert result["status"]["recommendation"]["containerRecommendations"] == [{"target": {"cpu": 1}}]


def test_unknown_fields_are_pruned_not_rejected(api, crs):
    body = vpa(NS, "web")
    body["spec"]["bogus"] = 1
    body["metadata"]["bogus"] = 2
    crs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)

    recommendation = copy.deepcopy(RECOMMENDATION)
    recommendation["recommendation"]["containerRecommendations"][0]["confidence"] = 0.9
    result = patch_status(crs, "web", {"status": {**recommendation, "forecast": "peak"}})

    stored = api.get(NS, "web")
    assert result == stored
    assert "bogus" not in stored["spec"] and "bogus" not in stored["metadata"]
    assert stored["status"] == RECOMMENDATION


@pytest.mark.parametrize("code, reason", [(500, "InternalError"), (503, "ServiceUnavailable"), (409, "Conflict")])
def test_injected_status_failures_reach_the_client(api, crs, code, reason):
    api.put(vpa(NS, "web"))
    api.fail_status_writes(code, times=2)

    for _ in range(2):
        with pytest.raises(ApiException) as excinfo:
            patch_status(crs, "web", {"status": RECOMMENDATION})
        assert excinfo.value.status == code and error_status(excinfo)["reason"] == reason
        assert "status" not in api.get(NS, "web")
    patch_status(crs, "web", {"status": RECOMMENDATION})

    assert api.get(NS, "web")["status"] == RECOMMENDATION
    assert [(r.method, r.content_type) for r in api.status_writes()] == [("PATCH", "application/merge-patch+json")] * 3
    assert api.status_writes()[0].body == {"status": RECOMMENDATION}


def test_listing_all_namespaces_and_one(api, crs):
    api.put(vpa("team-b", "batch", target_kind="StatefulSet"))
    api.put(vpa(NS, "web"))
    api.put(vpa(NS, "other", recommenders=()))

    everything = crs.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    mine = crs.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)

    assert everything["kind"] == "VerticalPodAutoscalerList" and everything["apiVersion"] == API_VERSION
    assert int(everything["metadata"]["resourceVersion"]) >= 3
    assert {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everything["items"]} == {
        ("team-b", "batch"),
        (NS, "web"),
        (NS, "other"),
    }
    assert sorted(o["metadata"]["name"] for o in mine["items"]) == ["other", "web"]
    assert [o["spec"].get("recommenders") for o in mine["items"] if o["metadata"]["name"] == "other"] == [None]


def test_an_unknown_object_is_404_with_a_status(crs):
    with pytest.raises(ApiException) as excinfo:
        crs.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "missing")
    status = error_status(excinfo)
    assert excinfo.value.status == 404 and status["kind"] == "Status" and status["reason"] == "NotFound"
    assert status["message"] == 'verticalpodautoscalers.autoscaling.k8s.io "missing" not found'
    with pytest.raises(ApiException) as excinfo:
        patch_status(crs, "missing", {"status": RECOMMENDATION})
    assert excinfo.value.status == 404


def test_a_status_write_that_changes_nothing_keeps_the_resource_version(api, crs):
    api.put(vpa(NS, "web"))
    written = patch_status(crs, "web", {"status": RECOMMENDATION})
    again = patch_status(crs, "web", {"status": RECOMMENDATION})
    assert again["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_requests_without_the_token_are_unauthorized(api):
    cfg = client.Configuration(host=api.url)
    with client.ApiClient(cfg) as anonymous, pytest.raises(ApiException) as excinfo:
        client.CustomObjectsApi(anonymous).list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert excinfo.value.status == 401
