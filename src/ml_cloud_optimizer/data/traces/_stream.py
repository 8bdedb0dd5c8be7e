"""Steps every trace reader shares: stream, snap to the 5-minute grid, build the fleet.

The formats differ only in how a file's columns map to ours. Everything after that (reading
in bounded blocks, turning any clock into epoch seconds, averaging samples onto the 300 s
grid, sizing and pricing entities, validating, reporting gaps) lives here once, so a new
format cannot get the grid, the gap report or the memory bound subtly wrong.

Units are never guessed silently. A ``Clock`` reads a trace's timestamps in one unit for the
whole trace: told (``time_unit``), or told apart by magnitude, and a trace whose numbers fall
in two magnitudes (seconds and milliseconds mixed) is refused with a message naming
``--time-unit``. (``long.util_unit`` does the same for utilisation, ``--cpu-unit``.) Samples that
``snap`` averages together are counted, and the gap report shows them.

The module is private to ``data.traces``: its names carry no underscore because the format
modules import them, but nothing outside the package should.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ml_cloud_optimizer.data.schema import (
    STEP,
    STEP_SECONDS,
    VALUE_COLUMNS,
    DataValidationError,
    Fleet,
    estimate_hourly_price,
    validate_fleet,
)

__all__ = [
    "BLOCK_BYTES",
    "CPU_UNITS",
    "EPOCH",
    "TIME_UNITS",
    "Clock",
    "batches",
    "csv_fields",
    "data_csvs",
    "entity_frame",
    "epoch_seconds",
    "existing",
    "first_line",
    "is_number",
    "numbered",
    "report_gaps",
    "snap",
    "to_fleet",
    "with_percent",
]

# Blocks this size keep memory flat on multi-gigabyte traces (Azure, Alibaba) yet few enough
# that per-block grouping costs little.
BLOCK_BYTES = 16 << 20
EPOCH = pd.Timestamp(0, tz="UTC")

TIME_UNITS = ("s", "ms", "us", "ns", "iso")
CPU_UNITS = ("fraction", "percent")
_PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
# An epoch number below 1e11 is seconds (until the year 5138), below 1e14 milliseconds, and so
# on: each unit's dates from 1973 to 5138 fill one band, so a band says the unit.
_BAND_TOPS = np.array([1e11, 1e14, 1e17])
_BAND_UNITS = ("s", "ms", "us", "ns")
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds", "iso": "a date"}
_LAST_SECOND = pd.Timestamp.max.value // 10**9  # pandas' last representable instant, in epoch seconds
_TIME_HINT = "say which unit they are in with --time-unit {s,ms,us,ns,iso} (time_unit= in read_trace)"


# --- files ---------------------------------------------------------------------------------


def existing(path: str | Path) -> Path:
    """``path`` as a Path; a missing one fails here, before any format is guessed."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return path


def first_line(path: Path) -> str:
    """The first line of a plain or gzipped file: the header, or a sample to sniff."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.readline().rstrip("\r\n")
    except OSError as exc:
        raise DataValidationError(f"{path}: cannot read: {exc}") from None


def csv_fields(line: str) -> list[str]:
    """A comma-separated line's fields, stripped."""
    return [f.strip() for f in line.split(",")]


