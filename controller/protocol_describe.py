"""Human-readable expansion of a protocol: what ``tomocycle check`` prints.

Numbered steps (loops and schedule blocks indented, children numbered 2.1, 2.2, ...), every
limit with its action in readable SI units, and the settings and safety envelope in force.
"""

from __future__ import annotations

from controller.protocol_model import (CycleStep, Limit, Loop, Protocol, SafetyEnvelope,
                                       ScanSettings, ScanStep, ScheduledBlock, Step)
from controller.quantities import format_rate, format_si, format_time

INDENT = "   "


def _c_rate(rate: float) -> str:
    rate = abs(rate)
    if rate < 1 and abs(1 / rate - round(1 / rate)) < 1e-9:
        return f"C/{round(1 / rate)}"
    return f"{rate:g}C"


def describe_limit(limit: Limit) -> str:
    """One limit as a comparison in readable units, e.g. ``V >= 4.3 V`` or ``t >= 30 min``."""
    op = "<=" if limit.op == "<" else ">="
    value = limit.value
    if limit.kind == "voltage":
        text = f"V {op} {value:.4g} V"
    elif limit.kind == "current":
        text = f"|I| {op} {format_si(value, 'A')}"
    elif limit.kind == "time":
        text = f"t {op} {format_time(value)}"
    elif limit.kind == "charge":
        text = f"|dQ| {op} {format_si(value, 'Ah')}"
    elif limit.kind in ("dvdt", "didt"):
        name, unit = ("dV/dt", "V") if limit.kind == "dvdt" else ("dI/dt", "A")
        text = (f"|{name}| {op} {format_rate(value, unit)} "
                f"(slope over {format_time(limit.window_s or 0.0)})")
    else:
        text = f"scans {op} {value:.0f}"
    return f"{text} -> {limit.action}"


def describe_scan(settings: ScanSettings) -> str:
    """Scan settings in one line."""
    text = (f"{settings.projections} projections over {settings.range_deg:g} deg, "
            f"{format_time(settings.exposure_s)} exposure, {settings.darks} darks, "
            f"{settings.flats} flats{' (+ flats at end)' if settings.flats_at_end else ''}")
    if settings.interlaced > 1:
        text += (f", interlaced {settings.interlaced} x "
                 f"{settings.projections // settings.interlaced}")
    return text + (f", instrument preset {settings.preset}" if settings.preset else "")


def describe_safety(s: SafetyEnvelope) -> str:
    """The safety envelope in one line."""
    charge = "unchecked" if s.q_max is None else format_si(s.q_max, "Ah")
    return (f"{s.v_min:.4g} V <= V <= {s.v_max:.4g} V; |I| <= {format_si(s.i_max, 'A')}; "
            f"|Q| <= {charge}; t <= {format_time(s.t_max)}; debounce "
            f"{format_time(s.debounce_s)}; potentiostat timeout {format_time(s.comm_timeout_s)}")


def _cycle_head(step: CycleStep) -> str:
    if step.control == "ocv":
        return "rest at open circuit"
    if step.control == "voltage":
        return f"hold at {step.setpoint:.4g} V"
    rate = "" if step.c_rate is None else f" ({_c_rate(step.c_rate)})"
    return f"{step.kind} at {format_si(step.setpoint, 'A')}{rate}"


def _limit_lines(limits: tuple[Limit, ...], pad: str, word: str) -> list[str]:
    lines = []
    for i, limit in enumerate(limits):
        lines.append(f"{pad}{word if i == 0 else 'or':>5} {describe_limit(limit)}")
    return lines


def _label(node: Step) -> str:
    return f" [{node.label}]" if node.label else ""


