"""`mlco recommender`, `mlco exporter`, `mlco shadow-report`: forecasts a cluster consumes.

Why a module of its own: these commands talk to a cluster (a kubeconfig or the pod's service
account) and run as long-lived loops; the work itself lives in ``ml_cloud_optimizer.kube``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.kube.names import COVERAGE_TARGET, RECOMMENDER_NAME

__all__ = ["register"]

_DURATION = re.compile(r"^(\d+)(s|m|h)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def register(subparsers) -> None:
    rec = subparsers.add_parser("recommender", help="custom VPA recommender: write forecasts into VPA status")
    _common(rec)
    rec.add_argument(
        "--name", default=RECOMMENDER_NAME, help=f"recommender name VPAs list (default {RECOMMENDER_NAME})"
    )
    rec.add_argument("--namespace", default=None, help="only VPAs of this namespace (default: all)")
    rec.add_argument(
        "--kubeconfig", type=Path, default=None, help="kubeconfig (default: in-cluster, else ~/.kube/config)"
    )
    rec.add_argument("--dry-run", action="store_true", help="print the VPA status it would write; write nothing")
    rec.add_argument("--shadow", action="store_true", help="write no recommendation; log it beside what happens")
    rec.add_argument(
        "--shadow-log", type=Path, default=None, help="JSON-lines log ($MLCO_HOME/shadow/recommendations.jsonl)"
    )
    rec.add_argument("--max-change", type=float, default=10.0, help="refuse a target moving more than this factor (10)")
    rec.add_argument("--metrics-port", type=int, default=0, help="also serve the forecast gauges on this port (0: no)")
    rec.set_defaults(func=_recommender)

    exp = subparsers.add_parser("exporter", help="serve forecast gauges on /metrics for Prometheus, KEDA and alerts")
    _common(exp)
    exp.add_argument("--port", type=int, default=9100, help="port of /metrics (default 9100)")
    exp.add_argument("--addr", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    exp.set_defaults(func=_exporter)

    rep = subparsers.add_parser("shadow-report", help="shadow-logged recommendations beside the usage that followed")
    rep.add_argument("--log", type=Path, default=None, help="the shadow log ($MLCO_HOME/shadow/recommendations.jsonl)")
    rep.add_argument("--source", required=True, help="where the usage since is read: prometheus:// URL or fleet path")
    rep.add_argument("--out", type=Path, default=None, help="directory for shadow-report.csv ($MLCO_HOME/shadow)")
    rep.set_defaults(func=_shadow_report)


def _common(p) -> None:
    p.add_argument(
        "--source",
        default=os.environ.get("MLCO_PROMETHEUS_URL"),
        help="prometheus://HOST:PORT[?namespace=...] at workload level (default $MLCO_PROMETHEUS_URL)",
    )
    p.add_argument("--model", type=Path, default=None, help="CPU model directory (default: the newest champion)")
    p.add_argument(
        "--mem-model", type=Path, default=None, help="memory model (default: champion-mem beside --model, if any)"
    )
    p.add_argument("--interval", default="5m", help="time between cycles: 30s, 5m, 1h (default 5m)")
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument("--target-utilization", type=float, default=0.7, help="CPU utilization requests are sized for (0.7)")
    p.add_argument(
        "--coverage-target",
        type=float,
        default=COVERAGE_TARGET,
        help=f"p90 coverage needed to act alone ({COVERAGE_TARGET})",
    )


def _interval(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise UserError(f"--interval {text}: expected a positive duration such as 30s, 5m or 1h")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _forecasting(args):
    """The forecasting cycle the arguments describe, its models loaded; mistakes are one line."""
    from ml_cloud_optimizer.cli.optimize import default_model_dir
    from ml_cloud_optimizer.cli.recommend import MEM_CHAMPION
    from ml_cloud_optimizer.kube.forecasting import Forecasting, Settings
    from ml_cloud_optimizer.models.bundle import ModelBundle

    if not args.source:
        raise UserError("--source: give a prometheus:// URL (or set MLCO_PROMETHEUS_URL)")
    checks.share(args.target_utilization, "--target-utilization", high_inclusive=True)
    checks.share(args.coverage_target, "--coverage-target", high_inclusive=True)
    model_dir = Path(args.model or default_model_dir())
    checks.existing_dir(model_dir, "--model", "model directory", "train one with `mlco train --target cpu,mem`")
    mem_dir = args.mem_model or model_dir.parent / MEM_CHAMPION
    if args.mem_model is not None:
        checks.existing_dir(mem_dir, "--mem-model", "model directory", "train one with `mlco train --target mem`")
    try:
        cpu = ModelBundle.load(model_dir)
        mem = ModelBundle.load(mem_dir) if Path(mem_dir).is_dir() else None
    except (ValueError, KeyError, OSError, ImportError) as exc:
        raise UserError(f"--model: {exc}") from None
    for bundle, want, flag in ((cpu, "cpu", "--model"), (mem, "mem", "--mem-model")):
        if bundle is not None and bundle.target != want:
            raise UserError(f"{flag}: the model forecasts {bundle.target}, not {want}")
    if mem is None:
        print(f"no memory model at {mem_dir}: recommending CPU only", file=sys.stderr)
    settings = Settings(target_utilization=args.target_utilization, coverage_target=args.coverage_target)
    return Forecasting(args.source, cpu, mem, settings)


def _kube_api(kubeconfig: Path | None):
    from kubernetes import client, config

    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            return client.CustomObjectsApi()
        path = kubeconfig or Path.home() / ".kube" / "config"
        checks.existing(path, "--kubeconfig")
        return client.CustomObjectsApi(config.new_client_from_config(config_file=str(path)))
    except config.ConfigException as exc:
        raise UserError(f"--kubeconfig: {exc}") from None


def _recommender(args) -> int:
    import yaml
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from ml_cloud_optimizer.kube.exporter import ForecastCollector, serve
    from ml_cloud_optimizer.kube.recommender import Recommender
    from ml_cloud_optimizer.kube.shadow import ShadowLog
    from ml_cloud_optimizer.warehouse.server import mlco_home

    interval = _interval(args.interval)
    checks.at_least(args.max_change, "--max-change", 1.0, "a factor")
    if args.metrics_port:
        checks.port(args.metrics_port, "--metrics-port")
    forecasting = _forecasting(args)
    shadow_path = args.shadow_log or mlco_home() / "shadow" / "recommendations.jsonl"
    recommender = Recommender(
        _kube_api(args.kubeconfig),
        forecasting,
        name=args.name,
        namespace=args.namespace,
        dry_run=args.dry_run,
        shadow=args.shadow,
        shadow_log=None if args.dry_run else ShadowLog(shadow_path),
        max_change=args.max_change,
    )
    collector = ForecastCollector(max_age=max(3 * interval, 900))
    if args.metrics_port:
        serve(collector, args.metrics_port)
    while True:
        try:
            outcomes = recommender.run_once()
        except (ApiException, HTTPError, OSError) as exc:
            message = f"the Kubernetes API failed: {getattr(exc, 'reason', None) or exc}"
            if args.once:
                raise UserError(message) from None
            print(message, file=sys.stderr, flush=True)
            time.sleep(interval)
            continue
        if recommender.last_cycle is not None:
            collector.update(recommender.last_cycle)
        for o in outcomes:
            if args.dry_run:
                print(
                    yaml.safe_dump(
                        {
                            "vpa": f"{o.namespace}/{o.name}",
                            "workload": o.workload,
                            "action": o.action,
                            "status": o.status,
                        },
                        sort_keys=False,
                    ),
                    end="---\n",
                )
            else:
                print(
                    f"{o.namespace}/{o.name} ({o.workload}): {o.action}{f' ({o.reason})' if o.reason else ''}",
                    flush=True,
                )
        if not outcomes:
            print(f"no VPA names the recommender {args.name!r}", flush=True)
        if args.once:
            return 0
        time.sleep(interval)


def _exporter(args) -> int:
    from prometheus_client import CollectorRegistry, generate_latest

    from ml_cloud_optimizer.kube.exporter import ForecastCollector, serve

    interval = _interval(args.interval)
    checks.port(args.port)
    forecasting = _forecasting(args)
    collector = ForecastCollector(max_age=max(3 * interval, 900))
    if not args.once:
        serve(collector, args.port, args.addr)
        print(f"serving forecasts on http://{args.addr}:{args.port}/metrics every {args.interval}", flush=True)
    while True:
        cycle = forecasting.run()
        collector.update(cycle)
        state = cycle.failure or f"{len(cycle.forecasts)} workloads forecast, {len(cycle.skipped)} skipped"
        print(f"cycle: {state}", file=sys.stderr, flush=True)
        if args.once:
            registry = CollectorRegistry()
            registry.register(collector)
            sys.stdout.write(generate_latest(registry).decode())
            return 1 if cycle.failure else 0
        time.sleep(interval)


def _shadow_report(args) -> int:
    from ml_cloud_optimizer.cli.optimize import _read_source, default_out_dir
    from ml_cloud_optimizer.kube.shadow import ShadowLog, report
    from ml_cloud_optimizer.warehouse.server import mlco_home

    path = args.log or mlco_home() / "shadow" / "recommendations.jsonl"
    checks.existing(path, "--log")
    if args.source == "warehouse":
        raise UserError("--source: give the prometheus:// URL or fleet file the usage since is in")
    checks.out_dir(args.out)
    try:
        log = ShadowLog(path).read()
    except ValueError as exc:
        raise UserError(f"--log {exc}") from None
    fleet = _read_source(args.source, None)
    table = report(log, fleet.metrics, fleet.entities)
    if table.empty:
        raise UserError(f"--source {args.source}: no usage after any logged recommendation yet")
    out = args.out or default_out_dir("shadow")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "shadow-report.csv", index=False)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"wrote {out / 'shadow-report.csv'}")
    return 0