def is_number(text: str) -> bool:
    """Whether a field reads as a number: headerless formats start with numbers, headers don't."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def data_csvs(directory: Path) -> list[Path]:
    """The CSVs of a trace directory, without the ``entities.csv`` catalogue beside them."""
    return numbered(p for p in directory.glob("*.csv") if p.name != "entities.csv")


def numbered(paths: Iterable[Path]) -> list[Path]:
    """Files in natural order (2.csv before 10.csv), as traces number them."""
    return sorted(paths, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


# --- clocks --------------------------------------------------------------------------------


def epoch_seconds(epoch: str) -> float:
    """An ISO date as epoch seconds (UTC when no zone): the anchor of traces that count from zero."""
    try:
        stamp = pd.Timestamp(epoch)
    except ValueError:
        raise DataValidationError(f"epoch: cannot read {epoch!r} as a timestamp") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return (stamp - EPOCH) / pd.Timedelta(seconds=1)


class Clock:
    """Epoch seconds from a trace's timestamps, in one unit for the whole trace.

    ``unit`` (one of ``TIME_UNITS``) is obeyed when given. When None, numbers are told apart
    by magnitude and text is read as ISO dates; a trace whose stamps fall in two units, in
    one block or across blocks, is refused: dividing all of them by one factor would put
    some decades off (epoch milliseconds read as seconds, or seconds as 1970 dates).
    """

    def __init__(self, path: Path, unit: str | None = None) -> None:
        if unit is not None and unit not in TIME_UNITS:
            raise DataValidationError(f"time unit {unit!r}: expected one of {', '.join(TIME_UNITS)}")
        self.path, self.unit = path, unit
        self._seen: tuple[str, object] | None = None  # the guessed unit and a stamp showing it

    def seconds(self, ts: pd.Series) -> np.ndarray:
        """``ts`` (numbers or text) as float epoch seconds; NaN where a stamp is missing."""
        if self.unit == "iso":
            return self._iso(ts)
        numbers = pd.to_numeric(ts, errors="coerce")
        text = (numbers.isna() & ts.notna()).to_numpy()
        if self.unit is not None:
            if text.any():
                raise DataValidationError(
                    f"{self.path}: timestamp {ts[text].iloc[0]!r} is not a number of {_UNIT_NAMES[self.unit]};"
                    " for dates pass --time-unit iso"
                )
            return numbers.to_numpy(dtype="float64") / _PER_SECOND[self.unit]
        if text.any():
            if not text[ts.notna().to_numpy()].all():
                self._mixed(ts[text].iloc[0], "iso", numbers[~text & ts.notna().to_numpy()].iloc[0], "s")
            self._agree("iso", ts[text].iloc[0])
            return self._iso(ts)
        values = numbers.to_numpy(dtype="float64")
        known = values[~np.isnan(values)]
        bands = np.searchsorted(_BAND_TOPS, np.abs(known), side="right")
        present = np.unique(bands)
        if present.size > 1:
            first, second = (known[bands == b][0] for b in present[:2])
            self._mixed(first, _BAND_UNITS[present[0]], second, _BAND_UNITS[present[1]])
        if present.size:
            unit = _BAND_UNITS[present[0]]
            self._agree(unit, known[0])
            return values / _PER_SECOND[unit]
        return values

    def _agree(self, unit: str, example: object) -> None:
        if self._seen is None:
            self._seen = (unit, example)
        elif self._seen[0] != unit:
            self._mixed(self._seen[1], self._seen[0], example, unit)

    def _mixed(self, first: object, first_unit: str, second: object, second_unit: str) -> None:
        raise DataValidationError(
            f"{self.path}: timestamps mix units ({_shown(first)} reads as {_UNIT_NAMES[first_unit]},"
            f" {_shown(second)} as {_UNIT_NAMES[second_unit]}); {_TIME_HINT}"
        )

    def _iso(self, ts: pd.Series) -> np.ndarray:
        try:
            stamps = pd.to_datetime(ts.astype("string"), utc=True, format="ISO8601")
        except (ValueError, TypeError):
            example = ts.dropna().iloc[0] if ts.notna().any() else None
            raise DataValidationError(
                f"{self.path}: timestamps are neither epoch numbers nor ISO dates (e.g. {example!r}); {_TIME_HINT}"
            ) from None
        return ((stamps - EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64", na_value=np.nan)


def _shown(value: object) -> str:
    """A stamp as the file wrote it: 1709287200, not 1709287200.0."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


# --- streaming and the grid ----------------------------------------------------------------


def batches(path: Path, what: str, *, names=None, delimiter=",", types=None, include=None) -> Iterator[pd.DataFrame]:
    """Stream a CSV (plain or compressed) as pandas blocks; read errors become one-line messages."""
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=include),
        )
        for batch in reader:
            yield batch.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise DataValidationError(f"{path}: cannot read as {what}: {reason}") from None


