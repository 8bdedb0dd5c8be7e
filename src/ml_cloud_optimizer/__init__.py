"""ML Cloud Workload Optimizer: the core, free of KFP and KServe imports."""

__version__ = "0.1.0"
