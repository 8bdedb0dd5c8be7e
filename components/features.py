"""Component ``features``: read the loaded window back from the warehouse and split it by time."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from pipelines import settings

__all__ = ["features"]


@dsl.component(base_image=settings.IMAGE, install_kfp_package=False)
def features(
    fleet: Input[Dataset],
    start: str,
    end: str,
    holdout_fraction: float,
    peak_horizon: int,
    train: Output[Dataset],
    history: Output[Dataset],
    peak_rows: Output[Dataset],
):
    """Warehouse rows of the fleet's entities in [start, end], cut into training and hold-out by time.

    Args:
        fleet: the fleet that was loaded (only its entity ids are used).
        start: first loaded timestamp (ISO 8601).
        end: last loaded timestamp.
        holdout_fraction: share of the time span, at the end, held out for evaluation.
        peak_horizon: steps ahead the peak label looks (12 = the next hour).
        train: metrics before the cut-off.
        history: all metrics; ``metadata["cutoff"]`` marks where the hold-out starts, and
            the rows before it give the hold-out forecasts their history.
        peak_rows: the peak classifier's training rows (shared features plus label).
    """
    from ml_cloud_optimizer.pipeline_steps import artifacts, split, warehouse_io

    entity_ids = artifacts.load_entity_ids(fleet.path)
    loaded = warehouse_io.read_from_warehouse(entity_ids, start, end)
    train_fleet, cutoff = split.split_by_time(loaded, holdout_fraction)
    train.metadata.update(artifacts.save_fleet(train_fleet, train.path))
    history.metadata.update(artifacts.save_fleet(loaded, history.path))
    history.metadata["cutoff"] = cutoff
    rows = split.peak_training_rows(train_fleet, horizon=peak_horizon)
    peak_rows.metadata.update(artifacts.save_frame(rows, peak_rows.path))
