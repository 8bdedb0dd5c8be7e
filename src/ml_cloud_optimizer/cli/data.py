"""`mlco generate` and `mlco ingest`: make a synthetic fleet, or read a real trace, and save it.

``add_unit_arguments`` and ``trace_options`` give every command that reads a trace
(``ingest``, ``db load``, ``train``, ``backtest``) the same ``--time-unit`` and ``--cpu-unit``.
"""

from __future__ import annotations

import argparse

from ml_cloud_optimizer.cli import UserError, checks
from ml_cloud_optimizer.data.io import read_fleet, write_fleet
from ml_cloud_optimizer.data.schema import STEP_SECONDS, Fleet
from ml_cloud_optimizer.data.traces import FORMATS
from ml_cloud_optimizer.data.traces._stream import CPU_UNITS, TIME_UNITS

__all__ = [
    "add_prometheus_arguments",
    "add_unit_arguments",
    "gap_line",
    "parse_mapping",
    "prometheus_options",
    "register",
    "summarize",
    "trace_options",
]


def register(subparsers) -> None:
    """Add ``generate`` and ``ingest`` to ``subparsers``."""
    gen = subparsers.add_parser("generate", help="generate a synthetic fleet and save it (Parquet or CSV)")
    gen.add_argument("--records", type=int, default=100_000, help="metric rows to aim for (default 100000)")
    gen.add_argument("--out", required=True, help="output file: .parquet or .csv; entities go beside it")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--entities", type=int, default=None, help="number of VMs (default: about 21 days each)")
    gen.set_defaults(func=_generate)

    ingest = subparsers.add_parser("ingest", help="read a real trace into the canonical frame and report its gaps")
    ingest.add_argument(
        "path", help="trace file or directory, or prometheus://HOST:PORT?... (prometheus+https:// for TLS)"
    )
    ingest.add_argument("--format", choices=FORMATS, default=None, help="trace format (default: detected)")
    ingest.add_argument(
        "--map",
        type=parse_mapping,
        default=None,
        metavar="NAME=COLUMN,...",
        help="long CSV column mapping, e.g. ts=time,entity_id=host,cpu_util=cpu",
    )
    ingest.add_argument("--epoch", default=None, help="start of an Azure or Alibaba trace (UTC, ISO date)")
    ingest.add_argument("--out", default=None, help="write the canonical fleet here (.parquet or .csv)")
    add_unit_arguments(ingest)
    add_prometheus_arguments(ingest)
    ingest.set_defaults(func=_ingest)


# ``mlco ingest``'s flags for a prometheus:// source -> the query parameter (and ``read`` keyword) each overrides.
PROMETHEUS_FLAGS = {
    "start": "start",
    "end": "end",
    "step": "step",
    "level": "level",
    "namespace": "namespace",
    "selector": "selector",
    "window": "window",
    "bearer_token_file": "token_file",
    "basic_auth_user": "user",
    "basic_auth_password_file": "password_file",
    "ca_file": "ca_file",
}


def add_prometheus_arguments(parser) -> None:
    """Flags for a ``prometheus://`` source; each overrides the source string's parameter of that name."""
    group = parser.add_argument_group(
        "prometheus:// sources",
        "override the source string's query parameters; secrets come from files or from"
        " MLCO_PROMETHEUS_TOKEN / MLCO_PROMETHEUS_PASSWORD, never from the command line",
    )
    group.add_argument("--start", help="first instant: RFC 3339 or unix seconds (default: 14 days before --end)")
    group.add_argument("--end", help="last instant: RFC 3339 or unix seconds (default: now)")
    group.add_argument("--step", help="query step: 5m (default) or a divisor such as 15s, averaged into 5m slots")
    group.add_argument(
        "--level",
        choices=("pod", "workload", "node"),
        help="entities: pods, their Deployment/StatefulSet/DaemonSet, or node_exporter nodes (default workload)",
    )
    group.add_argument("--namespace", help="read only this namespace (pod and workload levels)")
    group.add_argument(
        "--selector", metavar="MATCHERS", help='extra PromQL label matchers, e.g. \'pod=~"web-.*",container!="proxy"\''
    )
    group.add_argument("--window", help="rate() window for CPU counters (default 5m)")
    group.add_argument(
        "--bearer-token-file",
        metavar="FILE",
        help="file with a bearer token ('serviceaccount': the pod's Kubernetes token; default $MLCO_PROMETHEUS_TOKEN)",
    )
    group.add_argument(
        "--basic-auth-user", metavar="USER", help="basic-auth user (password: see --basic-auth-password-file)"
    )
    group.add_argument(
        "--basic-auth-password-file",
        metavar="FILE",
        help="file with the basic-auth password (default $MLCO_PROMETHEUS_PASSWORD)",
    )
    group.add_argument("--ca-file", metavar="FILE", help="PEM file of the CA that signed the server's certificate")


