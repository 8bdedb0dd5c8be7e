"""The custom VPA recommender against the fake Kubernetes API (``tests/fakes/vpa_api.py``).

The fake serves VPAs with the status subresource as the API server does for a CRD (status
writes change only ``status`` and leave ``generation`` alone; writes are validated against the
VPA CRD). Forecasts come from real champions over a fleet file of two workloads, so what is
checked is what the recommender decides and writes: the VPAs it serves, the entries it writes,
the caps of a ``resourcePolicy``, and what it leaves alone when something fails.
"""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client, config

from crd_schemas import crd_errors
from fakes.vpa_api import FakeVpaApi, vpa
from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.kube import quantities
from ml_cloud_optimizer.kube.forecasting import Forecasting, Settings
from ml_cloud_optimizer.kube.recommender import Recommender
from ml_cloud_optimizer.kube.shadow import ShadowLog
from ml_cloud_optimizer.models.bundle import ModelBundle


@pytest.fixture
def kube(tmp_path):
    with FakeVpaApi() as api:
        yield api, client.CustomObjectsApi(config.new_client_from_config(config_file=str(api.kubeconfig(tmp_path))))


def _forecasting(source, champions, **settings) -> Forecasting:
    cpu, mem = ModelBundle.load(champions / "champion"), ModelBundle.load(champions / "champion-mem")
    return Forecasting(str(source), cpu, mem, Settings(**settings))


def test_writes_a_recommendation_for_the_vpas_naming_it_and_only_those(kube, workload_fleet, champions):
    api, custom = kube
    api.put(vpa("shop", "web", target_kind="Deployment", target_name="web"))
    api.put(vpa("shop", "db", target_kind="StatefulSet", target_name="db", recommenders=("default",)))
    generation = api.get("shop", "web")["metadata"]["generation"]

    outcomes = Recommender(custom, _forecasting(workload_fleet, champions)).run_once()

    assert [(o.name, o.action) for o in outcomes] == [("web", "written")]
    web = api.get("shop", "web")
    assert crd_errors(web) == []
    (entry,) = web["status"]["recommendation"]["containerRecommendations"]
    assert entry["containerName"] == "app"
    for resource, parse in (("cpu", quantities.parse_cores), ("memory", quantities.parse_bytes)):
        lower, target, upper = (parse(entry[k][resource]) for k in ("lowerBound", "target", "upperBound"))
        assert 0 < lower <= target <= upper
        assert entry["uncappedTarget"][resource] == entry["target"][resource]  # no policy: nothing capped
    conditions = {c["type"]: c for c in web["status"]["conditions"]}
    assert conditions["RecommendationProvided"]["status"] == "True"
    assert conditions["LowConfidence"]["status"] in ("True", "False")
    assert web["metadata"]["generation"] == generation  # a status write is not a spec change
    assert "status" not in api.get("shop", "db") or not api.get("shop", "db")["status"].get("recommendation")
    assert len(api.status_writes()) == 1


def test_resource_policy_caps_target_and_bounds_but_not_the_uncapped_target(kube, workload_fleet, champions):
    api, custom = kube
    obj = vpa("shop", "web", target_kind="Deployment", target_name="web")
    obj["spec"]["resourcePolicy"] = {"containerPolicies": [{"containerName": "*", "maxAllowed": {"cpu": "10m"}}]}
    api.put(obj)

    Recommender(custom, _forecasting(workload_fleet, champions)).run_once()

    (entry,) = api.get("shop", "web")["status"]["recommendation"]["containerRecommendations"]
    assert {entry[k]["cpu"] for k in ("target", "lowerBound", "upperBound")} == {"10m"}
    assert quantities.parse_cores(entry["uncappedTarget"]["cpu"]) > 0.01


def test_a_failing_source_leaves_the_last_recommendation_and_says_so(kube, champions):
    api, custom = kube
    last = {"containerRecommendations": [{"containerName": "app", "target": {"cpu": "500m", "memory": "1Gi"}}]}
    api.put({**vpa("shop", "web", target_kind="Deployment", target_name="web"), "status": {"recommendation": last}})
    dead = "prometheus://127.0.0.1:9?level=workload"  # nothing listens on the discard port

    (outcome,) = Recommender(custom, _forecasting(dead, champions)).run_once()

    web = api.get("shop", "web")
    assert outcome.action == "kept" and "reading metrics failed" in outcome.reason
    assert web["status"]["recommendation"] == last
    condition = {c["type"]: c for c in web["status"]["conditions"]}["RecommendationProvided"]
    assert condition["status"] == "True" and condition["reason"] == "ForecastUnavailable"
    assert "left in place" in condition["message"]
    (write,) = api.status_writes()
    assert "recommendation" not in write.body["status"]  # only the conditions were sent


