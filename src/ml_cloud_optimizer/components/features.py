"""Component ``features``: read the loaded window back from the warehouse and cut it by time."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["features"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def features(
    fleet: Input[Dataset],
    start: str,
    end: str,
    holdout_fraction: float,
    peak_horizon: int,
    seed: int,
    train: Output[Dataset],
    history: Output[Dataset],
    peak_rows: Output[Dataset],
):
    """Warehouse rows of the fleet's entities in [start, end], split into training and hold-out by time.

    Args:
        fleet: the fleet that was loaded (only its entity ids are read).
        start: first loaded timestamp (ISO 8601).
        end: last loaded timestamp.
        holdout_fraction: share of the time span, at the end, held out for evaluation.
        peak_horizon: steps ahead the peak label looks (12 = the next hour).
        seed: seed of the peak classifier.
        train: metrics before the cut-off.
        history: all the metrics; ``metadata["cutoff"]`` marks where the hold-out starts, and
            the rows before it give the hold-out forecasts their history.
        peak_rows: the peak classifier's labelled feature rows of the training window.
    """
    from ml_cloud_optimizer.pipeline_steps import artifacts, peak_training, split, warehouse_io

    loaded = warehouse_io.read_from_warehouse(artifacts.load_entity_ids(fleet.path), start, end)
    train_fleet, cutoff = split.split_by_time(loaded, holdout_fraction)
    train.metadata.update(artifacts.save_fleet(train_fleet, train.path))
    history.metadata.update({**artifacts.save_fleet(loaded, history.path), "cutoff": cutoff})
    rows, state = peak_training.peak_training_rows(train_fleet.metrics, horizon=peak_horizon, seed=seed)
    peak_rows.metadata.update(artifacts.save_rows(rows, peak_rows.path, state))
