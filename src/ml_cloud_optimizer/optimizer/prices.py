"""What a core-hour and a GiB-hour cost: CPU and memory priced apart, from defaults or a price file.

Why apart: an instance's price pays for its vCPUs *and* its memory. Valuing a core at
``hourly_price / vcpus`` counts the memory share of the price as saved whenever CPU shrinks.
Here an entity costs ``cores x CPU rate + GiB x RAM rate``, so shrinking CPU saves only the
CPU share and shrinking memory only the memory share.

Where the rates come from, in order:

* **Built-in list-price defaults** (``DEFAULT_PRICES``): $0.0316 per core-hour and $0.0042 per
  GiB-hour on demand (``data.schema``'s estimate, which is OpenCost's ``configs/default.json``
  rounded), and OpenCost's default spot rates. Every report names them as defaults.
* **OpenCost's custom pricing JSON** (``configs/default.json`` layout): flat rates for every
  entity, from the string values ``CPU``, ``RAM``, ``spotCPU``, ``spotRAM`` (hourly USD per
  core and per GiB; other keys such as ``GPU`` or ``storage`` are ignored).
* **Instance prices from a CSV**, either Kubecost's CSV pricing layout
  (``EndTimestamp,InstanceID,Region,AssetClass,InstanceIDField,InstanceType,MarketPriceHourly,Version``)
  or a plain ``instance_type,region,on_demand_hourly,spot_hourly``. A node's price is split
  into a CPU and a RAM rate with the default CPU:RAM price ratio, as OpenCost does for a node
  whose total price alone is known: ``ram = price / (vcpus x ratio + GiB)``, ``cpu = ram x
  ratio``. Entities whose instance type (and region, where the row names one) match get
  those rates; the rest keep the defaults, and ``EntityRates`` counts both.

Example::

    prices = read_prices("opencost.json")          # or DEFAULT_PRICES
    rates = prices.rates(fleet.entities)           # per-entity USD per core-hour / GiB-hour
    print(prices.describe(rates))
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml_cloud_optimizer.data.schema import _PRICE_PER_GIB_HOUR, _PRICE_PER_VCPU_HOUR
from ml_cloud_optimizer.errors import UserInputError

__all__ = [
    "DEFAULT_PRICES",
    "DEFAULT_SOURCE",
    "EntityRates",
    "NodePrice",
    "PriceFileError",
    "Prices",
    "read_prices",
]

DEFAULT_SOURCE = "built-in list-price defaults"

# OpenCost's configs/default.json spot rates (USD per core-hour and per GiB-hour).
_SPOT_PER_VCPU_HOUR = 0.006655
_SPOT_PER_GIB_HOUR = 0.000892

# Kubecost CSV columns: the two a row cannot do without, and the header as documented.
_KUBECOST_REQUIRED = ("InstanceID", "MarketPriceHourly")
_KUBECOST_HEADER = "EndTimestamp,InstanceID,Region,AssetClass,InstanceIDField,InstanceType,MarketPriceHourly,Version"
_SIMPLE_REQUIRED = ("instance_type", "on_demand_hourly")
_SIMPLE_HEADER = "instance_type,region,on_demand_hourly,spot_hourly"


class PriceFileError(UserInputError):
    """A price file that cannot be read; the one-line message names the file and what is wrong."""


@dataclass(frozen=True)
class NodePrice:
    """Hourly USD price of one instance (node), on demand and at spot (None: no spot price known)."""

    on_demand: float
    spot: float | None = None


@dataclass(frozen=True)
class EntityRates:
    """Per-entity USD per core-hour (``cpu``) and per GiB-hour (``ram``), and how many came from a file.

    ``from_file`` marks the entities priced from the file's instance prices (``matched`` counts
    them); the others are at the flat rates (the defaults, or an OpenCost JSON's).
    """

    cpu: np.ndarray
    ram: np.ndarray
    from_file: np.ndarray

    @property
    def matched(self) -> int:
        return int(self.from_file.sum())

    @property
    def at_flat_rates(self) -> int:
        return len(self.cpu) - self.matched


@dataclass(frozen=True)
class Prices:
    """CPU and RAM rates (USD per core-hour and per GiB-hour, on demand and spot) and where they came from.

    Attributes:
        cpu, ram: on-demand rates every entity gets unless an instance price matches it.
        spot_cpu, spot_ram: the same at spot prices.
        source: how reports name these prices (``DEFAULT_SOURCE`` or the file and its format).
        instances: ``(region, instance_type)`` (lower case; region ``""`` = any) -> node price.
        nodes: node name (lower case) -> node price, matched against ``entity_id`` (node-level fleets).
    """

    cpu: float = _PRICE_PER_VCPU_HOUR
    ram: float = _PRICE_PER_GIB_HOUR
    spot_cpu: float = _SPOT_PER_VCPU_HOUR
    spot_ram: float = _SPOT_PER_GIB_HOUR
    source: str = DEFAULT_SOURCE
    instances: Mapping[tuple[str, str], NodePrice] = field(default_factory=dict)
    nodes: Mapping[str, NodePrice] = field(default_factory=dict)

    @property
    def is_default(self) -> bool:
        return self.source == DEFAULT_SOURCE

    def flat(self, spot: bool = False) -> tuple[float, float]:
        """The flat (CPU, RAM) rates at on-demand or spot prices."""
        return (self.spot_cpu, self.spot_ram) if spot else (self.cpu, self.ram)

    def rates(self, entities: pd.DataFrame, *, spot: bool = False) -> EntityRates:
        """The CPU and RAM rate of each row of ``entities`` (``vcpus``, ``mem_gib``, ``instance_type``, ``region``).

        A matched node price is split with the default CPU:RAM ratio (see the module doc) over
        the entity's own vCPUs and GiB; an entity without ``mem_gib`` puts it all on CPU.
        At spot prices a node without a spot price keeps its on-demand one.
        """
        n = len(entities)
        flat_cpu, flat_ram = self.flat(spot)
        cpu = np.full(n, flat_cpu, dtype="float64")
        ram = np.full(n, flat_ram, dtype="float64")
        if not (self.instances or self.nodes) or n == 0:
            return EntityRates(cpu, ram, np.zeros(n, dtype=bool))
        price = np.full(n, np.nan)
        names = _column(entities, "entity_id")
        types = _column(entities, "instance_type")
        regions = _column(entities, "region")
        for i in range(n):
            node = (
                self.nodes.get(names[i])
                or self.instances.get((regions[i], types[i]))
                or self.instances.get(("", types[i]))
            )
            if node is not None:
                price[i] = node.spot if spot and node.spot is not None else node.on_demand
        found = ~np.isnan(price)
        vcpus = pd.to_numeric(entities["vcpus"], errors="coerce").to_numpy(dtype="float64")
        gib = (
            pd.to_numeric(entities["mem_gib"], errors="coerce").to_numpy(dtype="float64")
            if "mem_gib" in entities.columns
            else np.zeros(n)
        )
        ratio = _PRICE_PER_VCPU_HOUR / _PRICE_PER_GIB_HOUR
        weight = vcpus * ratio + np.nan_to_num(gib, nan=0.0)
        ram_rate = np.divide(price, weight, out=np.full(n, np.nan), where=weight > 0)
        use = found & np.isfinite(ram_rate)
        cpu[use] = ram_rate[use] * ratio
        ram[use] = ram_rate[use]
        return EntityRates(cpu, ram, use)

    def labels(self, rates: EntityRates) -> np.ndarray:
        """Per entity, which prices it was costed at: this file, or (unmatched by an instance price) the defaults."""
        flat = DEFAULT_SOURCE if (self.instances or self.nodes) else self.source
        return np.where(rates.from_file, self.source, flat)

    def describe(self, rates: EntityRates | None = None, *, spot: bool = False) -> str:
        """One line for reports: which prices, the flat rates, and how many entities each priced."""
        cpu, ram = self.flat(spot)
        flat = f"${cpu:.4g}/core-h, ${ram:.4g}/GiB-h, {'spot' if spot else 'on demand'}"
        if not (self.instances or self.nodes):
            return f"prices: {self.source} ({flat})"
        counts = ""
        if rates is not None:
            counts = (
                f"{rates.matched} of {len(rates.cpu)} entities priced from the file's instance prices,"
                f" {rates.at_flat_rates} at the defaults; "
            )
        return f"prices: {self.source}; {counts}defaults: {DEFAULT_SOURCE} ({flat})"

    def params(self, rates: EntityRates | None = None, *, spot: bool = False) -> dict:
        """JSON-ready record of the prices, for a run's stored parameters."""
        cpu, ram = self.flat(spot)
        out: dict = {"prices": self.source, "price_cpu_core_hour": cpu, "price_ram_gib_hour": ram, "spot": spot}
        if rates is not None:
            out.update({"priced_from_file": rates.matched, "priced_at_defaults": rates.at_flat_rates})
        return out


DEFAULT_PRICES = Prices()


def _column(entities: pd.DataFrame, name: str) -> list[str]:
    """``entities[name]`` as lower-case strings ("" where absent), for matching."""
    if name not in entities.columns:
        return [""] * len(entities)
    return [str(v).strip().lower() if pd.notna(v) else "" for v in entities[name]]


def read_prices(path: str | Path) -> Prices:
    """Prices from an OpenCost custom pricing JSON or an instance-price CSV (Kubecost's or the plain layout).

    The format is told by the content: a JSON object, else a CSV whose header names either
    layout.

    Raises:
        PriceFileError: the file is missing, empty, of neither format, or holds a price that is
            not a non-negative number; the message names the file (and line) and the problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PriceFileError(f"{path}: no such price file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(f"{path}: cannot read it ({exc})") from None
    if not text.strip():
        raise PriceFileError(f"{path}: empty price file")
    if text.lstrip().startswith(("{", "[")):
        return _read_opencost_json(path, text)
    return _read_csv(path, text)


def _number(path: Path, where: str, value: object) -> float:
    """A price: a finite, non-negative number or numeric string."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise PriceFileError(f"{path}: {where} {value!r} is not a non-negative hourly price in USD")
    return number


def _read_opencost_json(path: Path, text: str) -> Prices:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PriceFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise PriceFileError(f"{path}: expected OpenCost's custom pricing object with CPU and RAM keys")
    missing = [k for k in ("CPU", "RAM") if str(config.get(k, "")).strip() == ""]
    if missing:
        raise PriceFileError(
            f"{path}: no {' or '.join(missing)} price; OpenCost's custom pricing gives CPU and RAM"
            ' as hourly USD per core and per GiB, e.g. {"CPU": "0.031611", "RAM": "0.004237"}'
        )
    cpu = _number(path, "CPU", config["CPU"])
    ram = _number(path, "RAM", config["RAM"])
    # A config without spot prices is priced at its on-demand rates: the conservative reading.
    spot_cpu = _number(path, "spotCPU", config["spotCPU"]) if str(config.get("spotCPU", "")).strip() else cpu
    spot_ram = _number(path, "spotRAM", config["spotRAM"]) if str(config.get("spotRAM", "")).strip() else ram
    if cpu == 0 and ram == 0:
        raise PriceFileError(f"{path}: CPU and RAM are both 0; nothing would cost anything")
    return Prices(cpu, ram, spot_cpu, spot_ram, source=f"{path} (OpenCost custom pricing)")


def _read_csv(path: Path, text: str) -> Prices:
    rows = [row for row in csv.reader(io.StringIO(text)) if row and not row[0].lstrip().startswith("#")]
    header = [cell.strip() for cell in rows[0]] if rows else []
    if all(c in header for c in _KUBECOST_REQUIRED):
        return _read_kubecost(path, header, rows[1:])
    lower = [c.lower() for c in header]
    if all(c in lower for c in _SIMPLE_REQUIRED):
        return _read_simple(path, lower, rows[1:])
    shown = ",".join(header)[:80]
    raise PriceFileError(
        f"{path}: not a price file: header {shown!r} is neither Kubecost's CSV pricing ({_KUBECOST_HEADER})"
        f" nor {_SIMPLE_HEADER}, and the file is not OpenCost's custom pricing JSON"
    )


def _records(path: Path, header: list[str], rows: list[list[str]]):
    """(line number, {column: cell}) per data row; a row with the wrong number of cells is refused."""
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise PriceFileError(f"{path}: line {number}: {len(row)} fields where the header has {len(header)}")
        yield number, {name: cell.strip() for name, cell in zip(header, row, strict=True)}


def _average(prices: dict[tuple[str, str], list[float]]) -> dict[tuple[str, str], float]:
    return {key: float(np.mean(values)) for key, values in prices.items()}


def _read_kubecost(path: Path, header: list[str], rows: list[list[str]]) -> Prices:
    """Kubecost CSV pricing: node rows priced by instance type (``InstanceType``, or an instance-type label) or name.

    Rows of asset class ``pv`` or ``gpu`` price no CPU or memory and are skipped; so are node
    rows keyed by a provider ID, which no entity carries. Several rows of one instance type
    and region are averaged, as OpenCost's class pricing does.
    """
    by_type: dict[tuple[str, str], list[float]] = {}
    by_name: dict[tuple[str, str], list[float]] = {}
    for number, rec in _records(path, header, rows):
        if rec.get("AssetClass", "").lower() in ("pv", "gpu"):
            continue
        price = _number(path, f"line {number}: MarketPriceHourly", rec["MarketPriceHourly"])
        region = rec.get("Region", "").lower()
        field_name = rec.get("InstanceIDField", "").lower()
        instance_type = rec.get("InstanceType", "").lower()
        if not instance_type and field_name.endswith("instance-type"):
            instance_type = rec["InstanceID"].lower()
        if instance_type:
            by_type.setdefault((region, instance_type), []).append(price)
        elif field_name == "metadata.name" and rec["InstanceID"]:
            by_name.setdefault(("", rec["InstanceID"].lower()), []).append(price)
    if not by_type and not by_name:
        raise PriceFileError(
            f"{path}: no node prices by instance type or node name"
            " (give InstanceType, or InstanceIDField metadata.labels.node.kubernetes.io/instance-type)"
        )
    instances = {key: NodePrice(p) for key, p in _average(by_type).items()}
    nodes = {key[1]: NodePrice(p) for key, p in _average(by_name).items()}
    return Prices(source=f"{path} (Kubecost CSV pricing)", instances=instances, nodes=nodes)


def _read_simple(path: Path, header: list[str], rows: list[list[str]]) -> Prices:
    """``instance_type,region,on_demand_hourly,spot_hourly``; region and spot may be empty or absent."""
    on_demand: dict[tuple[str, str], list[float]] = {}
    spot: dict[tuple[str, str], list[float]] = {}
    for number, rec in _records(path, header, rows):
        if not rec["instance_type"]:
            raise PriceFileError(f"{path}: line {number}: no instance_type")
        key = (rec.get("region", "").lower(), rec["instance_type"].lower())
        on_demand.setdefault(key, []).append(_number(path, f"line {number}: on_demand_hourly", rec["on_demand_hourly"]))
        if rec.get("spot_hourly", ""):
            spot.setdefault(key, []).append(_number(path, f"line {number}: spot_hourly", rec["spot_hourly"]))
    if not on_demand:
        raise PriceFileError(f"{path}: a header but no instance prices")
    spot_mean = _average(spot)
    instances = {key: NodePrice(p, spot_mean.get(key)) for key, p in _average(on_demand).items()}
    return Prices(source=f"{path} (instance price CSV)", instances=instances)
