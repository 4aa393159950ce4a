"""Parameter checks for scans, done before anything moves."""

from __future__ import annotations

import math
from typing import Any


class ScanParameterError(ValueError):
    """A scan parameter is impossible; the message names the parameter."""


def _positive_int(name: str, value: Any, *, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
            isinstance(value, float) and value.is_integer()):
        raise ScanParameterError(f"{name} must be a whole number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ScanParameterError(f"{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value!r}")


def check_scan_parameters(*, projections: Any = None, angle_range: Any = None, exposure: Any = None,
                          darks: Any = None, flats: Any = None, interlaced: Any = None) -> None:
    """Raise :class:`ScanParameterError` naming the first impossible parameter.

    Only the parameters given are checked.
    """
    if projections is not None:
        _positive_int("projections", projections, allow_zero=False)
    for name, value in (("darks", darks), ("flats", flats)):
        if value is not None:
            _positive_int(name, value, allow_zero=True)
    if interlaced is not None:
        _positive_int("interlaced", interlaced, allow_zero=False)
        if projections is not None and interlaced > projections:
            raise ScanParameterError(f"interlaced ({interlaced}) must not exceed projections ({projections})")
    if angle_range is not None and (not isinstance(angle_range, (int, float)) or not math.isfinite(angle_range)
                                    or not 0 < angle_range <= 360):
        raise ScanParameterError(f"angle_range must be in (0, 360] degrees, got {angle_range!r}")
    if exposure is not None and (not isinstance(exposure, (int, float)) or not math.isfinite(exposure)
                                 or exposure <= 0):
        raise ScanParameterError(f"exposure must be a positive number of seconds, got {exposure!r}")
