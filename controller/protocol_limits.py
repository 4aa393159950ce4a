"""Limits ("4.3 V", "|I| < C/10", "dV/dt < 1 mV/min over 5 minutes", "6 scans") and actions.

A limit is parsed in the context of its owner: a step kind (charge, discharge, hold, rest) or a
loop/schedule block. The owner decides the default comparison of a bare voltage (charging stops
when V rises to the value, discharging when it falls to it) and rejects limits that can never be
met because they watch the quantity the potentiostat itself controls.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from controller.protocol_model import Action, Limit
from controller.quantities import (CHARGE, CURRENT, CURRENT_RATE, TIME, VOLTAGE, VOLTAGE_RATE,
                                   SpecError, parse_positive_time, parse_quantity)

DEFAULT_WINDOW_S = 300.0
BLOCK_OWNERS = ("loop", "schedule")

_SLOPE = re.compile(r"^\|?\s*d([vi])\s*/\s*dt\s*\|?\s*(<=|>=|<|>)?\s*(.*?)(?:\s+over\s+(.+))?$",
                    re.IGNORECASE)
_EXPLICIT = re.compile(r"^\|?\s*(v|voltage|i|current|q|charge|t|time)\s*\|?\s*(<=|>=|<|>)\s*(.+)$",
                       re.IGNORECASE)
_OP_FIRST = re.compile(r"^(<=|>=|<|>)\s*(.+)$")
_SCANS = re.compile(r"^(\d+)\s+scans?$", re.IGNORECASE)
_VAR_DIM = {"v": VOLTAGE, "voltage": VOLTAGE, "i": CURRENT, "current": CURRENT,
            "q": CHARGE, "charge": CHARGE, "t": TIME, "time": TIME}
_DIM_KIND = {VOLTAGE: "voltage", CURRENT: "current", TIME: "time", CHARGE: "charge"}
_LIMIT_DIMS = frozenset({VOLTAGE, CURRENT, TIME, CHARGE})
KIND_WORDS = {"voltage": "voltage", "v": "voltage", "current": "current", "i": "current",
              "time": "time", "t": "time", "charge": "charge", "q": "charge",
              "dv/dt": "dvdt", "di/dt": "didt", "scans": "scans"}


def _op(text: str | None) -> str | None:
    return None if text is None else text[0]


def _current_value(text: str, capacity_Ah: float | None, dims: frozenset[str]) -> float:
    q = parse_quantity(text, dims, capacity_Ah)
    if math.isnan(q.value):
        raise SpecError(f"C-rate '{q.text}' needs the cell's nominal capacity: "
                        "set 'capacity' under 'cell'")
    return q.value


def parse_limit(text: str, owner: str, capacity_Ah: float | None) -> Limit:
    """Parse one limit; ``owner`` is 'charge', 'discharge', 'hold', 'rest', 'loop' or 'schedule'.

    Raises
    ------
    SpecError
        Unparseable, wrong unit, or a limit the owner can never meet.
    """
    text = " ".join(text.split())
    text = re.sub(r"^for\s+", "", text, flags=re.IGNORECASE)
    if (m := _SCANS.match(text)) is not None:
        return _scans_limit(int(m.group(1)), owner, text)
    if (m := _SLOPE.match(text)) is not None:
        return _slope_limit(m, owner, capacity_Ah, text)
    m = _EXPLICIT.match(text)
    if m is not None:
        dim, op, qtext = _VAR_DIM[m.group(1).lower()], _op(m.group(2)), m.group(3)
    elif (m := _OP_FIRST.match(text)) is not None:
        dim, op, qtext = None, _op(m.group(1)), m.group(2)
    else:
        dim, op, qtext = None, None, text
    value = parse_quantity(qtext, {dim} if dim else _LIMIT_DIMS, capacity_Ah)
    if math.isnan(value.value):
        raise SpecError(f"C-rate '{value.text}' needs the cell's nominal capacity: "
                        "set 'capacity' under 'cell'")
    kind = _DIM_KIND[value.dim]
    op = _CHECKS[kind](op, owner, value.value)
    return Limit(kind, op, value.value, None, Action(), text)  # type: ignore[arg-type]


def _scans_limit(count: int, owner: str, text: str) -> Limit:
    if owner not in BLOCK_OWNERS:
        raise SpecError("a scan count is a loop or schedule condition, not a step limit")
    if not 1 <= count <= 100_000:
        raise SpecError(f"scan count must be between 1 and 100000, got {count}")
    return Limit("scans", ">", float(count), None, Action(), text)


def _slope_limit(m: re.Match[str], owner: str, capacity_Ah: float | None, text: str) -> Limit:
    var, op, qtext, wtext = m.group(1).lower(), _op(m.group(2)), m.group(3), m.group(4)
    name = f"d{var.upper()}/dt"
    if op is None:
        raise SpecError(f"a {name} limit needs '<' (stable) or '>' (changing fast)")
    if var == "v" and owner == "hold":
        raise SpecError("the voltage is held constant in a 'Hold' step, so dV/dt can never "
                        "change; use dI/dt for a stable current")
    if var == "i" and owner in ("charge", "discharge", "rest"):
        raise SpecError(f"the current is fixed in a '{owner}' step, so dI/dt can never change; "
                        "use dV/dt for a stable voltage")
    dim = VOLTAGE_RATE if var == "v" else CURRENT_RATE
    value = abs(_current_value(qtext, capacity_Ah, frozenset({dim})))
    if value <= 0:
        raise SpecError(f"a {name} threshold must be positive")
    window = DEFAULT_WINDOW_S if wtext is None else parse_positive_time(wtext, "slope window")
    kind = "dvdt" if var == "v" else "didt"
    return Limit(kind, op, value, window, Action(), text)  # type: ignore[arg-type]


def _check_voltage(op: str | None, owner: str, value: float) -> str:
    if owner == "hold":
        raise SpecError("the voltage is held constant in a 'Hold' step, so a voltage limit "
                        "can never be met; end it with a current, time or stability limit")
    if op is None and owner in ("charge", "discharge"):
        return ">" if owner == "charge" else "<"
    if op is None:
        raise SpecError(f"a voltage limit in a {owner} needs a direction: "
                        f"'V < {value:g} V' or 'V > {value:g} V'")
    if owner == "charge" and op == "<":
        raise SpecError("the voltage rises while charging, so 'V < ...' would end the step at "
                        "once or never; use 'V > ...' (or a bare voltage)")
    if owner == "discharge" and op == ">":
        raise SpecError("the voltage falls while discharging, so 'V > ...' would end the step "
                        "at once or never; use 'V < ...' (or a bare voltage)")
    return op


def _check_current(op: str | None, owner: str, value: float) -> str:
    if owner in ("charge", "discharge"):
        raise SpecError(f"the current is fixed in a constant-current '{owner}' step, so a "
                        "current limit can never be met")
    if owner == "rest":
        raise SpecError("no current flows at rest, so a current limit can never be met")
    if value <= 0:
        raise SpecError("a current limit compares |I|, so its value must be positive")
    return op or "<"


def _check_time(op: str | None, owner: str, value: float) -> str:
    if op == "<":
        raise SpecError("a time limit ends a step once that much time has passed; 't < ...' "
                        "would be met at once")
    if value <= 0:
        raise SpecError("a time limit must be positive")
    return ">"


def _check_charge(op: str | None, owner: str, value: float) -> str:
    if owner == "rest":
        raise SpecError("no charge flows at rest, so a charge limit can never be met")
    if op == "<":
        raise SpecError("a charge limit compares |ΔQ|, which starts at 0; 'Q < ...' would be "
                        "met at once; use 'Q > ...' (or a bare charge)")
    if value <= 0:
        raise SpecError("a charge limit must be positive")
    return ">"


_CHECKS = {"voltage": _check_voltage, "current": _check_current, "time": _check_time,
           "charge": _check_charge}


# --- actions ---------------------------------------------------------------------------------

def parse_action(text: object) -> Action:
    """Parse 'next', 'stop', 'goto LABEL', 'scan then next|repeat|stop|goto LABEL' (or 'scan')."""
    if not isinstance(text, str):
        raise SpecError(f"an action must be text such as 'next' or 'scan then repeat', got "
                        f"{text!r}")
    words = text.split()
    scan = bool(words) and words[0].lower() == "scan"
    rest = words[1:] if scan else words
    if rest and rest[0].lower() in ("then", "and"):
        rest = rest[1:]
    return _action_tail(rest, scan, text)


def _action_tail(rest: list[str], scan: bool, text: str) -> Action:
    low = [w.lower() for w in rest]
    if not low and scan:
        return Action("next", True)
    if low in (["next"], ["stop"]):
        return Action(low[0], scan)  # type: ignore[arg-type]
    if low == ["repeat"]:
        if not scan:
            raise SpecError("'repeat' re-runs the step at once; only 'scan then repeat' is "
                            "allowed")
        return Action("repeat", True)
    if (len(low) == 2 and low[0] == "goto") or (len(low) == 3 and low[:2] == ["go", "to"]):
        return Action("goto", scan, rest[-1])
    raise SpecError(f"unknown action '{text}' (expected next, stop, goto LABEL, scan then next, "
                    "scan then repeat, scan then goto LABEL, scan then stop)")


def _same_limit(key: Limit, limit: Limit) -> bool:
    if key.kind != limit.kind or key.op != limit.op:
        return False
    return math.isclose(key.value, limit.value, rel_tol=1e-9, abs_tol=1e-15)


def _match_key(key: str, limits: tuple[Limit, ...], owner: str,
               capacity_Ah: float | None) -> int:
    norm = " ".join(key.split()).lower()
    norm = re.sub(r"^(for|until)\s+", "", norm)
    by_text = [i for i, lim in enumerate(limits) if lim.text.lower() == norm]
    if len(by_text) == 1:
        return by_text[0]
    if norm in KIND_WORDS:
        same_kind = [i for i, lim in enumerate(limits) if lim.kind == KIND_WORDS[norm]]
        if len(same_kind) == 1:
            return same_kind[0]
    try:
        parsed = parse_limit(norm, owner, capacity_Ah)
    except SpecError:
        parsed = None
    found = [i for i, lim in enumerate(limits) if parsed is not None and _same_limit(parsed, lim)]
    if len(found) == 1:
        return found[0]
    written = ", ".join(f"'{lim.text}'" for lim in limits) or "none"
    raise SpecError(f"'on' key '{key}' matches none of its limits (limits: {written})")


def apply_actions(limits: tuple[Limit, ...], on: dict[str, object], owner: str,
                  capacity_Ah: float | None) -> tuple[Limit, ...]:
    """Attach the actions of an ``on:`` mapping to the limits its keys name.

    Raises
    ------
    SpecError
        A key matching no limit, two keys naming the same limit, or an unknown action.
    """
    out = list(limits)
    seen: set[int] = set()
    for key, action_text in on.items():
        try:
            index = _match_key(key, limits, owner, capacity_Ah)
            if index in seen:
                raise SpecError(f"'on' names the limit '{limits[index].text}' twice")
            seen.add(index)
            out[index] = replace(out[index], action=_owned_action(action_text, owner))
        except SpecError as exc:
            exc.key = key  # type: ignore[attr-defined]  # lets the caller point at its line
            raise
    return tuple(out)


def _owned_action(text: object, owner: str) -> Action:
    action = parse_action(text)
    if action.kind == "repeat" and owner in BLOCK_OWNERS:
        raise SpecError("'scan then repeat' applies to a step, not to a loop or schedule")
    return action
