"""`mlco report`: one HTML file, images inlined, every part of the run found or named as missing."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ml_cloud_optimizer.cli import main
from ml_cloud_optimizer.optimizer.backtest import default_policies, run_backtest
from ml_cloud_optimizer.optimizer.capacity import DemandGrid, recommend
from ml_cloud_optimizer.report import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data.strip())
            self._in_h2 = False


def _parse(html: str) -> _Images:
    parser = _Images()
    parser.feed(html)
    return parser


def _backtest_into(run_dir, entities=("web<1>", "db-2")):
    rng = np.random.default_rng(0)
    steps = 288 * 2
    t = np.arange(steps)[:, None]
    demand = np.clip(3 + 2 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.3, (steps, len(entities))), 0.1, 8)
    grid = DemandGrid(
        ts=pd.date_range("2026-01-05T00:00:00Z", periods=steps, freq="5min", name="ts"),
        entity_ids=pd.Index(list(entities), name="entity_id"),
        vcpus=np.full(len(entities), 8.0),
        price_per_core_hour=np.full(len(entities), 0.04),
        demand=demand,
    )
    forecasts = grid.frame(grid.demand / 8.0, "p50_h1").assign(p90_h1=lambda f: f["p50_h1"] * 1.1)
    result = run_backtest(grid, default_policies(forecasts, calibrate_from=grid.ts[200]), start=400)
    result.save(run_dir)
    entity_frame = pd.DataFrame({"entity_id": list(entities), "vcpus": 8, "hourly_price": 0.32})
    recommend(forecasts, entity_frame).to_csv(run_dir / "recommendations.csv", index=False)
    return result


def test_report_of_a_full_run_has_every_section_with_real_images(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = _backtest_into(run_dir)
    pd.DataFrame(
        {
            "rank": [1, 2],
            "model": ["lightgbm", "persistence"],
            "kind": ["lightgbm", "persistence"],
            "mae_h12": [0.04, 0.05],
            "vs_persistence_h12": [0.8, 1.0],
            "fit_s": [3.0, 0.0],
            "champion": [True, False],
        }
    ).to_csv(run_dir / "leaderboard.csv", index=False)
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    (run_dir / "plots").mkdir()
    fig.savefig(run_dir / "plots" / "forecast_vs_actual.png")

    path = build_report(run_dir)
    assert path == run_dir / "report.html"
    html = path.read_text()
    parsed = _parse(html)
    assert parsed.headings == [
        "Leaderboard",
        "Forecasts",
        "Autoscaling backtest",
        "Capacity recommendations",
        "Monitoring",
    ]
    # leaderboard bar chart, train's own PNG, backtest summary and capacity, recommendations
    assert len(parsed.sources) == 5
    for src in parsed.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "plots/forecast_vs_actual.png" in html
    assert "Champion: lightgbm" in html
    ratio = result.ratio("forecast", "vpa", "core_hours")
    assert f"x{ratio:.3f}" in html
    assert "web&lt;1&gt;" in html and "web<1>" not in html  # entity names are escaped
    assert "No drift.csv in this run" in html


def test_report_of_an_empty_run_names_the_command_for_each_missing_part(tmp_path):
    path = build_report(tmp_path, tmp_path / "out" / "r.html")
    html = path.read_text()
    assert _parse(html).sources == []
    for needed in ("mlco train", "mlco backtest", "mlco recommend"):
        assert needed in html
    assert len(re.findall(r'class="missing"', html)) == 5


def test_mlco_report_writes_the_file_and_refuses_a_missing_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _backtest_into(run_dir)
    assert main(["report", "--run-dir", str(run_dir)]) == 0
    assert (run_dir / "report.html").is_file()
    assert str(run_dir / "report.html") in capsys.readouterr().out
    assert main(["report", "--run-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such run directory" in err[0]
