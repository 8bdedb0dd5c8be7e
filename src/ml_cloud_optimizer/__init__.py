"""ML Cloud Workload Optimizer: the core, free of KFP and KServe imports."""

import logging

__version__ = "0.1.0"

# A library logs and leaves the output to its application: `mlco` and the pipeline steps call
# `ml_cloud_optimizer.logs.configure`; without it nothing is printed (not even warnings).
logging.getLogger(__name__).addHandler(logging.NullHandler())
