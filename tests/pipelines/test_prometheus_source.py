"""A Prometheus source everywhere a trace path works: `mlco run`, `mlco db load`, and the cluster setting.

A real Prometheus (Debian's, through ``prometheus_support``) is backfilled with a small generated
fleet written as Kubernetes series (``data.openmetrics``): two pods, ten days. `mlco run` reads
it through the whole local pipeline; `mlco db load` loads it into a test warehouse twice, the
second time changing nothing. ``prometheus`` and host-less URLs resolve against
``MLCO_PROMETHEUS_URL``, which the compiled pipeline gives ``datagen`` from the settings ConfigMap.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pandas as pd
import pytest
import yaml

from compiled_yaml import WORKLOAD_YAML, read_compiled
from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.data.openmetrics import write_openmetrics
from ml_cloud_optimizer.data.synthetic import generate_fleet
from ml_cloud_optimizer.errors import UserInputError
from ml_cloud_optimizer.pipeline_steps import sources
from ml_cloud_optimizer.pipeline_steps.sources import DEFAULT_PROMETHEUS_URL, resolve_source
from ml_cloud_optimizer.pipelines import settings
from ml_cloud_optimizer.warehouse import connect, create_database, drop_database
from prometheus_support import running_prometheus

ROOT = Path(__file__).resolve().parents[2]
COMPILED = WORKLOAD_YAML
PODS, DAYS = 2, 10


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """(host:port, the range as query parameters, the pods' entity ids, rows written) of a backfilled Prometheus."""
    fleet = generate_fleet(PODS * DAYS * 288, entities=PODS, seed=5)
    text = io.StringIO()
    pods = write_openmetrics(fleet, text, namespace="shop")
    first, last = fleet.metrics["ts"].min(), fleet.metrics["ts"].max()
    span = f"start={first:%Y-%m-%dT%H:%M:%SZ}&end={last:%Y-%m-%dT%H:%M:%SZ}&step=5m&level=pod"
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), text.getvalue()) as hostport:
        yield hostport, span, sorted(pods.values()), int(fleet.metrics["cpu_util"].notna().sum())


def _rows(dsn: str) -> int:
    with closing(connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM metrics")
        return cur.fetchone()[0]


def _loaded(out: str) -> int:
    """N of `mlco db load`'s "loaded N rows from ..." line."""
    line = next(line for line in out.splitlines() if line.startswith("loaded "))
    return int(line.split()[1].replace(",", ""))


def _about(rows: int, written: int) -> bool:
    """What Prometheus gives back is what was written, less a slot after each missed sample (rate() needs two)."""
    return 0.98 * written <= rows <= written


# -- resolving `prometheus` against the setting ---------------------------------------------------


def test_files_the_generator_and_full_urls_are_left_alone():
    for source in ("synthetic", "/data/trace.csv", "prometheus://prom:9090?level=pod", "prometheus+https://p:1"):
        assert resolve_source(source, setting="prometheus://elsewhere:1") == source


def test_the_bare_word_is_the_setting_with_its_parameters():
    setting = "prometheus+https://prom.monitoring.svc:9091?token_file=serviceaccount&level=workload"
    assert resolve_source("prometheus", setting=setting) == setting


def test_a_url_without_host_takes_the_server_from_the_setting_and_overrides_its_parameters():
    setting = "prometheus+https://prom:9091/api-prefix?token_file=serviceaccount&level=workload&namespace=ops"
    resolved = resolve_source('prometheus://?level=pod&start=2024-01-01T00:00:00Z&selector=app="web"', setting=setting)
    assert resolved.startswith("prometheus+https://prom:9091/api-prefix?")
    assert dict(parse_qsl(urlsplit(resolved).query)) == {
        "token_file": "serviceaccount",
        "level": "pod",
        "namespace": "ops",
        "start": "2024-01-01T00:00:00Z",
        "selector": 'app="web"',
    }


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("http://prometheus-k8s.monitoring.svc:9090", "prometheus://prometheus-k8s.monitoring.svc:9090"),
        (
            "https://thanos-querier.openshift-monitoring.svc:9091",
            "prometheus+https://thanos-querier.openshift-monitoring.svc:9091",
        ),
    ],
)
def test_the_setting_may_be_the_services_own_http_address(setting, expected):
    assert resolve_source("prometheus", setting=setting) == expected


