"""``mlco recommender``: a custom VPA recommender that writes our forecasts into VPA status.

The VPA lets a VerticalPodAutoscaler name its recommender (``spec.recommenders[].name``); the
default recommender skips such VPAs and the updater and admission controller act on whatever
``status.recommendation`` the named one writes. Every cycle this one lists the VPAs naming it,
forecasts their target workloads (``forecasting.Forecasting``) and writes, through the status
subresource as the upstream recommender does (kubernetes/autoscaler
``vertical-pod-autoscaler/pkg/utils/vpa/api.go``, ``UpdateVpaStatusIfNeeded``), one
``containerRecommendations`` entry per container with ``target``, ``lowerBound``, ``upperBound``
(capped by the VPA's ``resourcePolicy``) and ``uncappedTarget``.

What it never does is the upstream project's most reported failure: write an empty or absurd
recommendation. When Prometheus or the model fails, when a workload has no metrics, or when a
value is not finite, not positive, beyond ``MAX_CORES``/``MAX_BYTES`` or more than
``max_change`` times the last target, the last recommendation stays and the
``RecommendationProvided`` condition says why. A workload whose p90 held less often than its
target lately (``LowConfidence`` True) is not auto-applied: for a VPA whose ``updateMode`` acts on
pods, the new figures go to the shadow log only.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from ml_cloud_optimizer.kube import quantities
from ml_cloud_optimizer.kube.forecasting import Cycle, Forecasting, WorkloadForecast
from ml_cloud_optimizer.kube.names import RECOMMENDER_NAME

__all__ = ["GROUP", "MAX_BYTES", "MAX_CORES", "PLURAL", "VERSION", "Outcome", "Recommender"]

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "autoscaling.k8s.io", "v1", "verticalpodautoscalers"
MAX_CORES = 512.0  # per container: no node offers more
MAX_BYTES = 4 * 2**40
ACTING_MODES = {"Auto", "Recreate", "Initial", "InPlaceOrRecreate"}  # updateModes that change pods


@dataclass(frozen=True)
class Outcome:
    """What a cycle did with one VPA.

    ``action`` is ``written``, ``kept`` (the last left in place), ``would-write`` (dry run) or ``shadow``.
    """

    namespace: str
    name: str
    workload: str
    action: str
    reason: str
    status: dict


class Recommender:
    """``Recommender(CustomObjectsApi(...), forecasting).run_once()``.

    Args:
        api: a ``kubernetes.client.CustomObjectsApi``.
        forecasting: the cycle that forecasts the workloads.
        name: the recommender name VPAs must list.
        namespace: only VPAs of this namespace (default: all).
        dry_run: compute and report, write nothing.
        shadow: write no recommendation anywhere; log it (with ``shadow_log``) beside what happens.
        shadow_log: a ``shadow.ShadowLog`` for figures that are not applied.
        max_change: the most a target may move, as a factor, from the last one written.
        clock: unix seconds now.
    """

    def __init__(
        self,
        api,
        forecasting: Forecasting,
        *,
        name: str = RECOMMENDER_NAME,
        namespace: str | None = None,
        dry_run: bool = False,
        shadow: bool = False,
        shadow_log=None,
        max_change: float = 10.0,
        clock=time.time,
    ) -> None:
        self.api, self.forecasting, self.name, self.namespace = api, forecasting, name, namespace
        self.dry_run, self.shadow, self.shadow_log = dry_run, shadow, shadow_log
        self.max_change, self.clock = max_change, clock
        self.last_cycle: Cycle | None = None

    def vpas(self) -> list[dict]:
        """The VPAs that name this recommender (a VPA naming none belongs to the default one)."""
        if self.namespace:
            listed = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        else:
            listed = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return [v for v in listed.get("items", []) if self.name in _recommenders(v)]

    def run_once(self) -> list[Outcome]:
        """One cycle: forecast every served VPA's workload and write (or report) its status."""
        vpas = self.vpas()
        wanted = {_workload_id(v) for v in vpas}
        cycle = self.forecasting.run(wanted) if vpas else Cycle(ended=self.clock())
        self.last_cycle = cycle
        outcomes = [self._one(vpa, cycle) for vpa in vpas]
        if self.shadow_log is not None:
            self.shadow_log.append(cycle, outcomes)
        return outcomes

    def _one(self, vpa: dict, cycle: Cycle) -> Outcome:
        workload = _workload_id(vpa)
        forecast = cycle.forecasts.get(workload)
        previous = (vpa.get("status") or {}).get("recommendation")
        problem = cycle.failure or cycle.skipped.get(workload)
        recommendation = None
        if problem is None and (forecast is None or forecast.sizing is None):
            problem = "the workload could not be sized"
        if problem is None:
            assert forecast is not None
            recommendation = container_recommendations(vpa, forecast)
            problem = self.implausible(recommendation, previous)
        now = _rfc3339(self.clock())
        if problem is not None:
            kept = "the last recommendation is left in place" if previous else "no recommendation is written"
            conditions = _set_conditions(
                vpa, now, ("RecommendationProvided", bool(previous), "ForecastUnavailable", f"{problem}; {kept}")
            )
            return self._write(vpa, workload, "kept", problem, {"conditions": conditions})
        assert forecast is not None and recommendation is not None
        coverage = ", ".join(f"{k} {v:.0%}" for k, v in sorted(forecast.coverage.items()) if math.isfinite(v))
        confident = forecast.confident
        confidence = (
            "LowConfidence",
            not confident,
            "ForecastCoverage" if confident else "ForecastCoverageLow",
            f"the p90 held for {coverage or 'no scored origins'} of the last"
            f" {self.forecasting.settings.coverage_hours:g} h (target {forecast.coverage_target:.0%})",
        )
        acting = (vpa.get("spec", {}).get("updatePolicy") or {}).get("updateMode", "Auto") in ACTING_MODES
        if self.shadow or (acting and not confident):
            why = "shadow mode" if self.shadow else "low forecast coverage blocks auto-apply"
            conditions = _set_conditions(
                vpa,
                now,
                ("RecommendationProvided", bool(previous), "ShadowOnly", f"{why}: the new figures are logged only"),
                confidence,
            )
            return self._write(
                vpa, workload, "shadow", why, {"conditions": conditions}, proposed={"recommendation": recommendation}
            )
        conditions = _set_conditions(
            vpa,
            now,
            ("RecommendationProvided", True, "Forecast", f"forecast from {forecast.origin:%Y-%m-%d %H:%M} UTC"),
            confidence,
        )
        return self._write(vpa, workload, "written", "", {"recommendation": recommendation, "conditions": conditions})

    def implausible(self, recommendation: dict, previous: dict | None) -> str | None:
        """Why ``recommendation`` must not be written, or None when every figure is sane."""
        entries = recommendation.get("containerRecommendations") or []
        if not entries:
            return "the recommendation would be empty"
        last = {e["containerName"]: e.get("target", {}) for e in (previous or {}).get("containerRecommendations", [])}
        for entry in entries:
            for resource, parse, most in (
                ("cpu", quantities.parse_cores, MAX_CORES),
                ("memory", quantities.parse_bytes, MAX_BYTES),
            ):
                values = {
                    key: entry[key][resource]
                    for key in ("target", "lowerBound", "upperBound")
                    if resource in entry.get(key, {})
                }
                if not values:
                    continue
                numbers = {key: parse(v) for key, v in values.items()}
                where = f"{entry['containerName']} {resource}"
                if not all(math.isfinite(n) and 0 < n <= most for n in numbers.values()):
                    return f"implausible {where} {values}: not a positive size below {most:g}"
                before = last.get(entry["containerName"], {}).get(resource)
                if before is not None:
                    ratio = numbers["target"] / parse(before)
                    if not 1 / self.max_change <= ratio <= self.max_change:
                        return f"implausible {where} target {values['target']}: {ratio:.3g} times the last ({before})"
        return None

    def _write(
        self, vpa: dict, workload: str, action: str, reason: str, status: dict, proposed: dict | None = None
    ) -> Outcome:
        meta = vpa["metadata"]
        shown = {**status, **(proposed or {})}
        if self.dry_run:
            return Outcome(
                meta["namespace"],
                meta["name"],
                workload,
                "would-write" if action == "written" else action,
                reason,
                shown,
            )
        self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"status": status}
        )
        return Outcome(meta["namespace"], meta["name"], workload, action, reason, shown)