def _cycle(step: CycleStep, number: str, pad: str, protocol: Protocol) -> list[str]:
    lines = [f"{pad}{number} {_cycle_head(step)}{_label(step)}   (line {step.line}: "
             f"\"{step.text}\")"]
    inner = pad + INDENT
    if step.radiography_period_s is not None:
        lines.append(f"{inner}radiography every {format_time(step.radiography_period_s)}")
    if step.poll_period_s != protocol.poll_period_s:
        lines.append(f"{inner}poll every {format_time(step.poll_period_s)}")
    if not step.limits:
        lines.append(f"{inner}(no limit of its own: ends with its loop or schedule)")
    return lines + _limit_lines(step.limits, inner, "until")


def _scan(step: ScanStep, number: str, pad: str, protocol: Protocol) -> list[str]:
    what = f"{step.count} noise scans" if step.noise else (
        "scan" if step.count == 1 else f"{step.count} scans")
    lines = [f"{pad}{number} {what}{_label(step)} after {format_time(step.ocv_rest_s)} at open "
             f"circuit   (line {step.line})"]
    if step.scan != protocol.scan:
        lines.append(f"{pad}{INDENT}scan: {describe_scan(step.scan)}")
    if step.on_failure != protocol.on_scan_failure:
        lines.append(f"{pad}{INDENT}on scan failure: {step.on_failure}")
    return lines


def _loop(step: Loop, number: str, pad: str, protocol: Protocol) -> list[str]:
    count = f" up to {step.count} times" if step.count else ""
    lines = [f"{pad}{number} loop{_label(step)}{count}   (line {step.line})"]
    lines += _limit_lines(step.until, pad + INDENT, "until")
    return lines + _body(step.steps, number.rstrip("."), pad + INDENT, protocol)


def _schedule(step: ScheduledBlock, number: str, pad: str, protocol: Protocol) -> list[str]:
    parts = []
    for seg in step.segments:
        end = "onwards" if seg.end_s is None else f"to {format_time(seg.end_s)}"
        parts.append(f"every {format_time(seg.period_s)} from {format_time(seg.start_s)} {end}")
    lines = [f"{pad}{number} schedule{_label(step)}: scan {'; '.join(parts)} "
             f"(from block start, {format_time(step.ocv_rest_s)} OCV first)   "
             f"(line {step.line})"]
    lines += _limit_lines(step.until, pad + INDENT, "until")
    return lines + _body(step.steps, number.rstrip("."), pad + INDENT, protocol)


def _body(steps: tuple[Step, ...], prefix: str, pad: str, protocol: Protocol) -> list[str]:
    lines: list[str] = []
    for i, node in enumerate(steps, start=1):
        number = f"{prefix}.{i}" if prefix else f"{i}."
        if isinstance(node, CycleStep):
            lines += _cycle(node, number, pad, protocol)
        elif isinstance(node, ScanStep):
            lines += _scan(node, number, pad, protocol)
        elif isinstance(node, Loop):
            lines += _loop(node, number, pad, protocol)
        else:
            lines += _schedule(node, number, pad, protocol)
    return lines


def _header(p: Protocol) -> list[str]:
    capacity = "unknown" if p.capacity_Ah is None else (
        f"{format_si(p.capacity_Ah, 'Ah')} (1C = {format_si(p.capacity_Ah, 'A')})")
    lines = [f"Protocol {p.name}: {p.title}", f"  file: {p.source}"]
    if p.reference:
        lines.append(f"  reference: {p.reference}")
    return lines + [
        f"  cell: {p.cell_preset or 'custom'}, nominal capacity {capacity}",
        f"  poll every {format_time(p.poll_period_s)}; open circuit "
        f"{format_time(p.ocv_before_scan_s)} before each scan",
        f"  scan: {describe_scan(p.scan)}",
        f"  scan failure: retry {p.scan_retries}x, then {p.on_scan_failure}",
        f"  safety: {describe_safety(p.safety)}",
        "  sign: positive current charges the cell",
        "steps:",
    ]


def describe_protocol(protocol: Protocol) -> str:
    """The expanded plan of ``protocol`` as text (ends without a trailing newline)."""
    return "\n".join(_header(protocol) + _body(protocol.steps, "", "  ", protocol))