def test_the_setting_comes_from_the_environment_else_the_default(monkeypatch):
    monkeypatch.delenv(sources.PROMETHEUS_SETTING, raising=False)
    assert resolve_source("prometheus") == DEFAULT_PROMETHEUS_URL
    monkeypatch.setenv(sources.PROMETHEUS_SETTING, "  ")
    assert resolve_source("prometheus://?level=node") == DEFAULT_PROMETHEUS_URL + "?level=node"
    monkeypatch.setenv(sources.PROMETHEUS_SETTING, "prometheus://mine:9090")
    assert resolve_source("prometheus") == "prometheus://mine:9090"


@pytest.mark.parametrize("setting", ["ftp://prom:21", "prometheus://", "prom:9090", "http://:9090"])
def test_a_malformed_setting_is_one_line_naming_it(setting):
    with pytest.raises(UserInputError, match=f"^{sources.PROMETHEUS_SETTING}=") as info:
        resolve_source("prometheus", setting=setting)
    assert "\n" not in str(info.value)


def test_the_default_setting_is_written_once_for_code_and_manifests():
    lines = (ROOT / "manifests" / "base" / "pipeline-settings.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    assert env == {settings.PROMETHEUS_URL_KEY: DEFAULT_PROMETHEUS_URL}
    assert settings.PROMETHEUS_URL_KEY == sources.PROMETHEUS_SETTING


# -- the compiled pipeline and the manifests ------------------------------------------------------


def test_datagen_reads_the_setting_from_the_pipeline_config_map_and_is_never_cached():
    spec, platform = read_compiled(COMPILED)
    datagen = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]["datagen"]
    assert not datagen["cachingOptions"].get("enableCache")
    (entry,) = platform["exec-datagen"]["configMapAsEnv"]
    assert entry["configMapName"] == settings.PIPELINE_SETTINGS_CONFIG_MAP
    assert entry["keyToEnv"] == [{"configMapKey": "MLCO_PROMETHEUS_URL", "envVar": "MLCO_PROMETHEUS_URL"}]
    assert entry["optional"] is True  # a run from a file or the generator starts without it
    # No other task reads it.
    readers = {
        name
        for name, cfg in platform.items()
        for e in cfg.get("configMapAsEnv", [])
        if any(k["configMapKey"] == "MLCO_PROMETHEUS_URL" for k in e["keyToEnv"])
    }
    assert readers == {"exec-datagen"}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_overlay_renders_the_setting_into_the_pipeline_config_map_only(overlay):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found on PATH: it renders the manifests (`apt-get install kubectl`)")
    done = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "manifests" / "overlays" / overlay)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    maps = {
        d["metadata"]["name"]: d.get("data", {})
        for d in yaml.safe_load_all(done.stdout)
        if d and d["kind"] == "ConfigMap"
    }
    assert maps[settings.PIPELINE_SETTINGS_CONFIG_MAP]["MLCO_PROMETHEUS_URL"] == DEFAULT_PROMETHEUS_URL
    predictor = [name for name in maps if name.startswith("mlco-settings")]
    assert predictor and all("MLCO_PROMETHEUS_URL" not in maps[name] for name in predictor)


# -- against a real Prometheus --------------------------------------------------------------------


def test_db_load_of_a_url_loads_every_row_and_again_changes_nothing(prometheus, warehouse_dsn, monkeypatch, capsys):
    hostport, span, _, written = prometheus
    monkeypatch.setenv("DATABASE_URL", warehouse_dsn)
    url = f"prometheus://{hostport}?{span}"
    assert main(["db", "load", url]) == 0
    first = capsys.readouterr().out
    rows = _rows(warehouse_dsn)
    assert _loaded(first) == rows and _about(rows, written)
    assert f"loaded {rows:,} rows from prometheus://{hostport}?" in first and f"{rows:,} new" in first
    assert main(["db", "load", url]) == 0
    second = capsys.readouterr().out
    assert f"0 new, 0 updated, {rows:,} unchanged" in second
    assert _rows(warehouse_dsn) == rows
    with closing(connect(warehouse_dsn)) as conn, conn.cursor() as cur:
        cur.execute("SELECT source, rows_in FROM load_log ORDER BY loaded_at")
        log = cur.fetchall()
    # What was read, range resolved, is what load_log says was loaded.
    assert len(log) == 2 and all(f"prometheus://{hostport}?start=" in source and n == rows for source, n in log)


