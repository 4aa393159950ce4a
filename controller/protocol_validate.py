"""Whole-protocol checks that need more than one step: labels, gotos, reachability, exits.

The parser builds each node on its own; this module then rejects protocols that would misbehave
when run: a goto to an unknown label or into a loop, a limit the safety envelope makes
unreachable, a step or loop that cannot end, a stability window too short to fit a slope.
"""

from __future__ import annotations

from controller.protocol_model import (CycleStep, Limit, Loop, Protocol, ProtocolError,
                                       SafetyEnvelope, ScanStep, ScheduledBlock, Step, walk_steps)
from controller.quantities import format_si, format_time

Path = tuple[int, ...]
MIN_WINDOW_POLLS = 3


def _fail(node: Step, source: str, reason: str) -> ProtocolError:
    return ProtocolError(reason, source, node.line, node.text)


def _labels(protocol: Protocol, source: str) -> dict[str, Path]:
    labels: dict[str, Path] = {}
    for path, node in protocol.walk():
        if node.label is None:
            continue
        if node.label in labels:
            first = protocol.at(labels[node.label])
            raise _fail(node, source, f"duplicate label '{node.label}' (first used on line "
                                      f"{first.line})")
        labels[node.label] = path
    return labels


def _ancestors(protocol: Protocol, path: Path) -> list[Step]:
    return [protocol.at(path[:k]) for k in range(1, len(path))]


def _limits(node: Step) -> tuple[Limit, ...]:
    if isinstance(node, CycleStep):
        return node.limits
    if isinstance(node, (Loop, ScheduledBlock)):
        return node.until
    return ()


def _check_goto(node: Step, path: Path, limit: Limit, labels: dict[str, Path],
                source: str) -> None:
    target = limit.action.target
    if target is None:
        return
    if target not in labels:
        known = ", ".join(sorted(labels)) or "none"
        raise _fail(node, source, f"goto '{target}': no step has that label (labels: {known})")
    target_list = labels[target][:-1]
    if path[:-1][:len(target_list)] != target_list:
        raise _fail(node, source, f"goto '{target}' jumps into a loop or schedule block; a goto "
                                  "may only target a step in the same list or an enclosing one")


def _poll(node: Step, protocol: Protocol) -> float:
    return node.poll_period_s if isinstance(node, CycleStep) else protocol.poll_period_s


def _check_reachable(node: Step, limit: Limit, protocol: Protocol, source: str) -> None:
    s: SafetyEnvelope = protocol.safety
    v = limit.value
    never = f"limit '{limit.text}' can never be met"
    if limit.kind == "voltage" and not s.v_min <= v <= s.v_max:
        side = "below" if v < s.v_min else "above"
        raise _fail(node, source, f"{never}: {v:g} V is {side} the safety window "
                                  f"{s.v_min:g}..{s.v_max:g} V")
    if limit.kind == "current" and limit.op == ">" and v > s.i_max:
        raise _fail(node, source, f"{never}: it exceeds the safety max_current "
                                  f"{format_si(s.i_max, 'A')}")
    if limit.kind == "charge" and s.q_max is not None and v > s.q_max:
        raise _fail(node, source, f"{never}: it exceeds the safety max_charge "
                                  f"{format_si(s.q_max, 'Ah')}")
    if limit.kind == "time" and v > s.t_max:
        raise _fail(node, source, f"{never}: it is longer than the safety max_duration "
                                  f"{format_time(s.t_max)}")
    if limit.window_s is not None and limit.window_s < MIN_WINDOW_POLLS * _poll(node, protocol):
        raise _fail(node, source, f"the slope window of '{limit.text}' must span at least "
                                  f"{MIN_WINDOW_POLLS} polls ({format_time(_poll(node, protocol))}"
                                  " each)")


def _check_setpoint(node: CycleStep, safety: SafetyEnvelope, source: str) -> None:
    if node.control == "voltage" and not safety.v_min <= node.setpoint <= safety.v_max:
        raise _fail(node, source, f"hold voltage {node.setpoint:g} V is outside the safety "
                                  f"window {safety.v_min:g}..{safety.v_max:g} V")
    if node.control == "current" and abs(node.setpoint) > safety.i_max:
        raise _fail(node, source, f"current {format_si(abs(node.setpoint), 'A')} exceeds the "
                                  f"safety max_current {format_si(safety.i_max, 'A')}")


def _can_scan(body: tuple[Step, ...]) -> bool:
    for _, node in walk_steps(body):
        if isinstance(node, (ScanStep, ScheduledBlock)):
            return True
        if any(limit.action.scan for limit in _limits(node)):
            return True
    return False


def _check_loop(node: Loop, ancestors: list[Step], source: str) -> None:
    if node.count is None and not node.until:
        raise _fail(node, source, "this loop never ends: give it a 'count' or an 'until'")
    only_scans = node.until and all(limit.kind == "scans" for limit in node.until)
    in_schedule = any(isinstance(a, ScheduledBlock) for a in ancestors)
    if node.count is None and only_scans and not (_can_scan(node.steps) or in_schedule):
        raise _fail(node, source, "this loop ends on a scan count but nothing in it scans")


def _check_schedule(node: ScheduledBlock, protocol: Protocol, ancestors: list[Step],
                    source: str) -> None:
    if any(isinstance(a, ScheduledBlock) for a in ancestors):
        raise _fail(node, source, "schedule blocks cannot be nested")
    if min(seg.period_s for seg in node.segments) < protocol.poll_period_s:
        raise _fail(node, source, "a schedule period is shorter than the poll period")


def _ended_from_outside(node: CycleStep, ancestors: list[Step]) -> bool:
    """Can an enclosing loop/block limit end this step (it has no limit of its own)?"""
    scheduled = any(isinstance(a, ScheduledBlock) for a in ancestors)
    for outer in ancestors:
        for limit in _limits(outer):
            if limit.polled_during(node.control) or (limit.kind == "scans" and scheduled):
                return True
    return False


def _check_cycle(node: CycleStep, protocol: Protocol, ancestors: list[Step],
                 source: str) -> None:
    _check_setpoint(node, protocol.safety, source)
    if not node.limits and not _ended_from_outside(node, ancestors):
        raise _fail(node, source, "this step never ends: add 'for <time>' or 'until <limit>' "
                                  "(or put it in a loop or schedule with an 'until')")


def _check_node(node: Step, path: Path, protocol: Protocol, labels: dict[str, Path],
                source: str) -> None:
    ancestors = _ancestors(protocol, path)
    if isinstance(node, CycleStep):
        _check_cycle(node, protocol, ancestors, source)
    elif isinstance(node, Loop):
        _check_loop(node, ancestors, source)
    elif isinstance(node, ScheduledBlock):
        _check_schedule(node, protocol, ancestors, source)
    for limit in _limits(node):
        _check_goto(node, path, limit, labels, source)
        _check_reachable(node, limit, protocol, source)


def validate(protocol: Protocol, source: str) -> None:
    """Raise :class:`ProtocolError` for the first whole-protocol problem found, in file order."""
    labels = _labels(protocol, source)
    for path, node in protocol.walk():
        _check_node(node, path, protocol, labels, source)
