"""Workload data: the synthetic generator and real-trace readers, both giving a canonical Fleet.

The names below are loaded on first use: the model server imports ``data.schema`` only, and
must not pay for (or, in its lean image, lack) pyarrow and SciPy, which the readers and the
generator need.
"""

from __future__ import annotations

from ml_cloud_optimizer._lazy import lazy_exports

__all__ = [
    "DataValidationError",
    "Fleet",
    "detect_format",
    "generate_fleet",
    "read_fleet",
    "read_trace",
    "report_gaps",
    "validate_fleet",
    "write_fleet",
]

_HOMES = {
    "DataValidationError": "schema",
    "Fleet": "schema",
    "validate_fleet": "schema",
    "detect_format": "traces",
    "read_trace": "traces",
    "generate_fleet": "synthetic",
    "read_fleet": "io",
    "report_gaps": "io",
    "write_fleet": "io",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