def test_a_workload_without_metrics_gets_no_empty_recommendation(kube, workload_fleet, champions):
    api, custom = kube
    api.put(vpa("shop", "ghost", target_kind="Deployment", target_name="ghost"))

    (outcome,) = Recommender(custom, _forecasting(workload_fleet, champions)).run_once()

    ghost = api.get("shop", "ghost")
    assert outcome.action == "kept" and "no metrics" in outcome.reason
    assert "recommendation" not in ghost.get("status", {})
    condition = {c["type"]: c for c in ghost["status"]["conditions"]}["RecommendationProvided"]
    assert condition["status"] == "False" and "no recommendation is written" in condition["message"]


def test_an_implausible_jump_from_the_last_target_is_refused(kube, workload_fleet, champions):
    api, custom = kube
    last = {"containerRecommendations": [{"containerName": "app", "target": {"cpu": "400", "memory": "4Ti"}}]}
    api.put({**vpa("shop", "web", target_kind="Deployment", target_name="web"), "status": {"recommendation": last}})

    (outcome,) = Recommender(custom, _forecasting(workload_fleet, champions)).run_once()

    assert outcome.action == "kept" and "implausible" in outcome.reason
    assert api.get("shop", "web")["status"]["recommendation"] == last


def test_low_coverage_blocks_auto_apply_and_logs_the_figures(kube, workload_fleet, champions, tmp_path):
    api, custom = kube
    api.put(vpa("shop", "web", target_kind="Deployment", target_name="web", update_mode="Recreate"))
    api.put(vpa("shop", "db", target_kind="StatefulSet", target_name="db", update_mode="Off"))
    log = ShadowLog(tmp_path / "shadow.jsonl")
    # No p90 holds every time over a day: a coverage target of 1 makes every workload unconfident.
    forecasting = _forecasting(workload_fleet, champions, coverage_target=1.0)

    outcomes = {o.name: o for o in Recommender(custom, forecasting, shadow_log=log).run_once()}

    assert outcomes["web"].action == "shadow"  # Recreate would evict pods on a forecast we do not trust
    assert "recommendation" not in api.get("shop", "web").get("status", {})
    assert {c["type"]: c["status"] for c in api.get("shop", "web")["status"]["conditions"]}["LowConfidence"] == "True"
    assert outcomes["db"].action == "written"  # updateMode Off: a recommendation applies nothing by itself
    logged = log.read()
    assert set(logged["workload"]) == {"shop/Deployment/web", "shop/StatefulSet/db"}
    assert not logged["confident"].any() and (logged["request_cores"] > 0).all()


def test_shadow_mode_writes_no_recommendation(kube, workload_fleet, champions, tmp_path):
    api, custom = kube
    api.put(vpa("shop", "web", target_kind="Deployment", target_name="web"))
    log = ShadowLog(tmp_path / "shadow.jsonl")

    (outcome,) = Recommender(custom, _forecasting(workload_fleet, champions), shadow=True, shadow_log=log).run_once()

    assert outcome.action == "shadow" and "containerRecommendations" in outcome.status["recommendation"]
    assert "recommendation" not in api.get("shop", "web").get("status", {})
    assert list(log.read()["workload"]) == ["shop/Deployment/web"]  # only the served workload is forecast


def test_cli_dry_run_prints_the_status_and_writes_nothing(kube, workload_fleet, champions, tmp_path, capsys):
    api, _ = kube
    api.put(vpa("shop", "web", target_kind="Deployment", target_name="web"))
    argv = ["recommender", "--once", "--dry-run", "--source", str(workload_fleet)]
    argv += ["--model", str(champions / "champion"), "--kubeconfig", str(api.kubeconfig(tmp_path))]

    assert main(argv) == 0

    (printed,) = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert printed["vpa"] == "shop/web" and printed["action"] == "would-write"
    (entry,) = printed["status"]["recommendation"]["containerRecommendations"]
    assert set(entry) == {"containerName", "target", "lowerBound", "upperBound", "uncappedTarget"}
    assert all(method == "GET" for method, *_ in api.requests)
    assert "status" not in api.get("shop", "web") or not api.get("shop", "web")["status"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--interval", "0m"], "--interval 0m: expected a positive duration"),
        (["--model", "/nonexistent/model"], "--model /nonexistent/model"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], "--kubeconfig /nonexistent/kubeconfig"),
    ],
)
def test_cli_mistakes_are_one_line(workload_fleet, champions, extra, message, capsys):
    argv = ["recommender", "--once", "--source", str(workload_fleet), "--model", str(champions / "champion"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
