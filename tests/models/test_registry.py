"""One registry of model kinds, one horizon rule: what adding a kind or mistyping horizons costs.

The issue's promise is that a new model kind touches ``models/registry.py`` and its own module
only. ``test_a_new_kind_needs_only_a_registry_line_and_its_module`` proves it: a throwaway kind,
defined in a module written to ``tmp_path`` and added to the table for the test alone, is
trained by ``mlco train``, wins the leaderboard's tie rule by its simplicity, is saved and
loaded by kind, trained by the pipeline's step, and shows up in every list the CLI and the
pipeline derive from the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compiled_yaml import WORKLOAD_YAML
from ml_cloud_optimizer import cli
from ml_cloud_optimizer.horizons import (
    DEFAULT_HORIZONS,
    HEADLINE_HORIZON,
    PEAK_HORIZON,
    check_horizons,
    parse_horizons,
)
from ml_cloud_optimizer.models import registry
from ml_cloud_optimizer.models.registry import ModelKind

REPO = Path(__file__).resolve().parents[2]


# -- the table -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry", [*registry.FORECASTERS.values(), *registry.PEAK_MODELS.values()], ids=lambda e: f"{e.family}:{e.kind}"
)
def test_every_entry_loads_the_class_of_its_kind(entry):
    assert entry.family in registry.FAMILIES
    assert entry.load().kind == entry.kind


def test_kinds_families_and_simplicity_come_from_the_table():
    assert registry.kinds("tabular") == ("lightgbm", "xgboost", "catboost")
    assert registry.kinds("sequence") == ("lstm", "gru")
    assert registry.TRAINABLE == ("lightgbm", "xgboost", "catboost", "lstm", "gru")
    assert registry.family("gru") == "sequence" and registry.family("persistence") == "baseline"
    assert [registry.simplicity(k) for k in ("persistence", "lightgbm", "gru", "lstm")] == [0, 2, 5, 6]
    assert registry.simplicity("prophet") == len(registry.FORECASTERS)
    with pytest.raises(ValueError, match=r"unknown model kind 'prophet'; known: persistence, "):
        registry.forecaster_entry("prophet")
    with pytest.raises(ValueError, match="unknown peak model kind 'x'"):
        registry.peak_entry("x")
    with pytest.raises(ValueError, match="unknown model family"):
        registry.kinds("trees")


def test_build_forecaster_fills_the_parameters_each_class_has():
    tree = registry.build_forecaster("lightgbm", horizons=[1.0, 12.0], seed=3, trials=2, epochs=9, threads=1)
    assert (tree.horizons, tree.random_state, tree.n_trials, tree.n_jobs) == ((1, 12), 3, 2, 1)
    net = registry.build_forecaster("gru", seed=4, epochs=2, threads=1, trials=7)
    assert (net.seed, net.epochs, net.num_threads) == (4, 2, 1)
    assert registry.build_forecaster("lightgbm", seed=None).random_state == type(tree)().random_state
    assert registry.build_forecaster("persistence", seed=1, threads=2).get_params() == {"horizons": DEFAULT_HORIZONS}


def test_registry_and_horizons_import_no_model_library():
    code = (
        "import sys, ml_cloud_optimizer.models.registry, ml_cloud_optimizer.horizons;"
        "print([m for m in ('lightgbm', 'xgboost', 'catboost', 'torch', 'sklearn') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_register_forecaster_only_accepts_kinds_in_the_table():
    from ml_cloud_optimizer.models.base import register_forecaster
    from ml_cloud_optimizer.models.baselines import PersistenceForecaster

    assert register_forecaster(PersistenceForecaster) is PersistenceForecaster
    with pytest.raises(AssertionError, match=r"not in models\.registry"):
        register_forecaster(type("Stray", (PersistenceForecaster,), {"kind": "stray"}))


def test_clip_forecast_is_the_range_of_utilisation():
    from ml_cloud_optimizer.data.schema import UTIL_MAX
    from ml_cloud_optimizer.models.base import clip_forecast

    assert clip_forecast(np.array([-0.2, 0.5, 9.0])).tolist() == [0.0, 0.5, UTIL_MAX]


# -- a new kind: one table line and its module -------------------------------------------------

_TOY_MODULE = "mlco_toy_forecaster"
_TOY_SOURCE = '''
"""A throwaway model kind: persistence under another name, with a seed and threads to be given."""
from ml_cloud_optimizer.horizons import DEFAULT_HORIZONS
from ml_cloud_optimizer.models.baselines import PersistenceForecaster


class ToyForecaster(PersistenceForecaster):
    kind = "toy"

    def __init__(self, horizons=DEFAULT_HORIZONS, random_state=0, n_jobs=1):
        self.horizons = horizons
        self.random_state = random_state
        self.n_jobs = n_jobs
'''
# Simpler than persistence: on a tie (the toy forecasts exactly what persistence does) it must win.
_TOY = ModelKind("toy", "tabular", _TOY_MODULE, "ToyForecaster", -1)


@pytest.fixture
def toy_kind(tmp_path, monkeypatch):
    """The toy kind in the registry's table and its module importable, for this test only."""
    (tmp_path / f"{_TOY_MODULE}.py").write_text(textwrap.dedent(_TOY_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.FORECASTERS, _TOY.kind, _TOY)
    yield _TOY
    sys.modules.pop(_TOY_MODULE, None)


@pytest.mark.usefixtures("toy_kind")
def test_a_new_kind_needs_only_a_registry_line_and_its_module(tmp_path, monkeypatch, capsys):
    from ml_cloud_optimizer.cli.train import build_candidates
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.models.base import Forecaster, forecaster_class
    from ml_cloud_optimizer.pipeline_steps.training import train_forecaster

    model = registry.build_forecaster("toy", seed=5, threads=2, epochs=3)
    assert (model.random_state, model.n_jobs) == (5, 2)
    assert forecaster_class("toy") is type(model)
    assert build_candidates(["toy"], seed=7)["toy"].random_state == 7

    fleet = generate_fleet(3 * 288, entities=2, seed=3)
    fitted = train_forecaster("toy", fleet, horizons=[1, 12], seed=6)
    loaded = Forecaster.load(fitted.save(tmp_path / "toy-model"))  # found by the kind saved in metadata.json
    assert type(loaded) is type(fitted) and loaded.horizons == (1, 12)

    # The `mlco train` path, end to end: the toy ties persistence and ranks above it on simplicity.
    monkeypatch.setenv("MLCO_HOME", str(tmp_path / "home"))
    out = tmp_path / "train"
    code = cli.main(["train", "--records", "4000", "--models", "toy", "--no-peak", "--no-tracking", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    board = pd.read_csv(out / "leaderboard.csv").set_index("model")
    assert board.loc["toy", "val_mae_h12"] == board.loc["persistence", "val_mae_h12"]
    assert board.loc["toy", "rank"] == board.loc["persistence", "rank"] - 1
    champion = board.index[board["champion"]][0]
    assert f"champion: {champion}" in printed
    assert json.loads((out / "champion" / "metadata.json").read_text())["kind"] == board.loc[champion, "kind"]


def test_lists_derived_at_import_include_a_new_kind(tmp_path):
    """In a fresh interpreter whose registry.py has one more line, every derived list has the kind."""
    (tmp_path / f"{_TOY_MODULE}.py").write_text(textwrap.dedent(_TOY_SOURCE))
    line = f"        ModelKind{tuple(vars(_TOY).values())!r},"
    code = textwrap.dedent(f"""
        import json, pathlib, sys, types
        import ml_cloud_optimizer.models as models
        path = pathlib.Path(models.__file__).with_name("registry.py")
        source = path.read_text()
        anchor = next(l for l in source.splitlines(keepends=True) if 'ModelKind("catboost"' in l)
        source = source.replace(anchor, anchor + {line!r} + "\\n")
        registry = types.ModuleType("ml_cloud_optimizer.models.registry")
        registry.__file__ = str(path)
        sys.modules[registry.__name__] = models.registry = registry
        exec(compile(source, str(path), "exec"), registry.__dict__)
        from ml_cloud_optimizer.cli import pipeline as pipeline_cli, train as train_cli
        from ml_cloud_optimizer.evaluation.leaderboard import SIMPLICITY
        from ml_cloud_optimizer.pipeline_steps import training
        from ml_cloud_optimizer.pipelines import settings
        from ml_cloud_optimizer.pipelines.runners import local
        args = local.local_arguments(models=["toy", "gru"])
        print(json.dumps({{
            "settings": settings.TABULAR_MODELS, "training": list(training.TABULAR_KINDS),
            "train_default": train_cli.DEFAULT_MODELS, "run_default": pipeline_cli._ALL_MODELS,
            "local": args["tabular_models"] + args["sequence_models"], "simplest": SIMPLICITY[0],
        }}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lists = json.loads(done.stdout.splitlines()[-1])
    assert lists["settings"] == lists["training"] == ["lightgbm", "xgboost", "catboost", "toy"]
    assert lists["train_default"] == lists["run_default"] == "lightgbm,xgboost,catboost,toy,lstm,gru"
    assert lists["local"] == ["toy", "gru"] and lists["simplest"] == "toy"


# -- horizons ----------------------------------------------------------------------------------


def test_horizons_are_checked_and_normalised():
    assert DEFAULT_HORIZONS == (1, HEADLINE_HORIZON) and PEAK_HORIZON == 12
    assert parse_horizons(" 12, 1,12 ") == (1, 12)
    assert check_horizons([12.0, 3]) == (3, 12)
    with pytest.raises(ValueError, match=r"^horizons 1,6: must include 12 \(one hour ahead; the champion is chosen"):
        parse_horizons("1,6")
    for bad in ("", "0,12", "a,12", "1.5,12"):
        with pytest.raises(ValueError, match=f"horizons {bad}: "):
            parse_horizons(bad)


def test_mlco_run_without_the_headline_horizon_fails_before_anything_starts(monkeypatch, capsys):
    import ml_cloud_optimizer.pipelines.runners.local

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("the pipeline was started")

    monkeypatch.setattr(ml_cloud_optimizer.pipelines.runners.local, "run_local", must_not_run)
    code = cli.main(["run", "--horizons", "1,6"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "must include 12" in err, err


def test_mlco_run_refuses_bad_horizons_without_importing_the_pipeline_or_a_model():
    code = (
        "import sys; from ml_cloud_optimizer.cli import main; rc = main(['run', '--horizons', '1,6']);"
        "heavy = ('ml_cloud_optimizer.pipelines.runners.local', 'kfp', 'lightgbm', 'torch');"
        "print(rc, [m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.stdout.strip() == "2 []", done.stderr
    assert done.stderr.strip() == (
        "mlco run: error: --horizons 1,6: must include 12 (one hour ahead; the champion is chosen on it)"
    )


def test_every_other_entry_point_refuses_the_same_horizons():
    from ml_cloud_optimizer.pipeline_steps.training import train_forecaster
    from ml_cloud_optimizer.pipelines.runners.local import local_arguments
    from ml_cloud_optimizer.pipelines.runners.remote import ParameterError, parse_params

    with pytest.raises(ValueError, match="must include 12"):
        local_arguments(horizons=[1, 6])
    with pytest.raises(ParameterError, match="parameter 'horizons': horizons 1,6: must include 12"):
        parse_params(["horizons=[1, 6]"], WORKLOAD_YAML)
    assert parse_params(["horizons=[1, 12]"], WORKLOAD_YAML)
    with pytest.raises(ValueError, match="must include 12"):  # before any data is touched
        train_forecaster("lightgbm", None, horizons=[1.0, 6.0])


def test_the_manifests_horizons_are_the_default_ones():
    lines = (REPO / "manifests" / "base" / "settings.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    assert env["MLCO_HORIZONS"] == ",".join(map(str, DEFAULT_HORIZONS))
