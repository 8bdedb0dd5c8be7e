"""The KServe predictor of the workload forecaster: the champion directory behind v1, v2 REST and v2 gRPC.

Run it with ``python -m serving --model_dir DIR --model_name NAME`` (what the
``mlco-runtime`` ServingRuntime runs) or, for the local champion, ``mlco serve``.

Modules:
    model: ``ForecastModel``, the ``kserve.Model`` that loads the champion and answers.
    schema: request parsing and validation (``RequestParser``, ``RequestError``).
    feature_rows: forecasts from ready-made feature rows on a tabular champion's boosters.
    capacity: recommended vCPUs and replicas at a target utilisation.
    metrics: the Prometheus series beside KServe's own.
    rest: the v2 REST infer handler (KServe's steps, orjson at both ends).
    server: KServe's ModelServer with the 400 handlers, body limit and quiet logs.
    local: the server in a child process on free ports, for tests and benchmarks.
"""
