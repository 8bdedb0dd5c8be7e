"""Pipeline steps: what each pipeline task does, as plain functions over the core.

The KFP components (``components/``) are thin shells around these: they translate artifact
paths and parameters, call one function here, and record the result. Keeping the work here,
free of KFP and KServe imports like the rest of the core, lets it be tested and reused without
a pipeline. Each step reports itself with one ``[mlco] ...`` line on stdout, which ``mlco run``
shows as progress.
"""

__all__ = ["artifacts", "batch", "environment", "registry", "run_log", "scoring", "sources", "split", "training", "warehouse_io"]
