"""The KServe predictor of the workload forecaster: the champion directory behind v1, v2 REST and v2 gRPC.

Run it with ``python -m ml_cloud_optimizer.serving --model_dir DIR --model_name NAME`` (what the
``mlco-runtime`` ServingRuntime runs) or, for the local champion, ``mlco serve``.

Modules:
    model: ``ForecastModel``, the ``kserve.Model`` that loads the champion and answers in KServe's
        stages (preprocess -> predict -> postprocess).
    parser: ``RequestParser``, the facade over ``parse_v1`` and ``parse_v2`` (one layout each).
    checks: the value and history checks both protocols share.
    types: ``ForecastRequest``, ``Forecast``, ``RequestLimits``: what the stages hand each other.
    errors: ``ErrorKind`` and ``RequestError`` (HTTP 400, gRPC INVALID_ARGUMENT).
    capacity: recommended vCPUs and replicas at a target utilisation.
    metrics: the Prometheus series beside KServe's own.
    rest: the v2 REST infer handler (KServe's steps, orjson at both ends).
    server: KServe's ModelServer with the 400 handlers, body limit and quiet logs.
    local: the server in a child process on free ports, for tests and benchmarks.
"""
