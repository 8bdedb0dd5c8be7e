"""Component ``train_tabular``: one gradient-boosted forecaster (LightGBM, XGBoost or CatBoost)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from ml_cloud_optimizer.components._image import IMAGE

__all__ = ["train_tabular"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_tabular(kind: str, train: Input[Dataset], horizons: list, trials: int, seed: int, model: Output[Model]):
    """Fit the forecaster ``kind`` on the training window, tuned with ``trials`` Optuna trials (0: defaults).

    The pipeline fans this out over its ``tabular_models`` list with ParallelFor.
    """
    from ml_cloud_optimizer.pipeline_steps import artifacts, training

    fitted = training.train_forecaster(
        kind, artifacts.load_fleet(train.path), horizons=horizons, trials=trials, seed=seed
    )
    model.metadata.update(training.save_model(fitted, model.path))
