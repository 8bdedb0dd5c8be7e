"""The scale benches' arithmetic: growth exponents, projections, overlap and the overhead ratio.

``bench/`` is not a package; its modules are imported from there, as the benches import each other.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _scaling import covered_seconds, growth_exponent, growth_exponents, overhead_ratio, project


def test_growth_exponent_reads_linear_quadratic_and_fixed_costs():
    assert growth_exponent(1e5, 2.0, 1e6, 20.0) == pytest.approx(1.0)
    assert growth_exponent(1e5, 2.0, 1e6, 200.0) == pytest.approx(2.0)
    assert growth_exponent(1e5, 3.0, 1e6, 3.0) == 0.0
    # 10x the rows for 12.6x the time: log(12.6) / log(10)
    assert growth_exponent(100_000, 1.0, 1_000_000, 12.6) == pytest.approx(1.1004, abs=1e-4)


def test_growth_exponents_are_taken_between_consecutive_sizes_in_order():
    points = [(1e7, 400.0), (1e5, 2.0), (1e6, 20.0)]
    assert growth_exponents(points) == pytest.approx([1.0, math.log10(20.0)])


@pytest.mark.parametrize("bad", [(0, 1.0, 10, 2.0), (10, 1.0, 10, 2.0), (10, 0.0, 100, 2.0)])
def test_growth_exponent_refuses_what_has_no_exponent(bad):
    with pytest.raises(ValueError, match="growth_exponent"):
        growth_exponent(*bad)


def test_project_draws_the_line_through_the_two_largest_sizes():
    # 0.7 GiB fixed and 3 GiB per million rows between 100K and 1M
    assert project([(1e5, 1.0), (1e6, 3.7)], 1e7) == pytest.approx(30.7)
    # the smallest point is ignored once there are three
    assert project([(1e4, 9.0), (1e5, 1.0), (1e6, 3.7)], 86.4e6) == pytest.approx(3.7 + 3e-6 * 85.4e6)


def test_project_takes_a_falling_slope_as_flat_and_one_point_as_proportional_above_the_floor():
    assert project([(1e5, 2.0), (1e6, 1.5)], 1e7) == 1.5
    assert project([(1e5, 0.5)], 1e6, floor=0.25) == pytest.approx(2.75)
    assert project([(1e5, 0.5)], 1e6) == pytest.approx(5.0)
    assert math.isnan(project([], 1e6))


def test_covered_seconds_counts_overlapping_intervals_once():
    assert covered_seconds([(0, 10), (5, 12), (20, 21)]) == 13.0
    assert covered_seconds([(0, 10), (2, 3)]) == 10.0
    assert covered_seconds([]) == 0.0


def test_overhead_ratio():
    assert overhead_ratio(120.0, 90.0) == 0.25
    with pytest.raises(ValueError, match="total must be positive"):
        overhead_ratio(0.0, 1.0)


def _task(component, start, execute_start, execute_end, exit_, import_s, kind=None):
    return {
        "component": component,
        "kind": kind,
        "process_start": start,
        "execute_start": execute_start,
        "execute_end": execute_end,
        "exit": exit_,
        "import_s": import_s,
    }


def test_pipeline_summary_splits_the_wall_time():
    import pipeline_local

    tasks = [
        _task("datagen", 100.0, 101.0, 105.0, 105.5, 2.0),
        _task("train_tabular", 106.0, 107.0, 127.0, 127.5, 3.0, kind="lightgbm"),
        _task("train_tabular", 106.0, 107.0, 117.0, 117.5, 3.0, kind="xgboost"),  # 10 s alongside lightgbm
    ]
    summary = pipeline_local.summarise(40.0, {"datagen": 6.0, "train-tabular": 44.0}, tasks)
    # compute: (4 - 2) + (20 - 3) + (10 - 3) less the 10 s the two loop iterations overlapped
    assert summary["stage_compute_s"] == 16.0
    assert summary["overhead_ratio"] == 0.6
    assert summary["overhead_ratio_imports_as_compute"] == pytest.approx(round(1 - 24 / 40, 3))
    assert summary["overhead_s"]["concurrent_compute_s"] == 10.0
    assert summary["overhead_s"]["task_imports_s"] == 8.0
    assert summary["overhead_s"]["outside_tasks_s"] == 40.0 - (5.5 + 21.5)
    # datagen: 6.0 s seen, 5.5 s alive; train-tabular, both iterations: 44 s seen, 21.5 + 11.5 alive
    assert summary["overhead_s"]["task_span_outside_process_s"] == 0.5 + 11.0
    assert "task_s" not in summary["stages"]["train_tabular[lightgbm]"]
    assert summary["stages"]["datagen"] == {
        "compute_s": 2.0,
        "import_s": 2.0,
        "startup_s": 1.0,
        "teardown_s": 0.5,
        "process_s": 5.5,
        "task_s": 6.0,
    }
    assert summary["stages"]["train_tabular[lightgbm]"]["compute_s"] == 17.0


def test_scale_report_names_the_worst_stage_and_projects_the_fleet():
    import scale

    def run(seconds, rss):  # the CPU work 90% of the wall time
        return {"seconds": seconds, "work_cpu_s": 0.9 * seconds, "peak_rss_gib": rss, "rss_before_gib": 0.25}

    report = {
        "datagen": {"runs": {100_000: run(1.0, 0.3), 1_000_000: run(10.0, 0.8)}},
        "features": {
            "runs": {
                100_000: run(2.0, 0.5),
                1_000_000: run(25.0, 2.5),
                10_000_000: {"skipped": "projected 20.5 GiB > limit 14.0 GiB", "projected_rss_gib": 20.5},
            }
        },
    }
    out = scale.finish(report, [100_000, 1_000_000, 10_000_000])
    assert out["growth_exponent"] == round(math.log10(12.5), 3)
    assert out["growth_exponent_wall"] == round(math.log10(12.5), 3)
    assert out["growth_exponent_stage"] == "features"
    assert out["peak_rss_gib"] == 2.5 and out["peak_rss_stage"] == "features at 1,000,000"
    # 1.097 <= 1.1 and 2.5 GiB <= 16, but features did not run at 10M: no target is met there
    assert out["not_run_projected_rss_gib"] == {"features at 10,000,000": 20.5}
    assert out["meets_targets"] is False
    features = out["stages"]["features"]
    assert features["rss_bytes_per_row"] == round(2.0 / 900_000 * (1 << 30))
    # 2.5 GiB + 2 GiB per 900K rows over the 85.4M rows beyond 1M
    assert features["fleet_86m"]["projected_rss_gib"] == round(2.5 + 2.0 / 900_000 * 85_400_000, 1)
    assert features["runs"]["10000000"]["skipped"].startswith("projected")
