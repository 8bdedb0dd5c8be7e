"""Workload data: the synthetic generator and real-trace readers, both giving a canonical Fleet."""

from ml_cloud_optimizer.data.io import read_fleet, report_gaps, write_fleet
from ml_cloud_optimizer.data.schema import DataValidationError, Fleet, validate_fleet
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.data.traces import detect_format, read_trace

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
