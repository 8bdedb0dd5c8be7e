"""`mlco run`, `compile`, `submit`, `schedule` and `runs`: the Kubeflow pipeline, locally or on a cluster.

``mlco run`` is the main job: the whole pipeline through ``kfp.local`` on this machine. The
other commands compile the pipeline and talk to a Kubeflow Pipelines API server. The
pipeline code lives in the top-level ``pipelines`` package and is imported only when a
command needs it, so ``mlco --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.cli.kfp_api import connect as _connect
from ml_cloud_optimizer.cli.kfp_api import package as _package
from ml_cloud_optimizer.cli.kfp_api import params as _params
from ml_cloud_optimizer.cli.kfp_api import server_errors as _server_errors
from ml_cloud_optimizer.cli.optimize import add_target_utilization
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS, parse_horizons
from ml_cloud_optimizer.models.registry import TRAINABLE

__all__ = ["register"]

_ALL_MODELS = ",".join(TRAINABLE)
_DEFAULT_HORIZONS = ",".join(map(str, DEFAULT_HORIZONS))


def register(subparsers) -> None:
    """Add ``run``, ``compile``, ``submit``, ``schedule`` and ``runs`` to ``subparsers``."""
    run = subparsers.add_parser("run", help="run the whole pipeline locally (kfp.local) and export the champion")
    run.add_argument("--records", type=int, default=None, help="synthetic rows (default 100000)")
    run.add_argument("--models", default=_ALL_MODELS, help=f"comma-separated model kinds (default {_ALL_MODELS})")
    run.add_argument("--epochs", type=int, default=None, help="most LSTM/GRU epochs (default: local budget)")
    run.add_argument("--trials", type=int, default=None, help="Optuna trials per tabular model (default: local budget)")
    run.add_argument(
        "--horizons",
        default=_DEFAULT_HORIZONS,
        help=f"forecast horizons in 5-minute steps (default {_DEFAULT_HORIZONS})",
    )
    run.add_argument(
        "--source",
        default="synthetic",
        help="'synthetic' (default), a trace path, prometheus://HOST:PORT?start=...&end=...&level=...,"
        " or 'prometheus': the server in $MLCO_PROMETHEUS_URL (a missing range: the last 14 days)",
    )
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--holdout", type=float, default=0.2, help="share of time held out (default 0.2)")
    run.add_argument(
        "--runner",
        choices=["subprocess", "docker"],
        default="subprocess",
        help="subprocess: every task in this Python (default); docker: every task in a container"
        " of the project's image (kfp.local.DockerRunner)",
    )
    run.add_argument(
        "--image",
        default=None,
        help="image for --runner docker (default ml-cloud-optimizer:local, built by `make images`)",
    )
    _pipeline_argument(run)
    batch = run.add_argument_group("batch pipeline (--pipeline batch)")
    batch.add_argument(
        "--champion",
        default=None,
        help="model dir or models:/ URI to score with (default models:/mlco-forecaster@champion)",
    )
    batch.add_argument("--lookback-hours", type=int, default=169, help="history read per entity (default 169)")
    add_target_utilization(batch, help="sizing target in (0, 1] (default 0.7)")
    run.set_defaults(func=_run)

    comp = subparsers.add_parser("compile", help="compile the pipeline to YAML (default pipelines/compiled/)")
    comp.add_argument("--out", type=Path, default=None, help="output YAML (default: the committed file)")
    comp.add_argument("--check", action="store_true", help="only check that the committed YAML is current")
    comp.add_argument("--pipeline", choices=["workload", "batch"], default=None, help="one pipeline (default: both)")
    comp.set_defaults(func=_compile)

    submit = subparsers.add_parser("submit", help="start one pipeline run on a Kubeflow Pipelines server")
    _server_arguments(submit)
    submit.add_argument("--run-name", default=None, help="display name of the run")
    submit.set_defaults(func=_submit)

    schedule = subparsers.add_parser("schedule", help="upload a pipeline version and (re)create a recurring run")
    _server_arguments(schedule)
    schedule.add_argument(
        "--cron",
        required=True,
        help='six-field cron, seconds first: nightly training "0 0 2 * * *", hourly batch scoring "0 5 * * * *"',
    )
    schedule.add_argument(
        "--name",
        default=None,
        help="recurring run name (default mlco-nightly, or mlco-batch-hourly); replaced if it exists",
    )
    schedule.set_defaults(func=_schedule)

    runs = subparsers.add_parser("runs", help="list recent pipeline runs on a Kubeflow Pipelines server")
    runs.add_argument("--host", required=True, help="KFP API URL, e.g. http://localhost:8080")
    runs.add_argument("--experiment", default=None, help="only this experiment")
    runs.add_argument("--limit", type=int, default=20, help="most runs to show (default 20)")
    _auth_arguments(runs)
    runs.set_defaults(func=_runs)


def _pipeline_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline",
        choices=["workload", "batch"],
        default="workload",
        help="workload: train and deploy (default); batch: score every entity with the champion",
    )


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    _pipeline_argument(parser)
    parser.add_argument("--host", required=True, help="KFP API URL, e.g. http://localhost:8080")
    parser.add_argument("--experiment", default=None, help="experiment (default mlco; created when missing)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter, repeatable; values are read as JSON when they parse",
    )
    parser.add_argument(
        "--package",
        type=Path,
        default=None,
        help="compiled pipeline to send (default: compile now, honouring MLCO_IMAGE)",
    )
    _auth_arguments(parser)


def _auth_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("multi-user Kubeflow")
    group.add_argument(
        "--namespace",
        default=None,
        help="your profile namespace; runs, experiments and pipelines are created and listed there",
    )
    group.add_argument(
        "--token",
        default=None,
        help="bearer token sent as 'Authorization: Bearer ...' (default $MLCO_KFP_TOKEN, then"
        " $KF_PIPELINES_TOKEN; prefer the variable: a flag shows in the process list)",
    )
    group.add_argument(
        "--sa-token",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="in a pod: send the projected service-account token, re-read on every request (default"
        " path $KF_PIPELINES_SA_TOKEN_PATH or /var/run/secrets/kubeflow/pipelines/token; used"
        " without this flag when that file exists and no bearer token is given)",
    )


def _reads_settings(command):
    """For commands that import ``pipelines``: its settings come from MLCO_* variables; a bad one is a user error."""

    @functools.wraps(command)
    def checked(args: argparse.Namespace) -> int:
        try:
            import ml_cloud_optimizer.pipelines.settings  # noqa: F401
        except ValueError as exc:
            raise UserError(str(exc)) from None
        return command(args)

    return checked


# -- run -------------------------------------------------------------------------------------


@_reads_settings
def _run(args: argparse.Namespace) -> int:
    checks.at_least(args.records, "--records", 1)  # every argument before anything is imported, started or trained
    checks.at_least(args.epochs, "--epochs", 1)
    checks.at_least(args.trials, "--trials", 0)
    checks.at_least(args.seed, "--seed", 0)
    checks.share(args.holdout, "--holdout")
    checks.source(args.source, "--source", ("synthetic", "prometheus"))
    checks.at_least(args.lookback_hours, "--lookback-hours", 1)
    checks.share(args.target_utilization, "--target-utilization", high_inclusive=True)
    if args.pipeline == "workload":
        checks.model_kinds(args.models)
        try:
            horizons = list(parse_horizons(args.horizons))
        except ValueError as exc:
            raise UserError(f"--{exc}") from None  # "--horizons 1,6: must include 12 (...)"
    from ml_cloud_optimizer.pipeline_steps import sources
    from ml_cloud_optimizer.pipeline_steps.environment import local_tracking_uri
    from ml_cloud_optimizer.pipelines import settings
    from ml_cloud_optimizer.pipelines.runners import containers, local
    from ml_cloud_optimizer.pipelines.runners.execute import local_home

    home = local_home()
    if args.image and args.runner != "docker":
        raise UserError("--image needs --runner docker")
    image = (args.image or containers.DEFAULT_IMAGE) if args.runner == "docker" else None
    if image:
        try:
            containers.require_image(image)
        except containers.DockerUnavailable as exc:
            raise UserError(str(exc)) from None
    if args.pipeline == "batch":
        return _run_batch(args, home, image)
    try:
        arguments = local.local_arguments(
            records=args.records or settings.LOCAL_BUDGET["records"],
            models=[m.strip() for m in args.models.split(",") if m.strip()],
            epochs=settings.LOCAL_BUDGET["epochs"] if args.epochs is None else args.epochs,
            trials=settings.LOCAL_BUDGET["trials"] if args.trials is None else args.trials,
            horizons=horizons,
            source=args.source,
            seed=args.seed,
            holdout_fraction=args.holdout,
            tracking_uri=local_tracking_uri(),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.source != "synthetic" and not sources.is_live(args.source) and not Path(args.source).exists():
        raise UserError(f"--source {args.source}: no such file or directory")
    try:
        sources.resolve_source(args.source)  # a malformed $MLCO_PROMETHEUS_URL, said before the run starts
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not 0 < args.holdout < 1:
        raise UserError(f"--holdout wants a share between 0 and 1, got {args.holdout}")
    if arguments["records"] < 1 or arguments["epochs"] < 1 or arguments["trials"] < 0:
        raise UserError("--records and --epochs want positive numbers, --trials zero or more")
    models = arguments["tabular_models"] + arguments["sequence_models"]
    data = f"{arguments['records']:,} records" if args.source == "synthetic" else arguments["source"]
    where = f"in containers of {image}" if image else "as subprocesses"
    print(
        f"mlco run: {data}, models {', '.join(models)}, epochs {arguments['epochs']},"
        f" trials {arguments['trials']}, tasks {where} (logs under {home / 'logs'})",
        file=sys.stderr,
    )
    try:
        result = local.run_local(arguments, home=home, image=image)
    except local.LocalRunError as exc:
        print(f"mlco run: {exc}", file=sys.stderr)
        return 1
    print(result.leaderboard.rstrip())
    print()
    print(
        f"champion: {result.champion_kind} (1-hour MAE {result.champion_mae:.4f} on the hold-out),"
        f" registered as {result.model_uri}"
    )
    print(f"champion directory: {result.champion_dir}")
    print(f"pipeline run: {result.run_dir} ({result.seconds:.0f} s); log: {result.log_path}")
    print(f"serve it: mlco serve --model_dir {result.champion_dir}")
    return 0


def _run_batch(args: argparse.Namespace, home: Path, image: str | None) -> int:
    from ml_cloud_optimizer.pipelines.batch_pipeline import DEFAULT_CHAMPION
    from ml_cloud_optimizer.pipelines.runners import local

    if not 0 < args.target_utilization <= 1:
        raise UserError(f"--target-utilization wants a share in (0, 1], got {args.target_utilization}")
    if args.lookback_hours < 1:
        raise UserError(f"--lookback-hours wants a positive number, got {args.lookback_hours}")
    arguments = {
        "champion": args.champion or DEFAULT_CHAMPION,
        "lookback_hours": args.lookback_hours,
        "target_utilization": args.target_utilization,
    }
    try:
        result = local.run_batch_local(arguments, home=home, image=image)
    except local.LocalRunError as exc:
        print(f"mlco run: {exc}", file=sys.stderr)
        return 1
    print(
        f"scored {result.entities} entities with {result.model_uri}: forecasts and recommendations stored as"
        f" optimizer run {result.optimizer_run_id} ({result.seconds:.0f} s); log: {result.log_path}"
    )
    return 0


# -- compile ---------------------------------------------------------------------------------


@_reads_settings
def _compile(args: argparse.Namespace) -> int:
    if args.out is not None and args.out.is_dir():
        raise UserError(f"--out {args.out}: is a directory; name the YAML file to write")
    from ml_cloud_optimizer.pipelines.runners import compile as pipeline_compile

    names = [args.pipeline or "workload"] if args.out or args.pipeline else list(pipeline_compile.PIPELINES)
    stale = False
    for name in names:
        target = args.out or pipeline_compile.PIPELINES[name][1]
        if not args.check:
            print(pipeline_compile.compile_pipeline(target, name))
        elif pipeline_compile.is_stale(target, name):
            print(f"mlco compile: {target} is stale; run `mlco compile` and commit it", file=sys.stderr)
            stale = True
        else:
            print(f"{target} is up to date")
    return 1 if stale else 0


# -- submit / schedule / runs ----------------------------------------------------------------


@_reads_settings
def _submit(args: argparse.Namespace) -> int:
    if args.package is not None:  # before importing kfp
        checks.existing(args.package, "--package")
    from ml_cloud_optimizer.pipelines.runners import remote

    with _package(args.package, args.pipeline) as package:
        params = _params(args.param, package)
        with _server_errors(args.host):
            client = _connect(args)
            result = remote.submit_pipeline(
                client,
                package,
                params=params,
                experiment=args.experiment or remote.DEFAULT_EXPERIMENT,
                run_name=args.run_name,
                namespace=args.namespace,
            )
    print(f"submitted run {result.run_id} ({result.run_name}) in experiment {result.experiment_id}")
    return 0


@_reads_settings
def _schedule(args: argparse.Namespace) -> int:
    from ml_cloud_optimizer.pipelines.runners.cron import CronError, validate_cron

    try:
        cron = validate_cron(args.cron)
    except CronError as exc:
        raise UserError(str(exc)) from None  # "cron expression ...: ..."
    if args.package is not None:  # before importing kfp
        checks.existing(args.package, "--package")
    from ml_cloud_optimizer.pipelines.runners import remote

    default_name = remote.DEFAULT_SCHEDULE_NAME if args.pipeline == "workload" else "mlco-batch-hourly"
    with _package(args.package, args.pipeline) as package:
        params = _params(args.param, package)
        with _server_errors(args.host):
            client = _connect(args)
            result = remote.schedule_pipeline(
                client,
                package,
                cron=cron,
                params=params,
                experiment=args.experiment or remote.DEFAULT_EXPERIMENT,
                name=args.name or default_name,
                namespace=args.namespace,
            )
    replaced = f", replacing {', '.join(result.replaced)}" if result.replaced else ""
    print(
        f"scheduled recurring run {result.recurring_run_id} on '{cron}' with pipeline version"
        f" {result.pipeline_version_id}{replaced}"
    )
    return 0


def _runs(args: argparse.Namespace) -> int:
    checks.at_least(args.limit, "--limit", 1)
    from ml_cloud_optimizer.pipelines.runners import remote

    with _server_errors(args.host):
        client = _connect(args)
        rows = remote.list_runs(client, experiment=args.experiment, limit=args.limit, namespace=args.namespace)
    if not rows:
        print("no runs")
        return 0
    columns = ["run_id", "state", "created_at", "finished_at", "name"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip())
    return 0
