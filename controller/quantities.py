"""Physical quantities in protocol files: parse text with units into SI floats, and back.

Every value the protocol language accepts is normalised here, so the rest of the controller only
ever sees SI floats: current in A, voltage in V, time in s, charge in Ah (the battery community's
unit, kept instead of coulombs), slopes in V/s and A/s. A C-rate ("C/3", "2C") is a current that
needs the cell's nominal capacity: 1C is the current that delivers the nominal capacity in one hour.

Parsing errors raise :class:`SpecError` with a short reason; the protocol parser adds the file,
line and step before the user sees it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

VOLTAGE = "voltage"
CURRENT = "current"
TIME = "time"
CHARGE = "charge"
VOLTAGE_RATE = "voltage rate"
CURRENT_RATE = "current rate"
MASS = "mass"
SPECIFIC_CAPACITY = "specific capacity"

_MICRO = ("u", "µ", "μ")  # ASCII u, micro sign U+00B5, Greek mu U+03BC

_UNITS: dict[str, tuple[str, float]] = {
    "v": (VOLTAGE, 1.0), "mv": (VOLTAGE, 1e-3),
    "a": (CURRENT, 1.0), "ma": (CURRENT, 1e-3), "na": (CURRENT, 1e-9),
    "ah": (CHARGE, 1.0), "mah": (CHARGE, 1e-3),
    "g": (MASS, 1.0), "mg": (MASS, 1e-3),
    "ah/g": (SPECIFIC_CAPACITY, 1.0), "mah/g": (SPECIFIC_CAPACITY, 1e-3),
    "ah/kg": (SPECIFIC_CAPACITY, 1e-3),
}
for _mu in _MICRO:
    _UNITS[_mu + "v"] = (VOLTAGE, 1e-6)
    _UNITS[_mu + "a"] = (CURRENT, 1e-6)
    _UNITS[_mu + "ah"] = (CHARGE, 1e-6)
    _UNITS[_mu + "g"] = (MASS, 1e-6)
    _UNITS[_mu + "s"] = (TIME, 1e-6)

_TIME_WORDS: dict[float, tuple[str, ...]] = {
    1e-3: ("ms", "msec", "millisecond", "milliseconds"),
    1.0: ("s", "sec", "secs", "second", "seconds"),
    60.0: ("m", "min", "mins", "minute", "minutes"),
    3600.0: ("h", "hr", "hrs", "hour", "hours"),
    86400.0: ("d", "day", "days"),
}
for _scale, _words in _TIME_WORDS.items():
    for _w in _words:
        _UNITS[_w] = (TIME, _scale)

_EXPECTED: dict[str, str] = {
    VOLTAGE: "V, mV",
    CURRENT: "A, mA, uA, nA, C-rate",
    TIME: "s, min, h",
    CHARGE: "Ah, mAh, uAh",
    VOLTAGE_RATE: "V/s, mV/min, mV/h",
    CURRENT_RATE: "A/s, mA/min, uA/h, C/h",
    MASS: "g, mg, ug",
    SPECIFIC_CAPACITY: "mAh/g, Ah/kg",
}
_ORDER = (VOLTAGE, CURRENT, TIME, CHARGE, VOLTAGE_RATE, CURRENT_RATE, MASS, SPECIFIC_CAPACITY)

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_UNIT = re.compile(rf"^({_NUM})\s*(.*)$")
_C_RATE = re.compile(rf"^(?:({_NUM})\s*)?c(?:\s*/\s*({_NUM}))?$", re.IGNORECASE)
_RATE = re.compile(r"^(.+?)\s*(?:/|\s+per\s+)\s*([a-zµμ]+)$", re.IGNORECASE)


class SpecError(ValueError):
    """A value or phrase in a protocol is invalid; the message says why (no location)."""


@dataclass(frozen=True)
class Quantity:
    """A parsed physical quantity.

    Attributes
    ----------
    value : float
        The value in SI units (A, V, s, Ah, V/s, A/s, g, Ah/g). For a C-rate without a known
        capacity this is NaN and ``c_rate`` holds the rate.
    dim : str
        The dimension, one of the module constants (``VOLTAGE``, ``CURRENT``, ...).
    text : str
        The text it was parsed from.
    c_rate : float or None
        The C-rate multiple (1/h) when the quantity was written as a C-rate, else None.
    """

    value: float
    dim: str
    text: str
    c_rate: float | None = None


def expected_units(dims: tuple[str, ...] | frozenset[str] | set[str]) -> str:
    """List the units accepted for ``dims``, in a fixed, readable order."""
    return ", ".join(_EXPECTED[d] for d in _ORDER if d in dims)


def _finite(number_text: str) -> float:
    value = float(number_text)
    if not math.isfinite(value):
        raise SpecError(f"number '{number_text}' is out of range")
    return value


def _c_rate(text: str, capacity_Ah: float | None) -> Quantity | None:
    match = _C_RATE.match(text)
    if match is None:
        return None
    factor = _finite(match.group(1)) if match.group(1) else 1.0
    divisor = _finite(match.group(2)) if match.group(2) else 1.0
    if divisor <= 0 or factor < 0:
        raise SpecError(f"invalid C-rate '{text}'")
    rate = factor / divisor
    amps = rate * capacity_Ah if capacity_Ah is not None else math.nan
    return Quantity(amps, CURRENT, text, c_rate=rate)


def _number_with_unit(text: str, dims: frozenset[str]) -> Quantity:
    match = _NUMBER_UNIT.match(text)
    if match is None:
        raise SpecError(f"'{text}' is not a number with a unit (expected {expected_units(dims)})")
    number, unit = match.group(1), match.group(2).strip()
    if not unit:
        raise SpecError(f"'{text}' needs a unit (expected {expected_units(dims)})")
    entry = _UNITS.get(unit.lower().replace(" ", ""))
    if entry is None:
        raise SpecError(f"unknown unit '{unit}' (expected {expected_units(dims)})")
    if entry[0] not in dims:
        raise SpecError(f"'{text}' is a {entry[0]}; expected {expected_units(dims)}")
    return Quantity(_finite(number) * entry[1], entry[0], text)


def _rate(text: str, dims: frozenset[str], capacity_Ah: float | None) -> Quantity | None:
    """Parse a slope such as '1 mV/min', '0.05 C/h' or '2 uA per minute'; None if not one."""
    match = _RATE.match(text)
    if match is None:
        return None
    per = _UNITS.get(match.group(2).lower())
    if per is None or per[0] != TIME:
        return None
    base = parse_quantity(match.group(1), {VOLTAGE, CURRENT}, capacity_Ah)
    dim = VOLTAGE_RATE if base.dim == VOLTAGE else CURRENT_RATE
    if dim not in dims:
        raise SpecError(f"'{text}' is a {dim}; expected {expected_units(dims)}")
    return Quantity(base.value / per[1], dim, text,
                    None if base.c_rate is None else base.c_rate / per[1])


def parse_quantity(text: object, dims: set[str] | frozenset[str],
                   capacity_Ah: float | None = None) -> Quantity:
    """Parse ``text`` (e.g. ``"0.04 mA"``, ``"C/3"``, ``"30 minutes"``) into SI units.

    Parameters
    ----------
    text : object
        The text as written; anything but a string is rejected with a clear reason.
    dims : set of str
        The dimensions acceptable here.
    capacity_Ah : float or None
        Nominal capacity (Ah) used to turn C-rates into amperes; if None a C-rate yields NaN
        amperes (the caller decides whether that is an error).

    Returns
    -------
    Quantity

    Raises
    ------
    SpecError
        Unknown unit, missing unit, non-finite number or wrong dimension.
    """
    dims = frozenset(dims)
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise SpecError(f"expected a quantity with a unit ({expected_units(dims)}), "
                        f"got {type(text).__name__}")
    text = " ".join(str(text).split())
    if not text:
        raise SpecError(f"empty value (expected {expected_units(dims)})")
    if CURRENT in dims or CURRENT_RATE in dims:
        if CURRENT in dims and (crate := _c_rate(text, capacity_Ah)) is not None:
            return crate
        if (rate := _rate(text, dims, capacity_Ah)) is not None:
            return rate
    elif VOLTAGE_RATE in dims and (rate := _rate(text, dims, capacity_Ah)) is not None:
        return rate
    return _number_with_unit(text, dims)


def parse_time(text: object, what: str = "time") -> float:
    """Parse a duration such as ``"1 minute"``; returns seconds (may be zero, never negative)."""
    seconds = parse_quantity(text, {TIME}).value
    if seconds < 0:
        raise SpecError(f"{what} must not be negative, got '{text}'")
    return seconds


def parse_positive_time(text: object, what: str = "time") -> float:
    """Parse a strictly positive duration in seconds."""
    seconds = parse_time(text, what)
    if seconds <= 0:
        raise SpecError(f"{what} must be positive, got '{text}'")
    return seconds


# --- formatting ------------------------------------------------------------------------------

_PREFIXES = ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"))


def _num(x: float) -> str:
    return f"{x:.4g}"


def format_si(value: float, unit: str) -> str:
    """Format ``value`` (in ``unit``, an SI unit like 'A') with an engineering prefix: '11 uA'."""
    if value == 0 or not math.isfinite(value):
        return f"{_num(value)} {unit}"
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale * 0.9995:
            return f"{_num(value / scale)} {prefix}{unit}"
    return f"{_num(value / 1e-9)} n{unit}"


def format_time(seconds: float) -> str:
    """Format a duration readably: '500 ms', '10 s', '30 min', '2 h', '1.5 h', '7 d'."""
    for scale, unit in ((86400.0, "d"), (3600.0, "h"), (60.0, "min"), (1.0, "s")):
        if seconds >= scale and (seconds / scale >= 2 or seconds % scale == 0):
            return f"{_num(seconds / scale)} {unit}"
    if seconds >= 1 or seconds == 0:
        return f"{_num(seconds)} s"
    return f"{_num(seconds * 1e3)} ms"


def format_rate(per_second: float, unit: str) -> str:
    """Format a slope given per second, choosing /s, /min or /h so the number stays readable."""
    for scale, name in ((1.0, "s"), (60.0, "min"), (3600.0, "h")):
        if abs(per_second) * scale >= 1e-3 * 0.9995 or name == "h":
            return f"{format_si(per_second * scale, unit)}/{name}"
    raise AssertionError("unreachable")
