"""Peak detection: will an entity's load exceed its own 95th percentile within the next hour?

Peaks are rare, so accuracy says nothing; models are compared on PR-AUC, recall at a fixed
precision and F1 at a threshold chosen on a validation window, always beside the rule an
operator would write without a model: "alert when the current load is above the threshold".

One module per backend, as mlforecast does, so that a backend's library is imported only by
the model that uses it:

* ``base``: ``BasePeakModel`` (labels, time split, decision threshold, save and load) and
  the threshold helpers. Fitted state outside the booster or network moves through
  ``get_state``/``from_state`` only, so save/load and the pipeline's tasks rebuild a model
  alike. ``BasePeakModel.load`` imports the module of the saved kind only
  (``models.registry.PEAK_MODELS``).
* ``boosted``: ``PeakClassifier``, LightGBM on the shared feature rows; what the model
  server loads beside a tabular champion, without torch.
* ``recurrent``: ``SequencePeakClassifier``, a GRU with the focal loss (torch).

``models.peak_report`` sets both variants beside the rule on one time split, as one table.
``SequencePeakClassifier`` is importable from here too; it is loaded on first use.
"""

from __future__ import annotations

from ml_cloud_optimizer.models.peak.base import BasePeakModel, check_metrics, choose_threshold, recall_at_precision
from ml_cloud_optimizer.models.peak.boosted import PeakClassifier

__all__ = [
    "BasePeakModel",
    "PeakClassifier",
    "SequencePeakClassifier",
    "check_metrics",
    "choose_threshold",
    "recall_at_precision",
]


def __getattr__(name: str):
    if name == "SequencePeakClassifier":
        from ml_cloud_optimizer.models.peak.recurrent import SequencePeakClassifier

        return SequencePeakClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