def with_percent(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Percent columns as the canonical fractions."""
    return frame.assign(**{c: frame[c] / 100.0 for c in columns})


def snap(parts: Iterable[pd.DataFrame], path: Path) -> pd.DataFrame:
    """Average samples per (entity, nearest 300 s slot), block by block, then across blocks.

    Sums and counts, not means, are kept per block so that a slot split across two blocks
    averages exactly as if it had been read whole.

    Each part has ``entity_id``, ``t`` (epoch seconds) and value columns. Returns one row
    per (entity_id, slot) with ``slot`` in epoch seconds; a value is NaN where no sample
    in the slot had it. ``samples`` counts the raw samples averaged into the slot and
    ``stamps`` their distinct timestamps (per block: a repeat split across two blocks counts
    as a second timestamp), which ``to_fleet`` turns into the gap report's merge counts.
    """
    sums, counts, tallies = [], [], []
    for part in parts:
        if part.empty:
            continue
        unplaced = part["t"].isna() | part["entity_id"].isna()
        if unplaced.any():
            raise DataValidationError(f"{path}: {int(unplaced.sum())} samples have no timestamp or no entity id")
        slot = np.floor(part["t"].to_numpy(dtype="float64") / STEP_SECONDS + 0.5).astype("int64") * STEP_SECONDS
        placed = part.assign(slot=slot)
        grouped = placed.drop(columns="t").groupby(["entity_id", "slot"], sort=False)
        sums.append(grouped.sum())
        counts.append(grouped.count())
        stamps = placed.groupby(["entity_id", "slot"], sort=False)["t"].nunique()
        tallies.append(pd.DataFrame({"samples": grouped.size(), "stamps": stamps}))
    if not sums:
        raise DataValidationError(f"{path}: the trace holds no samples")
    total, seen, tally = pd.concat(sums), pd.concat(counts), pd.concat(tallies)
    if len(sums) > 1:
        total, seen = total.groupby(level=[0, 1]).sum(), seen.groupby(level=[0, 1]).sum()
        tally = tally.groupby(level=[0, 1]).sum()
    return (total / seen.where(seen > 0)).join(tally).reset_index()


# --- the fleet -----------------------------------------------------------------------------


def entity_frame(ids, prefix: str, *, service, region, vcpus, mem_gib) -> pd.DataFrame:
    """Entity rows for a trace: sizes as given, prices estimated from them."""
    vcpus = np.broadcast_to(np.asarray(vcpus, dtype="float64"), ids.shape)  # fractions kept: 0.5 is half a core
    mem_gib = np.broadcast_to(np.asarray(mem_gib, dtype="float64"), ids.shape)
    sizes = pd.Series(_formatted(vcpus, "{:g}") + "c-" + _formatted(mem_gib, "{:.0f}") + "g", dtype=object)
    return pd.DataFrame(
        {
            "entity_id": pd.array(ids, dtype="string"),
            "service": service,
            "instance_type": (f"{prefix}-" + sizes).to_numpy(),
            "region": region,
            "vcpus": vcpus,
            "mem_gib": mem_gib,
            "hourly_price": estimate_hourly_price(vcpus, mem_gib),
        }
    )


def _formatted(values: np.ndarray, pattern: str) -> np.ndarray:
    """``pattern`` applied to each value, formatting each distinct value once (traces repeat a few sizes)."""
    unique, inverse = np.unique(values, return_inverse=True)
    return np.array([pattern.format(v) for v in unique], dtype=object)[inverse.reshape(-1)]


def to_fleet(slots: pd.DataFrame, entities: pd.DataFrame, source: str) -> Fleet:
    """Canonical metrics from snapped slots; a slot without CPU is a gap, not a row.

    Traces carry no peak labels, so ``is_peak`` is left missing (NA) rather than False.
    """
    slots = slots[slots["cpu_util"].notna()]
    beyond = slots["slot"].abs() > _LAST_SECOND
    if beyond.any():
        when = slots.loc[beyond, "slot"].iloc[0]
        raise DataValidationError(
            f"{source}: timestamp {when:.0f} s is past the year 2262, so not epoch seconds; {_TIME_HINT}"
        )
    n = len(slots)
    metrics = pd.DataFrame(
        {
            "entity_id": slots["entity_id"].to_numpy(dtype=object),
            "ts": pd.to_datetime(slots["slot"].to_numpy(), unit="s", utc=True),
            **{c: slots[c].to_numpy() if c in slots else np.full(n, np.nan) for c in VALUE_COLUMNS},
            "is_peak": pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool)),
        }
    )
    entities = entities[entities["entity_id"].isin(metrics["entity_id"])].reset_index(drop=True)
    try:
        fleet = validate_fleet(Fleet(metrics=metrics, entities=entities, source=source))
    except DataValidationError as exc:
        raise DataValidationError(f"{source}: {exc}") from None
    merged = None
    if "samples" in slots and "stamps" in slots:
        per_entity = slots.assign(
            duplicate_samples=slots["samples"] - slots["stamps"], collided_slots=slots["stamps"] > 1
        ).groupby("entity_id", sort=False)
        merged = per_entity[["duplicate_samples", "collided_slots"]].sum()
    fleet.gaps = report_gaps(fleet.metrics, merged)
    return fleet


GAP_COLUMNS = [
    "entity_id",
    "expected_slots",
    "present_slots",
    "missing_slots",
    "longest_gap_slots",
    "duplicate_samples",
    "collided_slots",
]


def report_gaps(metrics: pd.DataFrame, merged: pd.DataFrame | None = None) -> pd.DataFrame:
    """Missing 5-minute slots per entity, between its first and last sample, and merged samples.

    Returns one row per entity with ``entity_id``, ``expected_slots``, ``present_slots``,
    ``missing_slots``, ``longest_gap_slots`` (the longest run of missing slots), and from
    ``merged`` (indexed by entity id; zeros when None, as for a fleet already on the grid)
    ``duplicate_samples`` (raw samples repeating a timestamp, averaged away) and
    ``collided_slots`` (slots that averaged several distinct raw timestamps).
    """
    columns = GAP_COLUMNS
    if metrics.empty:
        return pd.DataFrame({c: pd.Series(dtype="string" if c == "entity_id" else "int64") for c in columns})
    codes, names = pd.factorize(metrics["entity_id"])
    ns = pd.to_datetime(metrics["ts"], utc=True).dt.tz_localize(None).to_numpy("datetime64[ns]").view("int64")
    slot = ns // STEP.value  # slots since the epoch
    step_codes, step_slots = np.diff(codes), np.diff(slot)
    if not ((step_codes > 0) | ((step_codes == 0) & (step_slots > 0))).all():  # a validated fleet is in order
        order = np.lexsort((slot, codes))
        codes, slot = codes[order], slot[order]
    distinct = np.r_[True, (codes[1:] != codes[:-1]) | (slot[1:] != slot[:-1])]
    codes, slot = codes[distinct], slot[distinct]
    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    last = np.r_[first[1:] - 1, codes.size - 1]
    hole = np.r_[0, np.diff(slot) - 1]
    hole[first] = 0
    expected = slot[last] - slot[first] + 1
    present = last - first + 1
    report = pd.DataFrame(
        {
            "entity_id": pd.array(np.asarray(names, dtype=object)[codes[first]], dtype="string"),
            "expected_slots": expected,
            "present_slots": present,
            "missing_slots": expected - present,
            "longest_gap_slots": np.maximum.reduceat(hole, first),
        }
    )
    for column in ("duplicate_samples", "collided_slots"):
        counts = merged[column] if merged is not None else pd.Series(dtype="int64")
        per_entity = counts.reindex(report["entity_id"].to_numpy(dtype=object)).fillna(0)
        report[column] = per_entity.to_numpy(dtype="int64")
    return report.sort_values("entity_id", ignore_index=True)
