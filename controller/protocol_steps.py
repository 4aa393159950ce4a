"""The step-string grammar: "Charge at C/3 until 4.3 V or 30 minutes", "2 noise scans", schedules.

Cycling strings follow PyBaMM's experiment strings (split on ``until``, then ``for``; optional
``(1 minute period)`` suffix) extended with OR-ed limits, explicit comparisons, stability limits
and a ``with radiography every ...`` clause. Everything here is case-insensitive and returns plain
values or raises :class:`~controller.quantities.SpecError`; the parser adds file/line/step.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from controller.protocol_limits import parse_limit
from controller.protocol_model import Limit, ScheduleSegment
from controller.quantities import (CURRENT, VOLTAGE, SpecError, parse_positive_time,
                                   parse_quantity)

_PERIOD = re.compile(r"\s*\(\s*(.+?)\s+period\s*\)\s*$", re.IGNORECASE)
_RADIOGRAPHY = re.compile(r"\s*,?\s*(?:with\s+)?radiography\s+every\s+(.+?)\s*$", re.IGNORECASE)
_UNTIL = re.compile(r"(?:^|\s+)until(?:\s+|$)", re.IGNORECASE)
_FOR = re.compile(r"\s+for\s+", re.IGNORECASE)
_TRAILING_OR = re.compile(r"\s+or$", re.IGNORECASE)
_HEAD = re.compile(r"^(charge|discharge|hold)\s+at\s+(.+)$", re.IGNORECASE)
_REST = re.compile(r"^(?:rest(?:\s+at\s+(?:ocv|open[\s-]circuit))?|ocv|open[\s-]circuit)$",
                   re.IGNORECASE)
_UNSUPPORTED_UNIT = re.compile(r"(?:\d|\s)(?:[mkµu]?w|m?ohms?|Ω)$", re.IGNORECASE)
_SCAN = re.compile(r"^(?:(\d+)\s+)?(noise\s+)?scans?(?:\s+([A-Za-z_][\w.-]*))?$", re.IGNORECASE)
_SEGMENT = re.compile(r"^every\s+(.+?)(?:\s+(for|until)\s+(.+))?$", re.IGNORECASE)
_SEGMENT_SPLIT = re.compile(r"\s*(?:,|;)\s*(?:then\s+)?|\s+then\s+", re.IGNORECASE)

STEP_FORMS = ("'Charge at <current> ...', 'Discharge at <current> ...', 'Hold at <voltage> ...', "
              "'Rest ...', 'scan', 'noise scan'")


@dataclass(frozen=True)
class CycleParts:
    """What a cycling step string says (before labels, actions and defaults are applied)."""

    kind: str
    control: str
    setpoint: float
    c_rate: float | None
    limits: tuple[Limit, ...]
    radiography_period_s: float | None
    poll_period_s: float | None


def is_scan_string(text: str) -> bool:
    """True when ``text`` is a scan step ('scan', 'noise scan', '3 scans', 'scan pristine')."""
    return _SCAN.match(" ".join(text.split())) is not None


def parse_scan_string(text: str) -> tuple[int, bool, str | None]:
    """Parse a scan step string into ``(count, noise, label)``."""
    m = _SCAN.match(" ".join(text.split()))
    if m is None:
        raise SpecError(f"not a scan step: '{text}'")
    noise = m.group(2) is not None
    count = int(m.group(1)) if m.group(1) else (2 if noise else 1)
    if noise and count < 2:
        raise SpecError("a noise scan needs at least 2 scans back to back")
    if not 1 <= count <= 1000:
        raise SpecError(f"scan count must be between 1 and 1000, got {count}")
    return count, noise, m.group(3)


def _strip_suffix(pattern: re.Pattern[str], text: str) -> tuple[str, str | None]:
    m = pattern.search(text)
    if m is None:
        return text, None
    return text[:m.start()], m.group(1)


def _split_step(text: str) -> tuple[str, str | None, str | None]:
    """Split into (head, for-duration, until-part) like PyBaMM's ``step.string()``."""
    until = None
    m = _UNTIL.search(text)
    if m is not None:
        text, until = text[:m.start()], text[m.end():]
        if not until.strip():
            raise SpecError("'until' must be followed by at least one limit")
    text = _TRAILING_OR.sub("", text)
    parts = _FOR.split(text, maxsplit=1)
    head, duration = parts[0], (parts[1] if len(parts) > 1 else None)
    return head.strip(), duration, until


