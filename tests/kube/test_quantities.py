"""Kubernetes quantities: written canonical and rounded up, read back in every spelling the API server takes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_cloud_optimizer.kube.quantities import bytes_quantity, cores_quantity, parse_bytes, parse_cores, parse_quantity

MIB, GIB = 2**20, 2**30


@pytest.mark.parametrize(
    ("cores", "text"),
    [
        (0.25, "250m"),
        (2.0, "2"),
        (1.5, "1500m"),
        (0.1 * 3, "300m"),  # 300.00000000000006 millicores is float noise, not a millicore more
        (0.2501, "251m"),  # rounded up: less would throttle
        (1e-6, "1m"),
        (16, "16"),
    ],
)
def test_cores_are_whole_millicores_rounded_up(cores, text):
    assert cores_quantity(cores) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (512 * MIB, "512Mi"),
        (2 * GIB, "2Gi"),
        (1.5 * GIB, "1536Mi"),
        (2**40, "1Ti"),
        (1, "1Mi"),
        (MIB + 1, "2Mi"),
        (0.1 * 3 * GIB, "308Mi"),  # 307.2 MiB, up
    ],
)
def test_bytes_are_whole_mebibytes_rounded_up_with_the_largest_exact_suffix(size, text):
    assert bytes_quantity(size) == text


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0, "1"])
def test_no_quantity_is_written_for_a_non_positive_or_non_finite_amount(bad):
    with pytest.raises(ValueError, match="positive finite"):
        cores_quantity(bad)
    with pytest.raises(ValueError, match="positive finite"):
        bytes_quantity(bad)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", 0.25),
        ("2", 2.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("2e-3", 0.002),
        ("1k", 1e3),
        ("1M", 1e6),
        ("1G", 1e9),
        ("1T", 1e12),
        ("1E", 1e18),  # exa, not an exponent without digits
        ("100u", 1e-4),
        ("500n", 5e-7),
        ("1Ki", 1024.0),
        ("512Mi", 512.0 * MIB),
        ("1.5Gi", 1.5 * GIB),
        ("1Ti", 2.0**40),
        (" 2Gi ", 2.0 * GIB),
        ("+1", 1.0),
        (3, 3.0),
        (0.5, 0.5),
    ],
)
def test_every_spelling_parses(text, value):
    assert parse_quantity(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("bad", ["", "abc", "1.5 Gi", "1Mb", "1mi", "--1", "1e", "Gi", True])
def test_what_is_not_a_quantity_is_refused_with_its_text(bad):
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(bad)


def test_resources_refuse_negative_amounts():
    assert parse_quantity("-1") == -1.0
    with pytest.raises(ValueError, match="non-negative"):
        parse_cores("-100m")
    with pytest.raises(ValueError, match="non-negative"):
        parse_bytes("-1Mi")


@given(st.floats(min_value=1e-4, max_value=1e4, allow_nan=False))
def test_cores_read_back_are_never_less_and_at_most_a_millicore_more(cores):
    back = parse_cores(cores_quantity(cores))
    assert cores - 1e-9 <= back <= cores + 1e-3 + 1e-9


@given(st.floats(min_value=1.0, max_value=2.0**45, allow_nan=False))
def test_bytes_read_back_are_never_less_and_at_most_a_mebibyte_more(size):
    back = parse_bytes(bytes_quantity(size))
    assert size * (1 - 1e-12) <= back <= size + MIB
