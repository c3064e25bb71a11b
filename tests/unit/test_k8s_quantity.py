"""Quantities compare by value, not by spelling."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelpilot.k8s.quantity import parse_quantity, same_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("1", "1"),
        (2, "2"),
        ("1Gi", str(2**30)),
        ("1.5G", "1.5e9"),
        ("1e3", "1000"),
        ("100n", "1e-7"),
        ("0.25Ki", "256"),
    ],
)
def test_parse(text: object, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["v1", "", "1.2.3x", True, "Gi"])
def test_not_quantities(text: object) -> None:
    assert parse_quantity(text) is None


def test_same_quantity() -> None:
    assert same_quantity("0.5", "500m") and same_quantity(1, "1000m")
    assert not same_quantity("1Gi", "1G") and not same_quantity("v1", "v1")
