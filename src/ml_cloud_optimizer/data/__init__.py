"""Workload data: the synthetic generator and real-trace readers, both giving a canonical Fleet."""

from ml_cloud_optimizer.data.schema import DataValidationError, Fleet, validate_fleet

__all__ = ["DataValidationError", "Fleet", "validate_fleet"]