def test_db_load_of_the_configured_prometheus(prometheus, warehouse_dsn, monkeypatch, capsys):
    hostport, span, _, written = prometheus
    monkeypatch.setenv("DATABASE_URL", warehouse_dsn)
    monkeypatch.setenv(sources.PROMETHEUS_SETTING, f"http://{hostport}?level=workload")
    assert main(["db", "load", f"prometheus://?{span}"]) == 0  # level=pod from the source wins
    out = capsys.readouterr().out
    assert _loaded(out) == _rows(warehouse_dsn) and _about(_rows(warehouse_dsn), written)
    assert f"from prometheus://{hostport}?" in out and "level=pod" in out


def test_datagen_resolves_the_bare_word_against_the_setting(prometheus, monkeypatch):
    hostport, span, pods, written = prometheus
    monkeypatch.setenv(sources.PROMETHEUS_SETTING, f"prometheus://{hostport}?{span}")
    read = sources.acquire_fleet("prometheus", records=0)
    assert f"prometheus://{hostport}?" in read.source
    assert _about(len(read.metrics), written)
    assert sorted(read.entities["entity_id"]) == pods


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["db", "load", "prometheus://127.0.0.1:1?level=pod", "--time-unit", "s"], "--time-unit"),
        (["db", "load", "prometheus://127.0.0.1:1?level=pod", "--format", "bitbrains"], "--format bitbrains"),
    ],
)
def test_file_options_on_a_url_are_one_line(argv, flag, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and len(err.splitlines()) == 1


def test_run_refuses_a_malformed_setting_before_anything_starts(tmp_path):
    env = {**os.environ, "MLCO_HOME": str(tmp_path / "home"), "MLCO_PROMETHEUS_URL": "ftp://prom:21"}
    done = subprocess.run(
        [sys.executable, "-m", "ml_cloud_optimizer", "run", "--source", "prometheus"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "MLCO_PROMETHEUS_URL=ftp://prom:21" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "home" / "pipeline_runs").exists()


@pytest.mark.slow
def test_mlco_run_learns_from_prometheus_end_to_end(prometheus, warehouse_url, tmp_path):
    from ml_cloud_optimizer.pipeline_steps.artifacts import load_fleet
    from ml_cloud_optimizer.pipelines.runners.execute import environment, executor_output

    hostport, span, pods, written = prometheus
    name = f"mlco_prometheus_run_{os.getpid()}"
    dsn = create_database(warehouse_url, name)
    home = tmp_path / "home"
    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            environment(MLCO_HOME=str(home), DATABASE_URL=dsn, MLFLOW_TRACKING_URI=None),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            # No sequence model: the empty ParallelFor must collect as an empty list (runners/empty_loops).
            argv = ["run", "--source", f"prometheus://{hostport}?{span}", "--models", "lightgbm"]
            code = main([*argv, "--trials", "0"])
        assert code == 0, err.getvalue()[-3000:]
        assert f"mlco run: prometheus://{hostport}?" in err.getvalue()
        datagen = next(home.glob("pipeline_runs/*/datagen"))
        (artifact,) = executor_output(datagen)["artifacts"]["fleet"]["artifacts"]
        assert f"prometheus://{hostport}?start=" in artifact["metadata"]["source"]  # what was read, recorded
        read = load_fleet(datagen / "fleet")
        assert _about(len(read.metrics), written) and sorted(read.entities["entity_id"]) == pods
        assert _rows(dsn) == len(read.metrics)
        assert "champion: " in out.getvalue() and (home / "champion" / "bundle.json").exists()
        board = pd.read_csv(next(home.glob("pipeline_runs/*/evaluate/evaluation/leaderboard.csv")))
        assert {"lightgbm", "persistence"} <= set(board["model"]) and "gru" not in set(board["model"])
    finally:
        drop_database(warehouse_url, name)