def _setpoint(kind: str, value_text: str, capacity_Ah: float | None
              ) -> tuple[float, float | None]:
    if _UNSUPPORTED_UNIT.search(value_text):
        raise SpecError("power (W) and resistance (Ohm) steps are not supported; use a current "
                        "or a voltage")
    if kind == "hold":
        return parse_quantity(value_text, {VOLTAGE}).value, None
    q = parse_quantity(value_text, {CURRENT, VOLTAGE}, capacity_Ah)
    if q.dim == VOLTAGE:
        raise SpecError(f"'{kind.capitalize()} at' needs a current (A or C-rate); use "
                        f"'Hold at {value_text}' for constant voltage")
    if math.isnan(q.value):
        raise SpecError(f"C-rate '{q.text}' needs the cell's nominal capacity: set 'capacity' "
                        "under 'cell'")
    if q.value <= 0:
        raise SpecError(f"the current must be positive (the direction comes from "
                        f"'{kind.capitalize()}'); use 'Rest' for zero current")
    sign = 1.0 if kind == "charge" else -1.0
    return sign * q.value, None if q.c_rate is None else sign * q.c_rate


def _head(head: str, capacity_Ah: float | None) -> tuple[str, str, float, float | None]:
    if _REST.match(head):
        return "rest", "ocv", 0.0, None
    m = _HEAD.match(head)
    if m is None:
        if head.lower().startswith("run"):
            raise SpecError("drive cycles ('Run ...') are not supported")
        raise SpecError(f"unknown step '{head}' (expected {STEP_FORMS})")
    kind = m.group(1).lower()
    setpoint, c_rate = _setpoint(kind, m.group(2).strip(), capacity_Ah)
    return kind, "voltage" if kind == "hold" else "current", setpoint, c_rate


def parse_cycle_string(text: str, capacity_Ah: float | None) -> CycleParts:
    """Parse a cycling step string.

    Parameters
    ----------
    text : str
        e.g. ``"Discharge at C/8 for 30 minutes or until 0.005 V"``.
    capacity_Ah : float or None
        Nominal capacity for C-rates.

    Returns
    -------
    CycleParts
        Limits in the order written, the ``for`` duration first (a time limit).
    """
    text = " ".join(text.split())
    text, period = _strip_suffix(_PERIOD, text)
    text, radiography = _strip_suffix(_RADIOGRAPHY, text)
    head, duration, until = _split_step(text)
    kind, control, setpoint, c_rate = _head(head, capacity_Ah)
    pieces = ([duration] if duration else []) + (re.split(r"\s+or\s+", until, flags=re.I)
                                                 if until else [])
    limits = tuple(parse_limit(piece, kind, capacity_Ah) for piece in pieces)
    return CycleParts(kind, control, setpoint, c_rate, limits,
                      None if radiography is None else parse_positive_time(radiography,
                                                                           "radiography period"),
                      None if period is None else parse_positive_time(period, "poll period"))


def parse_schedule(text: str) -> tuple[ScheduleSegment, ...]:
    """Parse "scan every 15 minutes for 45 minutes, then every 30 minutes [until 10 hours]".

    Each segment is ``every P`` with an optional ``for D`` (lasting D after the previous segment
    ended) or ``until T`` (T from block entry); only the last may be open-ended.
    """
    body = " ".join(text.split())
    if not re.match(r"^scans?\s+every\s+", body, re.IGNORECASE):
        raise SpecError("a schedule reads 'scan every <time> [for <time>][, then every "
                        "<time> ...]'")
    body = re.sub(r"^scans?\s+", "", body, flags=re.IGNORECASE)
    segments: list[ScheduleSegment] = []
    start = 0.0
    for piece in _SEGMENT_SPLIT.split(body):
        if segments and segments[-1].end_s is None:
            raise SpecError("only the last schedule segment may be open-ended: give the earlier "
                            "ones 'for <time>' or 'until <time>'")
        segments.append(_segment(piece, start))
        start = segments[-1].end_s or start
    return tuple(segments)


def _segment(piece: str, start: float) -> ScheduleSegment:
    m = _SEGMENT.match(piece.strip())
    if m is None:
        raise SpecError(f"cannot read schedule segment '{piece}' (expected 'every <time> "
                        "[for <time> | until <time>]')")
    period = parse_positive_time(m.group(1), "schedule period")
    if m.group(2) is None:
        return ScheduleSegment(period, start, None)
    amount = parse_positive_time(m.group(3), "schedule segment length")
    end = start + amount if m.group(2).lower() == "for" else amount
    if end <= start:
        raise SpecError(f"schedule segment '{piece}' ends before it starts")
    return ScheduleSegment(period, start, end)
