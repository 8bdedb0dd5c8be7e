"""Kubernetes out: recommendations and forecasts as objects and series a cluster consumes.

* ``names``: the recommender's name and the exporter's series, shared by every part below;
* ``quantities``, ``sizing``, ``emit``: VPA, KEDA ScaledObject and Kustomize patch objects from
  ``mlco recommend``'s table (``mlco recommend --emit``);
* ``forecasting``: one cycle over a cluster's workloads (read Prometheus, forecast, size, coverage);
* ``recommender``: a custom VPA recommender writing ``status.recommendation`` (``mlco recommender``);
* ``exporter``: the cycle's forecasts as Prometheus gauges (``mlco exporter``, ``--metrics-port``);
* ``shadow``: what would have been recommended, logged and later set beside what happened.

Nothing here is imported by the model server or the pipeline's components.
"""
