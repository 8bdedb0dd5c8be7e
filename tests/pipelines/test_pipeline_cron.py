"""Six-field cron expressions are checked before anything is sent to Kubeflow Pipelines."""

from __future__ import annotations

import pytest

from ml_cloud_optimizer.pipelines.runners.cron import CronError, validate_cron


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 2 * * *",
        "0 */15 * * * *",
        "30 0 9 ? * MON-FRI",
        "0 0 0 1,15 * ?",
        "0 0 6 * JAN-MAR SUN",
        "59 59 23 31 12 6",
        "0 5-10/2 8-18 * * 1-5",
        "@daily",
        "@every 6h",
        "@every 1h30m",
    ],
)
def test_valid_expressions_are_accepted(expression):
    assert validate_cron(expression) == expression


def test_whitespace_is_normalised():
    assert validate_cron("  0  0 2 *\t* * ") == "0 0 2 * * *"


@pytest.mark.parametrize(
    "expression, words",
    [
        ("0 2 * * *", ["5 fields", "seconds first"]),
        ("0 0 2 * * * *", ["7 fields"]),
        ("", ["empty"]),
        ("60 0 2 * * *", ["second", "60", "0-59"]),
        ("0 60 2 * * *", ["minute", "60"]),
        ("0 0 24 * * *", ["hour", "24", "0-23"]),
        ("0 0 2 0 * *", ["day of month", "0", "1-31"]),
        ("0 0 2 * 13 *", ["month", "13", "1-12"]),
        ("0 0 2 * * 7", ["day of week", "7", "0-6"]),
        ("0 0 2 * FOO *", ["month", "FOO"]),
        ("? 0 2 * * *", ["second", "'?'"]),
        ("0 0 2 * * 5-1", ["day of week", "backwards"]),
        ("0 */0 2 * * *", ["minute", "step 0"]),
        ("0 0 2 * * 1,,2", ["day of week", "cannot read"]),
        ("@sometimes", ["descriptor"]),
    ],
)
def test_invalid_expressions_name_the_problem(expression, words):
    with pytest.raises(CronError) as info:
        validate_cron(expression)
    message = str(info.value)
    for word in words:
        assert word in message
