"""Component ``olap_load``: bulk-load the fleet into the PostgreSQL warehouse (COPY, one transaction)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["olap_load"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def olap_load(fleet: Input[Dataset], load_report: Output[Metrics]) -> NamedTuple(
    "Loaded", [("start", str), ("end", str)]
):
    """Load ``fleet`` into the warehouse named by ``DATABASE_URL`` and refresh its hourly view.

    Idempotent: loading the same fleet again upserts the same rows. Returns the loaded time
    range so that ``features`` reads exactly this window back.
    """
    from collections import namedtuple

    from ml_cloud_optimizer.pipeline_steps import artifacts, warehouse_io

    report = warehouse_io.load_into_warehouse(artifacts.load_fleet(fleet.path))
    for name in ("rows", "inserted", "updated", "unchanged", "seconds"):
        load_report.log_metric(name, report[name])
    return namedtuple("Loaded", ["start", "end"])(report["first_ts"], report["last_ts"])