def container_recommendations(vpa: dict, forecast: WorkloadForecast) -> dict:
    """``status.recommendation`` for ``vpa`` from ``forecast``'s sizing, the VPA's resourcePolicy applied.

    As the upstream recommender: a container whose policy ``mode`` is ``Off`` gets no entry;
    only ``controlledResources`` are recommended; ``minAllowed``/``maxAllowed`` cap target and
    bounds, and ``uncappedTarget`` keeps the target before capping.
    """
    assert forecast.sizing is not None
    entries = []
    for container in forecast.sizing.containers:
        policy = _policy(vpa, container.name)
        if policy.get("mode") == "Off":
            continue
        controlled = policy.get("controlledResources") or ["cpu", "memory"]
        bounds = {
            r: b for r, b in (("cpu", container.cpu), ("memory", container.memory)) if b is not None and r in controlled
        }
        if not bounds:
            continue
        entry: dict[str, object] = {"containerName": container.name}
        for key, field in (("target", "target"), ("lowerBound", "lower"), ("upperBound", "upper")):
            entry[key] = {r: _quantity(r, _cap(r, getattr(b, field), policy)) for r, b in bounds.items()}
        entry["uncappedTarget"] = {r: _quantity(r, b.target) for r, b in bounds.items()}
        entries.append(entry)
    return {"containerRecommendations": entries}


