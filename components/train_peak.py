"""Component ``train_peak``: the peak classifier that gives the served forecast its peak probability."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from pipelines import settings

__all__ = ["train_peak"]


@dsl.component(base_image=settings.IMAGE, install_kfp_package=False)
def train_peak(balanced: Input[Dataset], seed: int, model: Output[Model]):
    """Fit the peak classifier on the SMOTE-balanced training rows."""
    from ml_cloud_optimizer.pipeline_steps import artifacts, training

    fitted = training.train_peak_classifier(artifacts.load_frame(balanced.path), seed=seed)
    model.metadata.update(training.save_peak_model(fitted, model.path))
