"""The predictor runs in the lean image: a tabular champion is served without the training stack.

The lean predictor image installs no torch, imbalanced-learn, psycopg2, pyarrow, MLflow, KFP,
Optuna or Matplotlib. Each test loads a champion in a fresh interpreter where those packages
cannot be imported (as in that image), serves one prediction through ``ForecastModel`` and
checks that it matches the offline forecast, that none of them was loaded and that no module
of ours even tried to import one (third-party optional probes, such as pandas looking for
pyarrow, are allowed: they fall back when the package is absent).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.models.bundle import ModelBundle
from serving_support import history_sample, v1_history

pytestmark = pytest.mark.slow  # fresh interpreters that train and serve a champion

TRAINING_ONLY = ("torch", "imblearn", "psycopg2", "pyarrow", "mlflow", "kfp", "optuna", "matplotlib")

# Runs in the child: argv = model_dir, request JSON path, comma-separated packages made absent.
_CHILD = r"""
import asyncio, importlib.abc, json, sys

absent = set(filter(None, sys.argv[3].split(",")))
attempts = []

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in absent:
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
            frame = frame.f_back
        attempts.append([name, frame.f_globals.get("__name__", "?") if frame else "?"])
        raise ModuleNotFoundError(f"No module named {name!r} (not in the lean image)", name=name)

sys.meta_path.insert(0, Absent())

from ml_cloud_optimizer.serving.model import ForecastModel

model = ForecastModel("mlco", sys.argv[1])
model.load()
with open(sys.argv[2]) as f:
    body = json.load(f)
answer = asyncio.run(model(body))[0]["predictions"]  # preprocess -> predict -> postprocess, as KServe calls it
print(json.dumps({
    "answer": answer,
    "loaded": sorted({m.partition(".")[0] for m in sys.modules}),
    "attempts": attempts,
}))
"""


def _serve_in_child(model_dir, history, absent, tmp_path) -> dict:
    """Load ``model_dir`` and answer a v1 request for ``history`` in a fresh interpreter."""
    request = tmp_path / "request.json"
    request.write_text(json.dumps(v1_history(history)))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model_dir), str(request), ",".join(absent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check(result, model_dir, history, absent) -> None:
    ours = [
        (name, importer)
        for name, importer in result["attempts"]
        if importer.partition(".")[0] in ("ml_cloud_optimizer", "__main__")
    ]
    assert not ours, f"our modules tried to import training-only packages: {ours}"
    assert not set(absent) & set(result["loaded"])
    offline = ModelBundle.load(model_dir).predict(history).set_index("entity_id")
    assert {row["entity_id"] for row in result["answer"]} == set(offline.index)
    for row in result["answer"]:
        assert row["p50_h12"] == pytest.approx(offline.loc[row["entity_id"], "p50_h12"], rel=1e-9)
        assert 0.0 <= row["peak_prob"] <= 1.0
        assert row["peak_prob"] == pytest.approx(offline.loc[row["entity_id"], "peak_prob"], rel=1e-6)


def test_a_tabular_champion_is_served_without_the_training_stack(champion_dir, tmp_path):
    model_dir = champion_dir
    history = history_sample(entities=2)
    result = _serve_in_child(model_dir, history, TRAINING_ONLY, tmp_path)
    _check(result, model_dir, history, TRAINING_ONLY)
    assert "lightgbm" in result["loaded"]


def test_a_recurrent_champion_still_loads_torch_and_predicts(tmp_path):
    from ml_cloud_optimizer.models.peak import SequencePeakClassifier
    from ml_cloud_optimizer.models.sequence import GRUForecaster

    fleet = generate_fleet(3 * 288 * 3, entities=3, seed=5)
    small = {
        "window": 24,
        "hidden": 8,
        "epochs": 1,
        "samples_per_epoch": 512,
        "seasonal_lag": 0,
        "device": "cpu",
        "num_threads": 1,
    }
    forecaster = GRUForecaster(**small).fit(fleet.metrics)
    peak = SequencePeakClassifier(**small).fit(fleet.metrics)
    model_dir = ModelBundle(forecaster, peak, {"source": "tests"}).save(tmp_path / "recurrent")
    history = history_sample(entities=2)
    absent = tuple(p for p in TRAINING_ONLY if p != "torch")

    result = _serve_in_child(model_dir, history, absent, tmp_path)
    _check(result, model_dir, history, absent)
    assert "torch" in result["loaded"]
