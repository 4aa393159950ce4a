"""Units in protocol files normalise to SI floats (A, V, s, Ah, V/s, A/s)."""

from __future__ import annotations

import math

import pytest

from controller.quantities import (CHARGE, CURRENT, CURRENT_RATE, MASS, SPECIFIC_CAPACITY, TIME,
                                   VOLTAGE, VOLTAGE_RATE, SpecError, format_rate, format_si,
                                   format_time, parse_quantity, parse_time)

ALL = {VOLTAGE, CURRENT, TIME, CHARGE}


@pytest.mark.parametrize("text, value, dim", [
    ("4.3 V", 4.3, VOLTAGE), ("4.3V", 4.3, VOLTAGE), ("30 mV", 0.030, VOLTAGE),
    ("-0.05 V", -0.05, VOLTAGE), ("2 A", 2.0, CURRENT), ("0.04 mA", 4e-5, CURRENT),
    ("0.04 MA", 4e-5, CURRENT), ("15 uA", 1.5e-5, CURRENT), ("15 µA", 1.5e-5, CURRENT),
    ("15 μA", 1.5e-5, CURRENT), ("3 nA", 3e-9, CURRENT), ("1 s", 1.0, TIME),
    ("10 sec", 10.0, TIME), ("2 seconds", 2.0, TIME), ("1 minute", 60.0, TIME),
    ("30 minutes", 1800.0, TIME), ("30 min", 1800.0, TIME), ("5 m", 300.0, TIME),
    ("2 h", 7200.0, TIME), ("1.5 hours", 5400.0, TIME), ("2 hr", 7200.0, TIME),
    ("1 day", 86400.0, TIME), ("2 days", 172800.0, TIME), ("20 ms", 0.020, TIME),
    ("0.5 mAh", 5e-4, CHARGE), ("2 Ah", 2.0, CHARGE), ("33 uAh", 3.3e-5, CHARGE),
    (".5 V", 0.5, VOLTAGE), ("1e-3 A", 1e-3, CURRENT),
])
def test_units_normalise_to_si(text: str, value: float, dim: str) -> None:
    q = parse_quantity(text, ALL)
    assert q.dim == dim
    assert q.value == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text, rate", [
    ("C/3", 1 / 3), ("c/3", 1 / 3), ("C/10", 0.1), ("2C", 2.0), ("0.5C", 0.5), ("0.5 C", 0.5),
    ("C", 1.0), ("1C", 1.0), ("C / 8", 0.125),
])
def test_c_rates_use_capacity(text: str, rate: float) -> None:
    q = parse_quantity(text, {CURRENT}, capacity_Ah=0.033e-3)
    assert q.c_rate == pytest.approx(rate)
    assert q.value == pytest.approx(rate * 0.033e-3)  # 1C delivers the capacity in one hour


def test_c_rate_without_capacity_is_nan_for_the_caller_to_reject() -> None:
    q = parse_quantity("C/3", {CURRENT})
    assert math.isnan(q.value) and q.c_rate == pytest.approx(1 / 3)


@pytest.mark.parametrize("text, value, dim", [
    ("1 mV/min", 1e-3 / 60, VOLTAGE_RATE), ("1 mV per minute", 1e-3 / 60, VOLTAGE_RATE),
    ("0.5 V/s", 0.5, VOLTAGE_RATE), ("2 uA/min", 2e-6 / 60, CURRENT_RATE),
    ("0.05 C/h", 0.05 * 0.03 / 3600, CURRENT_RATE), ("C/20/h", 0.05 * 0.03 / 3600, CURRENT_RATE),
])
def test_slopes(text: str, value: float, dim: str) -> None:
    q = parse_quantity(text, {VOLTAGE_RATE, CURRENT_RATE}, capacity_Ah=0.03)
    assert q.dim == dim
    assert q.value == pytest.approx(value)


def test_specific_capacity_and_mass() -> None:
    assert parse_quantity("3579 mAh/g", {SPECIFIC_CAPACITY}).value == pytest.approx(3.579)
    assert parse_quantity("0.675 mg", {MASS}).value == pytest.approx(6.75e-4)


@pytest.mark.parametrize("text, fragment", [
    ("4.3 Q", "unknown unit 'Q'"), ("4.3", "needs a unit"), ("V", "not a number"),
    ("1e999 V", "out of range"), ("C/0", "invalid C-rate"), ("", "empty"),
    ("4.3 V", "is a voltage"),
])
def test_bad_quantities(text: str, fragment: str) -> None:
    dims = {CURRENT, TIME} if text == "4.3 V" else ALL
    with pytest.raises(SpecError, match=fragment.replace("(", r"\(")):
        parse_quantity(text, dims)


def test_non_text_is_rejected() -> None:
    with pytest.raises(SpecError):
        parse_quantity(True, ALL)
    with pytest.raises(SpecError):
        parse_quantity(["1 V"], ALL)
    with pytest.raises(SpecError, match="negative"):
        parse_time("-1 s")


def test_formatting_is_readable() -> None:
    assert format_si(1.1e-5, "A") == "11 uA"
    assert format_si(-0.03, "A") == "-30 mA"
    assert format_si(0.0, "V") == "0 V"
    assert format_time(1800) == "30 min"
    assert format_time(7200) == "2 h"
    assert format_time(0.02) == "20 ms"
    assert format_time(10) == "10 s"
    assert format_rate(1e-3 / 60, "V") == "1 mV/min"
