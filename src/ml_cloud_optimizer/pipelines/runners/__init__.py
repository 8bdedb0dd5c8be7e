"""Ways to run the pipelines: on this machine through kfp.local, on a KFP server, on a schedule, or compiled.

- ``local``: ``run_local`` (training) and ``run_batch_local`` (batch scoring) on this machine.
- ``execute``: the kfp.local plumbing both share (warehouse, MLflow store, logs, progress).
- ``containers``: the same local run with every task in the project's image (``DockerRunner``).
- ``remote``: upload, submit and schedule on a KFP API server.
- ``cron``: the six-field schedules KFP's backend accepts.
- ``compile``: the committed YAML under ``pipelines/compiled/``.
"""