def _policy(vpa: dict, container: str) -> dict:
    policies = ((vpa.get("spec") or {}).get("resourcePolicy") or {}).get("containerPolicies") or []
    named = [p for p in policies if p.get("containerName") == container]
    default = [p for p in policies if p.get("containerName") == "*"]
    return (named or default or [{}])[0]


def _cap(resource: str, value: float, policy: dict) -> float:
    parse = quantities.parse_cores if resource == "cpu" else quantities.parse_bytes
    low = (policy.get("minAllowed") or {}).get(resource)
    high = (policy.get("maxAllowed") or {}).get(resource)
    if low is not None:
        value = max(value, parse(low))
    if high is not None:
        value = min(value, parse(high))
    return value


def _quantity(resource: str, value: float) -> str:
    return quantities.cores_quantity(value) if resource == "cpu" else quantities.bytes_quantity(value)


def _recommenders(vpa: dict) -> set[str]:
    return {r.get("name") for r in (vpa.get("spec") or {}).get("recommenders") or []}


def _workload_id(vpa: dict) -> str:
    ref = vpa.get("spec", {}).get("targetRef") or {}
    return f"{vpa['metadata']['namespace']}/{ref.get('kind', '')}/{ref.get('name', '')}"


def _set_conditions(vpa: dict, now: str, *updates: tuple[str, bool, str, str]) -> list[dict]:
    """The VPA's conditions with ``updates`` (type, status, reason, message) applied.

    ``lastTransitionTime`` moves only when a condition's status flips, as Kubernetes conditions
    do; conditions of other types are kept.
    """
    current = {c.get("type"): c for c in (vpa.get("status") or {}).get("conditions") or []}
    for kind, status, reason, message in updates:
        text = "True" if status else "False"
        old = current.get(kind)
        since = (
            old["lastTransitionTime"] if old and old.get("status") == text and old.get("lastTransitionTime") else now
        )
        current[kind] = {
            "type": kind,
            "status": text,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
        }
    return list(current.values())


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
