"""The dashboard in a real headless browser, on a run directory made by the real core.

A small fleet goes through the real training, recommendation and backtest code; the
dashboard is started with ``streamlit run`` exactly as ``mlco dashboard`` starts it, and
Debian's chromium, driven by Playwright, opens every view. Each view must draw a Plotly chart
and show no Streamlit exception; an empty run directory must instead show the no-data note
on every view. Screenshots go to a temporary directory (or ``$MLCO_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit", reason="the dashboard needs streamlit (pip install streamlit plotly playwright)")
playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright")

from ml_cloud_optimizer.dashboard import data, streamlit_command  # noqa: E402
from ml_cloud_optimizer.dashboard.views import VIEWS  # noqa: E402

CHROMIUM = Path(os.environ.get("MLCO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLOT = ".js-plotly-plot .main-svg"
EXCEPTION = '[data-testid="stException"]'

pytestmark = pytest.mark.slow


def _build_run(home: Path) -> None:
    """An ``$MLCO_HOME`` filled by the real core, laid out as the commands lay it out.

    ``fleet/``: a small generated fleet; ``train/``: the hold-out evaluation of LightGBM beside
    the baselines, as ``mlco train`` writes it, plus the hold-out forecasts; ``runs/<time>/``:
    recommendations from the champion's last forecasts, the autoscaling backtest and the
    feature drift between the training window and the hold-out.
    """
    from ml_cloud_optimizer.data.io import write_fleet
    from ml_cloud_optimizer.data.synthetic import generate_fleet
    from ml_cloud_optimizer.drift import drift_report
    from ml_cloud_optimizer.features import CALENDAR_COLUMNS, build_features
    from ml_cloud_optimizer.models.tabular import LightGBMForecaster
    from ml_cloud_optimizer.optimizer.backtest import replay_fleet
    from ml_cloud_optimizer.optimizer.capacity import recommend
    from ml_cloud_optimizer.tracking import train_and_export

    fleet = generate_fleet(6 * 288 * 10, entities=6, seed=3)
    write_fleet(fleet, home / "fleet" / "metrics.parquet")
    quick = {"n_estimators": 60, "early_stopping_rounds": 10, "n_jobs": 1}
    trained = train_and_export(
        fleet.metrics, {"lightgbm": LightGBMForecaster(**quick)}, home / "train", tracker=None, refit=False
    )
    evaluation = trained.evaluation
    forecasts = pd.concat([f.assign(model=name) for name, f in evaluation.forecasts.items()], ignore_index=True)
    forecasts.to_parquet(home / "train" / "forecasts.parquet", index=False)

    run = home / "runs" / "20260101T000000Z"
    run.mkdir(parents=True)
    champion = evaluation.forecasts[trained.champion]
    latest = champion[champion["ts"] > champion["ts"].max() - pd.Timedelta(hours=6)]
    recommend(latest, fleet.entities).to_csv(run / "recommendations.csv", index=False)
    replay_fleet(fleet, LightGBMForecaster(horizons=(1,), **quick), compare_persistence=False).save(run)
    features = build_features(fleet.metrics).drop(columns=list(CALENDAR_COLUMNS))
    before = features["ts"] < evaluation.cutoff
    drift_report(features.loc[before], features.loc[~before]).to_csv(run / "drift.csv", index=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    _build_run(out)
    return out


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    wanted = os.environ.get("MLCO_SCREENSHOT_DIR")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        return Path(wanted)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: run tools/install_browser.sh (apt-get install chromium)")
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _dashboard(run_dir: Path, log: Path):
    """Serve the dashboard of ``run_dir`` on a free loopback port until the block ends; yield its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        server = subprocess.Popen(streamlit_command(run_dir, port=port), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise AssertionError(f"streamlit exited with {server.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"streamlit was not healthy within 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _open_view(page, label: str) -> None:
    """Pick ``label`` in the sidebar and wait until Streamlit has finished drawing it."""
    page.get_by_test_id("stSidebar").get_by_text(label, exact=True).click()
    page.get_by_role("heading", name=label).wait_for(timeout=30_000)
    page.wait_for_function(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            return app && app.getAttribute('data-test-script-state') === 'notRunning'
                && !document.querySelector('[data-stale="true"]');
        }""",
        timeout=60_000,
    )


def _slug(label: str) -> str:
    return label.lower().replace(" ", "_")


def _expected_labels(home: Path) -> dict[str, set[str]]:
    """Per view, names its chart must carry, read straight from the files the core wrote."""
    run = home / "runs" / "20260101T000000Z"
    board = pd.read_csv(home / "train" / "leaderboard.csv")
    entities = pd.read_parquet(home / "fleet" / "metrics.entities.parquet")
    drift = pd.read_csv(run / "drift.csv").dropna(subset=["psi"])
    return {
        "Fleet overview": set(entities["service"]),
        "Forecast vs actual": {str(board.loc[board["champion"], "model"].iloc[0])},
        "Leaderboard": set(board["model"]),
        "Recommendations": {pd.read_csv(run / "recommendations.csv")["entity_id"].iloc[0]},
        "Backtest": set(pd.read_csv(run / "backtest_summary.csv")["policy"]),
        "Drift": {drift.loc[drift["psi"].idxmax(), "feature"]},
    }


def _chart_texts(page) -> set[str]:
    """Every text Plotly drew: titles, axis ticks, legend entries."""
    texts = page.locator(".js-plotly-plot svg text").all_text_contents()
    return {t.strip() for t in texts} | {" ".join(texts)}


def test_every_view_draws_its_chart(run_dir, browser, screenshot_dir, tmp_path):
    for name in data.PARTS:
        assert data.find_part(run_dir, name) is not None, f"the run directory lacks its {name} part"
    expected = _expected_labels(run_dir)
    assert set(expected) == set(VIEWS)
    with _dashboard(run_dir, tmp_path / "streamlit.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_test_id("stSidebar").wait_for(timeout=60_000)
        for label in VIEWS:
            _open_view(page, label)
            page.wait_for_selector(PLOT, timeout=30_000)
            page.screenshot(path=screenshot_dir / f"{_slug(label)}.png", full_page=True)
            assert page.locator(EXCEPTION).count() == 0, f"{label}: {page.locator(EXCEPTION).first.inner_text()}"
            assert page.get_by_text(data.NO_DATA).count() == 0, f"{label} says it has no data"
            texts = _chart_texts(page)
            for name in expected[label]:
                assert any(name in text for text in texts), f"{label}: no chart names {name!r}"
    assert {p.name for p in screenshot_dir.glob("*.png")} >= {f"{_slug(label)}.png" for label in VIEWS}


def test_a_run_without_data_says_what_is_missing(browser, screenshot_dir, tmp_path):
    """No part at all but a drift table without its psi column: notes and one error, never a traceback."""
    empty = tmp_path / "empty_run"
    empty.mkdir()
    pd.DataFrame({"feature": ["cpu_util"], "ks_stat": [0.1]}).to_csv(empty / "drift.csv", index=False)
    with _dashboard(empty, tmp_path / "streamlit.log") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        page.goto(url)
        page.get_by_test_id("stSidebar").wait_for(timeout=60_000)
        for label in VIEWS:
            _open_view(page, label)
            assert page.locator(EXCEPTION).count() == 0, f"{label}: {page.locator(EXCEPTION).first.inner_text()}"
            assert page.locator(".js-plotly-plot").count() == 0
            if label == "Drift":
                error = page.get_by_test_id("stAlertContentError")
                assert "no column psi" in error.inner_text() and "drift.csv" in error.inner_text()
            else:
                assert page.get_by_text(data.NO_DATA).count() >= 1, f"{label} shows no no-data note"
            page.screenshot(path=screenshot_dir / f"missing_{_slug(label)}.png")


def _dashboard_args(*argv: str):
    import argparse

    from ml_cloud_optimizer.cli import dashboard as dashboard_cli

    parser = argparse.ArgumentParser(prog="mlco")
    dashboard_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["dashboard", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--run-dir", "/nonexistent/run"), "no such directory"),
        (("--port", "70000"), "TCP port"),
    ],
)
def test_cli_refuses_bad_arguments_in_one_line(argv, message):
    from ml_cloud_optimizer.cli import UserError

    args = _dashboard_args(*argv)
    with pytest.raises(UserError, match=message) as caught:
        args.func(args)
    assert "\n" not in str(caught.value)
