"""`mlco recommend --emit vpa,keda,patch`: the recommendations as Kubernetes objects under ``--out``.

Why a module of its own: ``cli.recommend`` sizes and prices; this one turns its table into
objects (``kube.sizing``, ``kube.emit``) and owns the flags that only those objects need, so
each file keeps one idea. The flags are checked with the others, before any model is read.

Container shapes (replicas, each container's share of a pod's request) come from the same
Prometheus when ``--source`` is ``prometheus://`` (``data.traces.prometheus.containers``); any
other source, or a workload Prometheus knows nothing of, is one pod with one container named
``app``, which one printed line says: a patch for a container of another name would add a
container rather than size one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ml_cloud_optimizer.cli import UserError
from ml_cloud_optimizer.kube.emit import DEFAULT_PROMETHEUS, EMIT_KINDS, UPDATE_MODES

__all__ = ["add_emit_arguments", "check_emit_arguments", "emit"]


def add_emit_arguments(parser) -> None:
    """The ``--emit`` flags of ``mlco recommend``, in a group of their own."""
    group = parser.add_argument_group("Kubernetes objects (--emit)")
    group.add_argument(
        "--emit",
        default=None,
        help="also write these under --out: vpa (VerticalPodAutoscalers), keda (ScaledObjects),"
        " patch (Kustomize patches); any of vpa,keda,patch",
    )
    group.add_argument(
        "--emit-namespace",
        default="default",
        help="namespace of entities that are not namespace/Kind/name (default: default)",
    )
    group.add_argument("--vpa-mode", default="Off", help="the VPAs' updateMode (default Off: recommend only)")
    group.add_argument(
        "--keda-horizon", default="1h", help="how far ahead the ScaledObjects' forecast trigger looks (default 1h)"
    )
    group.add_argument(
        "--prometheus-address",
        default=None,
        help=f"Prometheus the ScaledObjects query (default: --source's when prometheus://, else {DEFAULT_PROMETHEUS})",
    )
    group.add_argument(
        "--max-replicas",
        type=int,
        default=None,
        help="the ScaledObjects' maxReplicaCount (default per workload: twice what the window's p90 peak needs)",
    )


def check_emit_arguments(args) -> tuple[str, ...]:
    """The kinds asked for (empty without ``--emit``); every mistake a one-line ``UserError``."""
    from ml_cloud_optimizer.kube.names import horizon_label
    from ml_cloud_optimizer.kube.sizing import is_dns_label

    if args.emit is None:
        return ()
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in args.emit.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in EMIT_KINDS]
    if unknown or not kinds:
        raise UserError(f"--emit {args.emit}: expected any of {','.join(EMIT_KINDS)}")
    if not is_dns_label(args.emit_namespace):
        raise UserError(f"--emit-namespace {args.emit_namespace}: not a namespace name (lowercase a-z, 0-9, -)")
    if args.vpa_mode not in UPDATE_MODES:
        raise UserError(f"--vpa-mode {args.vpa_mode}: expected one of {', '.join(UPDATE_MODES)}")
    minutes = _minutes(args.keda_horizon)
    if minutes is None or minutes % 5 or horizon_label(minutes // 5) != args.keda_horizon:
        raise UserError(
            f"--keda-horizon {args.keda_horizon}: expected a horizon as the exporter labels it (5m, 1h, 1h30m)"
        )
    if args.max_replicas is not None and args.max_replicas < 1:
        raise UserError(f"--max-replicas {args.max_replicas}: expected at least 1")
    if args.prometheus_address is not None and not args.prometheus_address.startswith(("http://", "https://")):
        raise UserError(f"--prometheus-address {args.prometheus_address}: expected an http:// or https:// URL")
    return kinds


def emit(args, recs: pd.DataFrame, targets, out: Path) -> None:
    """Write the objects ``--emit`` asks for under ``out``; one printed line per kind and per reason skipped."""
    from ml_cloud_optimizer.data.traces.prometheus.source import is_url
    from ml_cloud_optimizer.kube import emit as objects
    from ml_cloud_optimizer.kube.sizing import size_workloads

    kinds = check_emit_arguments(args)
    if not kinds:
        return
    entity_ids = sorted(recs["entity_id"].astype(str).unique())
    shapes = _shapes(args.source, entity_ids) if is_url(args.source) else {}
    if not is_url(args.source):
        print(f"container shapes: --source {args.source} has none; each workload is one pod, one container 'app'")
    else:
        rest = "; the rest are one pod, one container 'app'" if len(shapes) < len(entity_ids) else ""
        print(f"container shapes: from Prometheus for {len(shapes)} of {len(entity_ids)} workloads{rest}")
    try:
        sizings = size_workloads(recs, shapes, targets=targets, namespace=args.emit_namespace, kind="Deployment")
        built = objects.build(
            sizings,
            kinds,
            update_mode=args.vpa_mode,
            horizon=args.keda_horizon,
            server_address=args.prometheus_address or _default_address(args.source),
            target_utilization=args.target_utilization,
            max_replicas=args.max_replicas,
        )
    except ValueError as exc:
        raise UserError(f"--emit: {exc}") from None
    objects.write(built.objects, out)
    count = {
        kind: sum(obj["kind"] == kind for obj in built.objects) for kind in ("VerticalPodAutoscaler", "ScaledObject")
    }
    if "vpa" in kinds:
        where = ", memory only where KEDA scales" if "keda" in kinds else ""
        vpas = count["VerticalPodAutoscaler"]
        print(f"vpa: {vpas} VerticalPodAutoscalers (updateMode {args.vpa_mode}{where}) in {out / 'vpa'}")
    if "keda" in kinds:
        scaled = count["ScaledObject"]
        print(f"keda: {scaled} ScaledObjects (forecast {args.keda_horizon} ahead, and CPU usage) in {out / 'keda'}")
    if "patch" in kinds:
        patches = len(built.objects) - sum(count.values())
        print(f"patch: {patches} patches and their kustomization.yaml (a Kustomize Component) in {out / 'patches'}")
    reasons: dict[str, list[str]] = {}
    for entity, why in built.skipped:
        reasons.setdefault(why, []).append(entity)
    for why, entities in reasons.items():
        print(f"skipped {len(entities)} workload(s): {why} (first: {entities[0]})")


def _shapes(source_string: str, entity_ids: list[str]) -> dict:
    from ml_cloud_optimizer.data.traces.prometheus.containers import workload_shapes

    return workload_shapes(source_string, entity_ids)


def _default_address(source_string: str) -> str:
    """The ``--source``'s HTTP address when it is a Prometheus, else kube-prometheus's in-cluster one."""
    from ml_cloud_optimizer.data.traces.prometheus.source import is_url, parse

    return parse(source_string).base if is_url(source_string) else DEFAULT_PROMETHEUS


def _minutes(text: str) -> int | None:
    """``1h30m`` -> 90; None when it is not hours and/or minutes."""
    import re

    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", text or "")
    if match is None or not any(match.groups()):
        return None
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
