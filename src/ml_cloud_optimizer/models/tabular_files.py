"""How a tabular forecaster's boosters and fitted state are written to a model directory and read back.

A mixin of ``TabularForecaster``: the files are one per booster in the library's own format
(``_save_booster``/``_load_booster``), and ``metadata.json`` carries the feature spec and the
configuration the forecaster chose (``target_mode``, ``feature_set``), so that serving rebuilds
exactly the columns and the target transform it was trained with. A directory saved before the
configuration was chosen per dataset has no ``feature_set`` and learnt the change on the rich
set; it loads as that.

A loaded forecaster's parameters name the configuration it uses, not ``auto``: refitting it
fits the same configuration again.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from ml_cloud_optimizer.features.tabular import FeatureSpec

__all__ = ["TabularFiles"]


class TabularFiles:
    """``_save`` and ``_load`` of ``TabularForecaster`` (see the module doc)."""

    def _save(self: Any, directory: Path) -> dict:
        files = {}
        for name, booster in self.boosters_.items():
            files[name] = f"{name}{self.file_suffix}"
            self._save_booster(booster, directory / files[name])
        return {
            "feature_spec": self.spec_.to_dict(),
            "target_mode": self.target_mode_,
            "feature_set": self.feature_set_,
            "config_scores": self.config_scores_,
            "booster_files": files,
            "booster_params": json.loads(json.dumps(self.params_, default=repr)),
            "rounds": self.rounds_,
            "full_history": int(self.full_history),
            "quantiles": ["p50", "p90"] if self.quantile else ["p50"],
            "fit_seconds": round(float(getattr(self, "fit_seconds_", 0.0)), 3),
        }

    @classmethod
    def _load(cls, directory: Path, metadata: dict) -> Any:
        accepted = inspect.signature(cls).parameters
        params = {k: v for k, v in metadata.get("params", {}).items() if k in accepted}
        params["horizons"] = tuple(metadata["horizons"])
        params["features"] = {k: v for k, v in metadata["feature_spec"].items() if k != "horizons"}
        params["target_mode"] = str(metadata.get("target_mode", "delta"))  # saved before "auto": the change
        params["feature_set"] = str(metadata.get("feature_set", "rich"))
        model: Any = cls(**params)
        model._set_spec(FeatureSpec.from_dict(metadata["feature_spec"]))
        model.target_mode_, model.feature_set_ = params["target_mode"], params["feature_set"]
        model.config_scores_ = dict(metadata.get("config_scores", {}))
        model.params_ = metadata.get("booster_params", {})
        model.rounds_ = metadata.get("rounds", {})
        model.fit_seconds_ = float(metadata.get("fit_seconds", 0.0))  # 0.0: saved before it was recorded
        model.boosters_ = {}
        for name, file in metadata["booster_files"].items():
            path = directory / file
            if not path.exists():
                raise FileNotFoundError(f"{directory}: model file {file} named in metadata is missing")
            model.boosters_[name] = model._load_booster(path)
        return model
