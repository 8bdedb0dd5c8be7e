"""Real-trace readers: public VM traces turned into the canonical fleet.

One module per format, as mlforecast keeps one per backend, so that a format's column
mapping, defaults and caveats are read in one place and a new format touches nothing else:

* ``bitbrains``: Bitbrains GWA-T-12, the shipped long CSV or the original per-VM files.
* ``azure``: Azure Public Dataset V1 CPU readings (and, optionally, its ``vmtable.csv``).
* ``alibaba``: Alibaba cluster-trace-v2018 ``machine_usage.csv``.
* ``long``: any long CSV with a header, columns mapped by name.
* ``prometheus``: not a file but a live server, ``prometheus://HOST:PORT?start=...`` (pod, workload or node level).

Each module's docstring lists the options its ``read`` takes. Every reader streams its
files in blocks through pyarrow, snaps each sample to the nearest 300 s slot, averages the
samples that share a slot and reports the gaps (``_stream``, shared by all). Traces carry
no peak labels, so ``is_peak`` is left missing (NA).

Adding a format: write a module with

* ``read(path, **options) -> Fleet``, its options keyword-only (``read_trace`` checks the
  caller's options against that signature, so a typo fails instead of being ignored);
* ``sniff(path, line) -> bool``: whether a file whose first line is ``line`` is this format;
* ``FILE_PREFIX``: the file name the format's files start with, or None;
* ``READS_CSV_DIRECTORY``: whether a directory of arbitrary ``*.csv`` files can be this format;

then add one line to ``_READERS``. Its order is the order detection asks the formats in, so
``long``, which accepts any header, stays last.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

from ml_cloud_optimizer.data.schema import DataValidationError, Fleet
from ml_cloud_optimizer.data.traces import alibaba, azure, bitbrains, long, prometheus
from ml_cloud_optimizer.data.traces._stream import data_csvs, existing, first_line, report_gaps

__all__ = ["FORMATS", "detect_format", "read_trace", "report_gaps"]

_READERS: dict[str, ModuleType] = {
    "bitbrains": bitbrains,
    "azure": azure,
    "alibaba": alibaba,
    "prometheus": prometheus,
    "long": long,
}

FORMATS = tuple(_READERS)


def detect_format(path: str | Path) -> str:
    """Tell a trace's format from its file names or first line; one of ``FORMATS``.

    File names are trusted before content: the published traces keep their names, and a
    headerless first line is a weaker hint than ``vm_cpu_readings-file-1-of-195.csv``. A
    directory with one data CSV (beside an ``entities.csv`` catalogue, as the shared traces
    come) is that file's format, whatever the format.
    """
    if prometheus.is_url(path):
        return "prometheus"
    path = existing(path)
    if not path.is_dir():
        return _detect_file(path)
    names = [p.name.lower() for p in path.iterdir() if p.is_file()]
    for fmt, module in _READERS.items():
        if module.FILE_PREFIX and any(n.startswith(module.FILE_PREFIX) for n in names):
            return fmt
    csvs = data_csvs(path)
    if csvs:
        fmt = _detect_file(csvs[0])
        if _READERS[fmt].READS_CSV_DIRECTORY or len(csvs) == 1:
            return fmt
    raise DataValidationError(f"{path}: no trace files of a known format in this directory; pass a format")


def read_trace(path: str | Path, fmt: str | None = None, **options) -> Fleet:
    """Read a trace file or directory into a validated canonical ``Fleet``.

    Args:
        path: a trace file, or a directory of them, or a ``prometheus://`` source string.
        fmt: one of ``FORMATS``; detected from the files when None.
        **options: format options, listed in each format module's docstring.

    Returns:
        The fleet, validated, with ``gaps`` set to ``report_gaps`` of its metrics.

    Raises:
        DataValidationError: unknown format or option, unreadable file, missing columns,
            or values outside the canonical contract; the message names the file.

    Example:
        >>> fleet = read_trace("planetlab_2011.csv", "long", columns={"ts": "timestamp"})  # doctest: +SKIP
    """
    if prometheus.is_url(path):
        fmt = fmt or "prometheus"
    else:
        path = existing(path)
    fmt = detect_format(path) if fmt is None else fmt
    module = _READERS.get(fmt)
    if module is None:
        raise DataValidationError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
    path = _single_file(path, module)
    accepted = [p for p in inspect.signature(module.read).parameters if p != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataValidationError(
            f"format {fmt!r} takes no option {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    return module.read(path, **options)


def _single_file(path, module: ModuleType):
    """A directory holding one data CSV (and perhaps ``entities.csv``) is that file, for a one-file format."""
    if isinstance(path, Path) and path.is_dir() and not module.READS_CSV_DIRECTORY and not module.FILE_PREFIX:
        csvs = data_csvs(path)
        if len(csvs) == 1:
            return csvs[0]
    return path


def _detect_file(path: Path) -> str:
    name = path.name.lower()
    for fmt, module in _READERS.items():
        if module.FILE_PREFIX and name.startswith(module.FILE_PREFIX):
            return fmt
    line = first_line(path)
    for fmt, module in _READERS.items():
        if module.sniff(path, line):
            return fmt
    raise DataValidationError(
        f"{path}: cannot tell the trace format from its name or first line; pass one of {', '.join(FORMATS)}"
    )
