"""Synthetic cloud workload: a fleet of VMs whose metrics look like production telemetry.

Real traces are few, short and unlabelled; the generator gives any amount of data with
known structure and known peaks, so models and tests can check that they find what is
there. Each entity is a VM running one of three services:

* ``web``: a business-hours hump every day, quieter weekends, traffic bursts.
* ``batch``: jobs that switch the VM between near-idle and busy for hours at a time.
* ``db``: steady CPU with a small daily swing, memory high and slowly growing.

On top of that every entity gets a slow trend, AR(1) noise, rare bursts (labelled
``is_peak``), nightly maintenance dips and a few dropped samples. Everything is drawn
as (entities x steps) numpy arrays from one seeded generator, so a seed always gives
the same fleet and a million rows take about a second.

Example:
    >>> fleet = generate_fleet(50_000, seed=1)
    >>> fleet.metrics.columns[:3].tolist()
    ['entity_id', 'ts', 'cpu_util']
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from ml_cloud_optimizer.data.io import report_gaps
from ml_cloud_optimizer.data.schema import STEP_SECONDS, Fleet, validate_fleet
from ml_cloud_optimizer.errors import UserInputError

__all__ = ["INSTANCE_TYPES", "REGIONS", "SERVICES", "generate_fleet"]

STEPS_PER_DAY = 86_400 // STEP_SECONDS
_DEFAULT_DAYS = 21

# AWS on-demand Linux prices in us-east-1 (USD per hour).
INSTANCE_TYPES = pd.DataFrame(
    [
        ("m5.large", "m5", 2, 8.0, 0.096),
        ("m5.xlarge", "m5", 4, 16.0, 0.192),
        ("m5.2xlarge", "m5", 8, 32.0, 0.384),
        ("c5.large", "c5", 2, 4.0, 0.085),
        ("c5.xlarge", "c5", 4, 8.0, 0.170),
        ("c5.2xlarge", "c5", 8, 16.0, 0.340),
        ("r5.large", "r5", 2, 16.0, 0.126),
        ("r5.xlarge", "r5", 4, 32.0, 0.252),
        ("r5.2xlarge", "r5", 8, 64.0, 0.504),
    ],
    columns=["instance_type", "family", "vcpus", "mem_gib", "hourly_price"],
)

# Region -> price multiplier relative to us-east-1.
REGIONS = {"us-east-1": 1.00, "eu-west-1": 1.11, "ap-southeast-1": 1.24}

# Per service: share of the fleet, instance families, and the ranges each entity's
# parameters are drawn from. ``per_busy_vcpu`` scales request rate (req/s), network and
# disk (KB/s) with the work done, so all metrics of an entity move together.
SERVICES: dict[str, dict] = {
    "web": {
        "share": 0.5,
        "families": ("m5", "c5"),
        "base": (0.06, 0.15),
        "daily_amp": (0.25, 0.45),
        "weekend_drop": (0.35, 0.6),
        "ar_phi": 0.85,
        "ar_sigma": (0.012, 0.025),
        "mem_base": (0.25, 0.4),
        "mem_per_cpu": 0.3,
        "mem_growth_30d": (-0.02, 0.03),
        "per_busy_vcpu": {
            "request_rate": 60.0,
            "net_in_kbps": 150.0,
            "net_out_kbps": 1200.0,
            "disk_read_kbps": 40.0,
            "disk_write_kbps": 120.0,
        },
    },
    "batch": {
        "share": 0.25,
        "families": ("c5",),
        "base": (0.02, 0.06),
        "on_level": (0.55, 0.85),
        "on_hours": (1.0, 6.0),
        "off_hours": (3.0, 12.0),
        "weekend_drop": (0.2, 0.35),
        "ar_phi": 0.7,
        "ar_sigma": (0.015, 0.03),
        "mem_base": (0.1, 0.2),
        "mem_per_cpu": 0.5,
        "mem_growth_30d": (-0.01, 0.01),
        "per_busy_vcpu": {
            "request_rate": 0.2,
            "net_in_kbps": 800.0,
            "net_out_kbps": 200.0,
            "disk_read_kbps": 3000.0,
            "disk_write_kbps": 1500.0,
        },
    },
    "db": {
        "share": 0.25,
        "families": ("r5",),
        "base": (0.15, 0.3),
        "daily_amp": (0.04, 0.1),
        "weekend_drop": (0.1, 0.25),
        "ar_phi": 0.95,
        "ar_sigma": (0.004, 0.008),
        "mem_base": (0.6, 0.75),
        "mem_per_cpu": 0.1,
        "mem_growth_30d": (0.01, 0.05),
        "per_busy_vcpu": {
            "request_rate": 200.0,
            "net_in_kbps": 400.0,
            "net_out_kbps": 1500.0,
            "disk_read_kbps": 2000.0,
            "disk_write_kbps": 800.0,
        },
    },
}

_BURSTS_PER_DAY = 0.5
_BURST_STEPS = (3, 13)  # 15 minutes to an hour
_BURST_SIZE = (0.25, 0.5)
_DIPS_PER_DAY = 1 / 7  # about one maintenance window a week, at night
_DIP_STEPS = (6, 25)
_DROP_RATE = 0.0015  # isolated lost samples
_GAPS_PER_DAY = 1 / 14  # short collector outages
_GAP_STEPS = (2, 9)
_CPU_FLOOR = 0.005


def generate_fleet(
    records: int = 100_000,
    *,
    entities: int | None = None,
    seed: int = 0,
    start: str = "2026-01-05T00:00:00Z",
) -> Fleet:
    """Generate a validated canonical fleet of about ``records`` metric rows.

    Args:
        records: rows to aim for; ``entities * (records // entities)`` slots are
            generated, of which about 0.3% are then dropped as missing samples.
        entities: number of VMs; by default enough for about 21 days of 5-minute
            samples each (``max(1, records // (21 * 288))``).
        seed: seed of the one random generator; the same seed gives the same fleet.
        start: first timestamp (UTC), on the 5-minute grid. The default is a Monday.

    Returns:
        A ``Fleet`` with ``source="synthetic"``, its gap report filled in.
    """
    if records < 1:
        raise UserInputError(f"records must be at least 1, got {records}")
    n_entities = max(1, records // (_DEFAULT_DAYS * STEPS_PER_DAY)) if entities is None else entities
    if not 1 <= n_entities <= records:
        raise UserInputError(f"entities must be between 1 and records ({records}), got {n_entities}")
    if seed < 0:
        raise UserInputError(f"seed must be 0 or more, got {seed}")
    try:
        start_ts = pd.Timestamp(start)
    except ValueError:
        raise UserInputError(f"start {start!r}: not a timestamp; give an ISO date such as 2026-01-05T00:00Z") from None
    start_ts = start_ts.tz_localize("UTC") if start_ts.tzinfo is None else start_ts.tz_convert("UTC")
    start_s = start_ts.value // 10**9
    if start_ts.value % (STEP_SECONDS * 10**9):
        raise UserInputError(f"start must lie on the {STEP_SECONDS} s grid, got {start}")

    rng = np.random.default_rng(seed)
    steps = records // n_entities
    entities_frame = _draw_entities(rng, n_entities)
    service = entities_frame["service"].to_numpy()
    t_s = start_s + STEP_SECONDS * np.arange(steps, dtype=np.int64)

    cpu, is_peak, dip = _cpu(rng, service, t_s)
    metrics = _dependent_metrics(rng, service, entities_frame["vcpus"].to_numpy(), cpu, dip)
    keep = ~_missing(rng, n_entities, steps)

    ids = entities_frame["entity_id"].to_numpy(dtype=object)
    # Rows in the canonical order, entity ids sorted as text and time within each: validate_fleet
    # then has no sort and no duplicate scan to do (at 10M rows they took 9 of the 35 seconds).
    order = np.argsort(ids, kind="stable")
    rows = (order[:, None] * steps + np.arange(steps)).ravel()[keep[order].ravel()]
    frame = pd.DataFrame(
        {
            "entity_id": pd.array(np.repeat(ids[order], steps)[keep[order].ravel()], dtype="string"),
            "ts": pd.to_datetime(np.tile(t_s, n_entities)[keep[order].ravel()], unit="s", utc=True),
            "cpu_util": cpu.ravel()[rows],
            **{name: values.ravel()[rows] for name, values in metrics.items()},
            "is_peak": pd.array(is_peak.ravel()[rows], dtype="boolean"),
        }
    )
    fleet = validate_fleet(Fleet(metrics=frame, entities=entities_frame, source="synthetic"))
    fleet.gaps = report_gaps(fleet.metrics)
    return fleet


def _uniform(rng: np.random.Generator, ranges: np.ndarray) -> np.ndarray:
    """One draw per row of an (n, 2) array of [low, high) ranges."""
    return rng.uniform(ranges[:, 0], ranges[:, 1])


def _param(service: np.ndarray, key: str) -> np.ndarray:
    """Per-entity array of a service parameter (a range gives an (n, 2) array)."""
    return np.array([SERVICES[s][key] for s in service], dtype=float)


def _draw_entities(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Services in their fleet shares (largest remainder, so small fleets still mix), sizes, regions."""
    names = list(SERVICES)
    shares = np.array([SERVICES[s]["share"] for s in names]) * n
    counts = np.floor(shares).astype(int)
    counts[np.argsort(counts - shares, kind="stable")[: n - counts.sum()]] += 1
    service = rng.permutation(np.repeat(names, counts))

    catalogue = INSTANCE_TYPES.set_index("instance_type")
    choice = []
    for s in service:  # one pick per entity, not per sample
        options = INSTANCE_TYPES.loc[INSTANCE_TYPES["family"].isin(SERVICES[s]["families"]), "instance_type"]
        choice.append(options.iloc[rng.integers(len(options))])
    sizes = catalogue.loc[choice]
    region = rng.choice(list(REGIONS), size=n, p=[0.5, 0.3, 0.2])
    price = np.round(sizes["hourly_price"].to_numpy() * np.array([REGIONS[r] for r in region]), 4)
    return pd.DataFrame(
        {
            "entity_id": [f"{s}-{i:04d}" for i, s in enumerate(service)],
            "service": service,
            "instance_type": choice,
            "region": region,
            "vcpus": sizes["vcpus"].to_numpy(dtype="float64"),
            "mem_gib": sizes["mem_gib"].to_numpy(),
            "hourly_price": price,
        }
    ).astype({"entity_id": "string", "service": "string", "instance_type": "string", "region": "string"})


def _events(rng, n: int, steps: int, per_day: float, length: tuple[int, int], *, night=False, size=None):
    """Coverage count and summed size of random intervals on an (n, steps) grid.

    Interval starts are uniform over the span, or between 02:00 and 04:00 UTC on a random
    day when ``night``; lengths are uniform in ``length``; a difference array and one
    cumulative sum lay them out.
    """
    count = rng.poisson(per_day * steps / STEPS_PER_DAY, size=n)
    owner = np.repeat(np.arange(n), count)
    if night:
        day = rng.integers(0, max(1, steps // STEPS_PER_DAY), owner.size)
        begin = day * STEPS_PER_DAY + rng.integers(2 * 12, 4 * 12, owner.size)
    else:
        begin = rng.integers(0, steps, owner.size)
    end = np.minimum(begin + rng.integers(*length, owner.size), steps)
    inside = begin < steps
    owner, begin, end = owner[inside], begin[inside], end[inside]
    magnitude = rng.uniform(*size, owner.size) if size is not None else np.ones(owner.size)
    cover = np.zeros((n, steps + 1))
    level = np.zeros((n, steps + 1))
    np.add.at(cover, (owner, begin), 1)
    np.add.at(cover, (owner, end), -1)
    np.add.at(level, (owner, begin), magnitude)
    np.add.at(level, (owner, end), -magnitude)
    covered = np.cumsum(cover, axis=1)[:, :steps] > 0.5
    return covered, np.where(covered, np.cumsum(level, axis=1)[:, :steps], 0.0)


def _on_off(rng, on_mean: np.ndarray, off_mean: np.ndarray, steps: int) -> np.ndarray:
    """Alternating off/on runs with exponential lengths (a renewal process), per entity."""
    n = on_mean.size
    k = int(2.5 * steps / max(1.0, float(np.min(on_mean + off_mean)) / 2)) + 4
    means = np.where(np.arange(k) % 2 == 0, off_mean[:, None], on_mean[:, None])
    runs = np.maximum(1, np.ceil(rng.exponential(means))).astype(np.int64)
    runs[:, 0] = rng.integers(1, np.maximum(2, 2 * off_mean.astype(np.int64)))  # random phase
    ends = np.cumsum(runs, axis=1)
    switches = np.zeros((n, steps), dtype=np.int64)
    row, col = np.nonzero(ends < steps)
    switches[row, ends[row, col]] = 1
    return np.cumsum(switches, axis=1) % 2 == 1


def _cpu(rng: np.random.Generator, service: np.ndarray, t_s: np.ndarray):
    """CPU utilisation (entities x steps), with the burst labels and maintenance-dip mask."""
    n, steps = service.size, t_s.size
    hour = (t_s % 86_400) / 3600.0
    weekend = (((t_s // 86_400) + 3) % 7 >= 5).astype(float)  # 1970-01-01 was a Thursday
    days = (t_s - t_s[0]) / 86_400.0

    # Business-hours hump: a von Mises bump peaking mid-afternoon, shifted per entity.
    peak_hour = 14.0 + rng.normal(0.0, 1.5, n)
    sharpness = rng.uniform(1.5, 4.0, n)
    hump = np.exp(sharpness[:, None] * (np.cos(2 * np.pi * (hour[None, :] - peak_hour[:, None]) / 24) - 1))
    quiet = 1.0 - _uniform(rng, _param(service, "weekend_drop"))[:, None] * weekend[None, :]

    base = _uniform(rng, _param(service, "base"))[:, None]
    trend = rng.normal(0.0, 0.04, n)[:, None] * days[None, :] / 30
    wave_period = rng.uniform(10.0, 40.0, n)[:, None]
    trend = trend + rng.uniform(0.0, 0.03, n)[:, None] * np.sin(
        2 * np.pi * days[None, :] / wave_period + rng.uniform(0, 2 * np.pi, n)[:, None]
    )

    cpu = np.empty((n, steps))
    is_batch = service == "batch"
    steady = ~is_batch
    amp = np.zeros(n)
    amp[steady] = _uniform(rng, _param(service[steady], "daily_amp"))
    cpu[steady] = (base + amp[:, None] * hump * quiet)[steady]
    if is_batch.any():
        on = _on_off(
            rng,
            _uniform(rng, _param(service[is_batch], "on_hours")) * 12,
            _uniform(rng, _param(service[is_batch], "off_hours")) * 12,
            steps,
        )
        on_level = _uniform(rng, _param(service[is_batch], "on_level"))[:, None]
        cpu[is_batch] = base[is_batch] + on * (on_level - base[is_batch]) * quiet[is_batch]

    noise = rng.standard_normal((n, steps)) * _uniform(rng, _param(service, "ar_sigma"))[:, None]
    for phi in np.unique(_param(service, "ar_phi")):
        rows = _param(service, "ar_phi") == phi
        noise[rows] = lfilter([1.0], [1.0, -phi], noise[rows], axis=1)

    burst, burst_size = _events(rng, n, steps, _BURSTS_PER_DAY, _BURST_STEPS, size=_BURST_SIZE)
    dip, _ = _events(rng, n, steps, _DIPS_PER_DAY, _DIP_STEPS, night=True)

    cpu = cpu + trend + noise + burst_size
    cpu = np.where(dip, cpu * 0.1, cpu)
    return np.clip(cpu, _CPU_FLOOR, 1.0), burst & ~dip, dip


def _missing(rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    """Slots the collector lost: isolated samples plus short outages."""
    outage, _ = _events(rng, n, steps, _GAPS_PER_DAY, _GAP_STEPS)
    return outage | (rng.random((n, steps)) < _DROP_RATE)


def _dependent_metrics(rng, service: np.ndarray, vcpus: np.ndarray, cpu: np.ndarray, dip: np.ndarray):
    """Memory, requests, network and disk, driven by the CPU work each entity does."""
    n, steps = cpu.shape
    days = np.arange(steps) / STEPS_PER_DAY
    mem = (
        _uniform(rng, _param(service, "mem_base"))[:, None]
        + _param(service, "mem_per_cpu")[:, None] * cpu
        + _uniform(rng, _param(service, "mem_growth_30d"))[:, None] * days[None, :] / 30
        + lfilter([1.0], [1.0, -0.98], rng.standard_normal((n, steps)) * 0.002, axis=1)
    )
    mem = np.where(dip, mem * 0.6, mem)  # restarted processes come back with a smaller heap
    out = {"mem_util": np.clip(mem, 0.01, 0.98)}

    work = np.maximum(cpu - _CPU_FLOOR, 0.0) * vcpus[:, None]
    for name in ("net_in_kbps", "net_out_kbps", "disk_read_kbps", "disk_write_kbps", "request_rate"):
        scale = np.array([SERVICES[s]["per_busy_vcpu"][name] for s in service])[:, None]
        out[name] = np.round(scale * work * rng.lognormal(0.0, 0.15, (n, steps)), 3)
    return out
