"""Component ``train_peak``: the peak classifier that gives each served forecast its peak probability."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["train_peak"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_peak(balanced: Input[Dataset], model: Output[Model]):
    """Fit the LightGBM peak classifier on the SMOTE-balanced rows; threshold chosen on validation rows."""
    from ml_cloud_optimizer.pipeline_steps import artifacts, peak_training

    classifier = peak_training.fit_peak_classifier(*artifacts.load_rows(balanced.path))
    classifier.save(model.path)
    model.metadata.update(peak_training.peak_summary(classifier))
