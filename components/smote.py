"""Component ``smote``: balance the peak-classification training rows (training window only)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from pipelines import settings

__all__ = ["smote"]


@dsl.component(base_image=settings.IMAGE, install_kfp_package=False)
def smote(peak_rows: Input[Dataset], seed: int, balanced: Output[Dataset], balance: Output[Metrics]):
    """SMOTE-oversample the rare peak class of the training rows; hold-out rows never come here."""
    from ml_cloud_optimizer.pipeline_steps import artifacts, split

    rows, counts = split.balance_peak_rows(artifacts.load_frame(peak_rows.path), seed=seed)
    balanced.metadata.update(artifacts.save_frame(rows, balanced.path))
    balanced.metadata.update(counts)
    for name, value in counts.items():
        balance.log_metric(name, value)
