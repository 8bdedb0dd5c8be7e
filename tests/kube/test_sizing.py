"""Sizing: totals per entity and hour become bounds per pod and container, checked before any object is built."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_cloud_optimizer.kube.sizing import (
    DEFAULT_SHAPE,
    ContainerShape,
    ResourceBounds,
    Workload,
    WorkloadShape,
    is_dns_label,
    size_workloads,
)

GIB = 2**30
HOURS = pd.date_range("2026-01-05T10:00Z", periods=3, freq="h")


def _recs(entity="shop/Deployment/web", cores=(2.0, 3.0, 2.5), gib=(4.0, 6.0, 5.0), p90=1.6, current=4.0):
    return pd.DataFrame(
        {
            "entity_id": entity,
            "hour": HOURS,
            "p50_cores": 1.0,
            "p90_cores": [0.5, 0.5, p90],
            "request_cores": list(cores),
            "current_cores": current,
            "p90_mem_gib": 3.0,
            "peak_mem_gib": 3.5,
            "request_mem_gib": list(gib),
            "current_mem_gib": 8.0,
        }
    )


TWO = WorkloadShape(4, (ContainerShape("app", 0.75, 0.5), ContainerShape("sidecar", 0.25, 0.5)))


def test_totals_are_divided_by_replicas_and_split_by_each_containers_share():
    (sized,) = size_workloads(_recs(), {"shop/Deployment/web": TWO})
    assert sized.workload == Workload("shop", "Deployment", "web") and sized.replicas == 4
    app, sidecar = sized.containers
    assert (app.name, sidecar.name) == ("app", "sidecar")
    # CPU: latest 2.5, smallest 2.0, largest 3.0 cores over 4 pods; app holds 3/4, the sidecar 1/4.
    assert app.cpu == ResourceBounds(target=2.5 * 0.75 / 4, lower=2.0 * 0.75 / 4, upper=3.0 * 0.75 / 4)
    assert sidecar.cpu == ResourceBounds(target=2.5 * 0.25 / 4, lower=2.0 * 0.25 / 4, upper=3.0 * 0.25 / 4)
    # Memory in bytes: 5, 4 and 6 GiB over 4 pods, half each.
    assert app.memory == sidecar.memory == ResourceBounds(5 * GIB / 8, 4 * GIB / 8, 6 * GIB / 8)
    # The pods' containers add back up to the totals.
    assert (app.cpu.target + sidecar.cpu.target) * 4 == pytest.approx(2.5)
    assert (sized.p90_cores, sized.request_cores, sized.current_cores) == (1.6, 2.5, 4.0)


def test_the_latest_hour_is_told_by_its_time_not_its_row():
    recs = _recs().iloc[::-1].reset_index(drop=True)
    (sized,) = size_workloads(recs)
    assert sized.containers[0].cpu.target == 2.5 and sized.request_cores == 2.5


def test_without_a_shape_an_entity_is_one_pod_with_one_container_app():
    (sized,) = size_workloads(_recs(), {"other/Deployment/x": TWO})
    assert sized.replicas == 1 and [c.name for c in sized.containers] == ["app"]
    assert sized.containers[0].cpu == ResourceBounds(2.5, 2.0, 3.0)
    assert DEFAULT_SHAPE.containers == (ContainerShape("app", 1.0, 1.0),)


@given(
    cores=st.lists(st.floats(0.01, 500), min_size=1, max_size=6),
    replicas=st.integers(1, 50),
    share=st.one_of(st.just(0.0), st.floats(1e-6, 1.0)),  # the least real share: 1m of a 64-core pod is 1.6e-5
)
def test_bounds_are_always_ordered_lower_target_upper(cores, replicas, share):
    recs = (
        _recs()
        .iloc[:1]
        .loc[[0] * len(cores)]
        .assign(
            hour=pd.date_range("2026-01-05", periods=len(cores), freq="h"), request_cores=cores, request_mem_gib=cores
        )
    )
    shape = WorkloadShape(replicas, (ContainerShape("a", share, 1 - share), ContainerShape("b", 1 - share, share)))
    (sized,) = size_workloads(recs, {"shop/Deployment/web": shape})
    for container in sized.containers:
        for bounds in (container.cpu, container.memory):
            assert bounds is None or 0 < bounds.lower <= bounds.target <= bounds.upper


def test_a_resource_not_recommended_is_left_unset():
    (cpu_only,) = size_workloads(_recs(), targets=["cpu"])
    assert cpu_only.containers[0].memory is None and cpu_only.containers[0].cpu is not None
    (mem_only,) = size_workloads(_recs(), targets=("mem",))
    assert mem_only.containers[0].cpu is None and mem_only.containers[0].memory is not None
    with pytest.raises(ValueError, match="expected cpu and/or mem"):
        size_workloads(_recs(), targets=("gpu",))


def test_a_container_that_requests_none_of_a_resource_gets_none():
    shape = WorkloadShape(1, (ContainerShape("app", 1.0, 0.6), ContainerShape("proxy", 0.0, 0.4)))
    (sized,) = size_workloads(_recs(), {"shop/Deployment/web": shape})
    proxy = sized.containers[1]
    assert proxy.cpu is None and proxy.memory == ResourceBounds(5 * GIB * 0.4, 4 * GIB * 0.4, 6 * GIB * 0.4)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -0.25])
@pytest.mark.parametrize("column", ["request_cores", "request_mem_gib"])
def test_a_request_that_is_not_positive_and_finite_is_refused_with_entity_and_hour(bad, column):
    recs = _recs()
    recs.loc[1, column] = bad
    with pytest.raises(ValueError, match=rf"shop/Deployment/web: {column} is .* at 2026-01-05 11:00"):
        size_workloads(recs)


def test_a_missing_memory_figure_matters_only_when_memory_is_recommended():
    recs = _recs().assign(request_mem_gib=math.nan)
    (sized,) = size_workloads(recs, targets=("cpu",))
    assert sized.containers[0].memory is None
    with pytest.raises(ValueError, match="request_mem_gib is nan"):
        size_workloads(recs, targets=("cpu", "mem"))


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"lack column.*request_mem_gib"):
        size_workloads(_recs().drop(columns="request_mem_gib"))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (lambda: WorkloadShape(0, (ContainerShape("app", 1, 1),)), "at least one whole replica"),
        (lambda: WorkloadShape(2, ()), "one or more distinct"),
        (lambda: WorkloadShape(2, (ContainerShape("a", 1, 0.5), ContainerShape("a", 0, 0.5))), "distinct"),
        (lambda: WorkloadShape(1, (ContainerShape("a", 0.7, 1), ContainerShape("b", 0.2, 0))), "sum to 1"),
        (lambda: WorkloadShape(1, (ContainerShape("a", math.nan, 1),)), "sum to 1"),
        (lambda: ResourceBounds(target=1.0, lower=2.0, upper=3.0), "l <= t <= u"),
        (lambda: ResourceBounds(target=0.0, lower=0.0, upper=0.0), "l <= t <= u"),
    ],
)
def test_inconsistent_shapes_and_bounds_cannot_be_built(shape, message):
    with pytest.raises(ValueError, match=message):
        shape()


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        ("shop/Deployment/web", Workload("shop", "Deployment", "web")),
        ("shop/StatefulSet/db", Workload("shop", "StatefulSet", "db")),
        ("kube-system/DaemonSet/kube-proxy", Workload("kube-system", "DaemonSet", "kube-proxy")),
        ("shop/Deployment/web.v2", Workload("shop", "Deployment", "web.v2")),  # a DNS subdomain is a valid name
        ("db-0000", Workload("ops", "StatefulSet", "db-0000")),  # already a DNS label: kept
    ],
)
def test_entity_ids_become_workloads(entity, expected):
    assert Workload.from_entity(entity, namespace="ops", kind="StatefulSet") == expected
    assert Workload.from_entity("shop/Deployment/web").entity_id == "shop/Deployment/web"


@pytest.mark.parametrize(
    "entity",
    ["VM_1", "shop/web-7d9f-a", "c_12345", "Shop/Deployment/web", "a/b/c/d", "___", "x" * 80, "m_1932.2013-08"],
)
def test_other_ids_get_a_stable_dns_label_in_the_chosen_namespace_and_kind(entity):
    workload = Workload.from_entity(entity, namespace="fleet", kind="StatefulSet")
    assert (workload.namespace, workload.kind) == ("fleet", "StatefulSet")
    assert is_dns_label(workload.name) and len(workload.name) <= 63
    assert Workload.from_entity(entity, namespace="fleet", kind="StatefulSet") == workload  # stable


def test_ids_that_clean_alike_stay_distinct():
    names = {Workload.from_entity(e).name for e in ("vm-1", "VM_1", "vm_1", "vm/1", "VM-1")}
    assert len(names) == 5 and "vm-1" in names


def test_a_bad_namespace_or_kind_for_other_ids_is_refused():
    with pytest.raises(ValueError, match="namespace 'Bad_NS'"):
        Workload.from_entity("vm-1", namespace="Bad_NS")
    with pytest.raises(ValueError, match="kind 'deployment'"):
        Workload.from_entity("vm-1", kind="deployment")


def test_two_entities_naming_one_workload_are_refused():
    recs = pd.concat([_recs("web"), _recs("default/Deployment/web")], ignore_index=True)
    with pytest.raises(ValueError, match="both name default/Deployment/web"):
        size_workloads(recs)
