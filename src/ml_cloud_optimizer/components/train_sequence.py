"""Component ``train_sequence``: an LSTM or GRU forecaster, on a GPU node in the cluster."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from ml_cloud_optimizer.components._image import CUDA_IMAGE

__all__ = ["train_sequence"]


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def train_sequence(kind: str, train: Input[Dataset], horizons: list, epochs: int, seed: int, model: Output[Model]):
    """Fit the recurrent forecaster ``kind`` ("lstm" or "gru") for at most ``epochs`` epochs.

    Uses CUDA with bf16 autocast when the pod has a GPU (the pipeline requests one), the CPU
    otherwise; early stopping restores the best checkpoint.
    """
    from ml_cloud_optimizer.pipeline_steps import artifacts, training

    fitted = training.train_forecaster(
        kind, artifacts.load_fleet(train.path), horizons=horizons, epochs=epochs, seed=seed
    )
    model.metadata.update(training.save_model(fitted, model.path))
