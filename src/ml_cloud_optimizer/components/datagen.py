"""Component ``datagen``: the fleet a run learns from, generated or read from a real trace."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["datagen"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def datagen(source: str, records: int, seed: int, fleet: Output[Dataset]):
    """Write a canonical fleet: ``source`` "synthetic" generates ``records`` rows; a path reads a trace.

    Args:
        source: "synthetic", or a trace path readable in the container (any layout
            ``read_fleet`` detects: Bitbrains, Azure, Alibaba, long CSV, canonical).
        records: rows to generate (synthetic only).
        seed: generator seed (synthetic only).
        fleet: the fleet, as a directory of Parquet files.
    """
    from ml_cloud_optimizer.pipeline_steps import artifacts, sources

    summary = artifacts.save_fleet(sources.acquire_fleet(source, records=records, seed=seed), fleet.path)
    fleet.metadata.update(summary)