def prometheus_options(args: argparse.Namespace) -> dict:
    """The prometheus:// flags the user gave, as ``read_fleet`` keywords; refused for any other source."""
    given = {
        key: getattr(args, flag) for flag, key in PROMETHEUS_FLAGS.items() if getattr(args, flag, None) is not None
    }
    if given and not checks.is_remote(args.path):
        flags = ", ".join("--" + flag.replace("_", "-") for flag, key in PROMETHEUS_FLAGS.items() if key in given)
        raise UserError(f"{flags}: only for a prometheus:// source, and {args.path} is a file")
    return given


def add_unit_arguments(parser) -> None:
    """``--time-unit`` and ``--cpu-unit``: the units a trace's values are in, where the file cannot say."""
    parser.add_argument(
        "--time-unit",
        choices=TIME_UNITS,
        default=None,
        help="unit of a trace's timestamps: epoch s/ms/us/ns or iso dates (default: told from the values;"
        " a trace mixing units is refused)",
    )
    parser.add_argument(
        "--cpu-unit",
        choices=CPU_UNITS,
        default=None,
        help="unit of a long CSV's cpu_util and mem_util (default: percent when a value exceeds 1.5;"
        " refused when none does)",
    )


def trace_options(args: argparse.Namespace) -> dict:
    """The unit options the user gave, as ``read_fleet`` keywords (none given: none passed)."""
    names = {"time_unit": getattr(args, "time_unit", None), "cpu_unit": getattr(args, "cpu_unit", None)}
    return {name: value for name, value in names.items() if value is not None}


def parse_mapping(text: str) -> dict[str, str]:
    """``"ts=time,cpu_util=cpu"`` -> ``{"ts": "time", "cpu_util": "cpu"}``."""
    mapping = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, column = pair.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=COLUMN pairs separated by commas, got {pair!r}")
        mapping[name.strip()] = column.strip()
    return mapping


def summarize(fleet: Fleet) -> str:
    """One line: entities, rows, time span, grid and (when labelled) the share of peak rows."""
    metrics = fleet.metrics
    first, last = metrics["ts"].min(), metrics["ts"].max()
    days = (last - first).total_seconds() / 86_400
    line = (
        f"{len(fleet.entities)} entities, {len(metrics):,} rows,"
        f" {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC ({days:.1f} days), grid {STEP_SECONDS} s"
    )
    labelled = metrics["is_peak"].dropna()
    if len(labelled):
        line += f", peak share {labelled.mean():.2%}"
    return line


def gap_line(fleet: Fleet) -> str:
    """One line: entities with gaps, missing slots, the longest gap, and raw samples merged into slots."""
    gaps = fleet.gaps
    expected = int(gaps["expected_slots"].sum())
    missing = int(gaps["missing_slots"].sum())
    with_gaps = int((gaps["missing_slots"] > 0).sum())
    share = missing / expected if expected else 0.0
    longest = int(gaps["longest_gap_slots"].max()) if len(gaps) else 0
    line = (
        f"gaps: {with_gaps} of {len(gaps)} entities, {missing:,} missing slots ({share:.2%}), longest {longest} slots"
    )
    duplicates = int(gaps["duplicate_samples"].sum()) if "duplicate_samples" in gaps else 0
    collided = int(gaps["collided_slots"].sum()) if "collided_slots" in gaps else 0
    return (
        line + f"; merged: {duplicates:,} duplicate timestamps averaged, {collided:,} slots averaging several samples"
    )


def _generate(args: argparse.Namespace) -> int:
    checks.at_least(args.records, "--records", 1)
    checks.at_least(args.entities, "--entities", 1)
    if args.entities is not None and args.entities > args.records:
        raise UserError(f"--entities {args.entities}: more VMs than --records {args.records} rows")
    checks.at_least(args.seed, "--seed", 0)
    checks.fleet_file(args.out)
    from ml_cloud_optimizer.data.synthetic import generate_fleet  # SciPy: most of mlco's start-up, so only here

    fleet = generate_fleet(args.records, entities=args.entities, seed=args.seed)
    paths = write_fleet(fleet, args.out)
    print(f"generated {summarize(fleet)}")
    print(gap_line(fleet))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    checks.existing(args.path, "PATH")
    checks.timestamp(args.epoch, "--epoch")
    checks.fleet_file(args.out)
    options = trace_options(args) | prometheus_options(args)
    if args.map is not None:
        options["columns"] = args.map
    if args.epoch is not None:
        options["epoch"] = args.epoch
    fleet = read_fleet(args.path, args.format, **options)
    print(f"read {fleet.source}: {summarize(fleet)}")
    print(gap_line(fleet))
    if args.out:
        print("wrote " + ", ".join(str(p) for p in write_fleet(fleet, args.out)))
    return 0
