"""Component ``smote``: balance the peak-classification training rows; the hold-out never comes here."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["smote"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def smote(peak_rows: Input[Dataset], seed: int, balanced: Output[Dataset], balance: Output[Metrics]):
    """SMOTE-oversample the rare peak class of the training part of ``peak_rows``.

    Past ``PeakClassifier``'s ``majority_cap`` ordinary rows, a seeded sample of that many is
    kept first. The validation part (which picks the classifier's decision threshold) passes
    through as it was; ``balance`` records the row and peak counts before and after.
    """
    from ml_cloud_optimizer.pipeline_steps import artifacts, peak_training

    rows, state = artifacts.load_rows(peak_rows.path)
    resampled, fill_values, counts = peak_training.balance_peak_rows(
        rows, seed=seed, majority_cap=state["params"]["majority_cap"]
    )
    state = {**state, "fill_values": fill_values, "n_train_rows": counts["fit_rows"]}
    balanced.metadata.update(artifacts.save_rows(resampled, balanced.path, state))
    for name, value in counts.items():
        balance.log_metric(name, value)
