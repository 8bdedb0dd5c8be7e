"""Component ``datagen``: the fleet a run learns from, generated, read from a trace or from Prometheus."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["datagen"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def datagen(source: str, records: int, seed: int, fleet: Output[Dataset]):
    """Write a canonical fleet: ``source`` "synthetic" generates ``records`` rows; otherwise it is read.

    Never cached (see ``pipelines.workload_pipeline``): a Prometheus source is live, and the
    cache key, which holds the source string but not the clock, would replay the first run's data.

    Args:
        source: "synthetic"; a trace path readable in the container (any layout ``read_fleet``
            detects: Bitbrains, Azure, Alibaba, long CSV, canonical); a Prometheus URL
            ``prometheus://HOST:PORT?start=...&end=...&level=...``; or the cluster's Prometheus,
            ``prometheus`` or ``prometheus://?level=...`` without a host, whose address is the
            setting ``MLCO_PROMETHEUS_URL`` (``pipeline_steps.sources.resolve_source``).
        records: rows to generate (synthetic only).
        seed: generator seed (synthetic only).
        fleet: the fleet, as a directory of Parquet files; its metadata ``source`` says exactly
            what was read (for Prometheus, the server and the pinned time range).
    """
    from ml_cloud_optimizer.pipeline_steps import artifacts, sources

    summary = artifacts.save_fleet(sources.acquire_fleet(source, records=records, seed=seed), fleet.path)
    fleet.metadata.update(summary)
