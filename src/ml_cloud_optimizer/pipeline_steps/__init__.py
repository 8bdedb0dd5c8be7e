"""Pipeline steps: what each pipeline task does, as plain functions over the core.

The KFP components (``components/``) are thin shells around these: they translate artifact
paths and parameters, call one function here, and record the result. Keeping the work here,
free of KFP and KServe imports like the rest of the core, lets it be tested and reused without
a pipeline. Each step reports itself with ``[mlco] ...`` lines on stdout, which ``mlco run``
shows as progress: the steps log (``logging``), and importing this package sends the
``ml_cloud_optimizer`` logger to stdout unless an entry point (``mlco``) has configured it.
"""

import sys as _sys

from ml_cloud_optimizer import logs as _logs

_logs.configure_once(stream=_sys.stdout)

__all__ = [
    "artifacts",
    "batch",
    "environment",
    "registry",
    "run_log",
    "scoring",
    "sources",
    "split",
    "training",
    "warehouse_io",
]
